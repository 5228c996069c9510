"""The team stack of docker/compose.yaml, run natively on 127.0.0.1 with no container engine.

Each service gets the environment and command compose.yaml gives it, with the compose host
names (`postgres:5432`, `minio:9000`, ...) replaced by 127.0.0.1 and a free port, `${VAR}`
replaced by a fresh secret, and its state in a temp folder: so this is compose's wiring, run,
not a copy of it. Names, buckets and credential names come from docker/stack.yaml. MinIO is
replaced by moto's S3 server (MinIO is not in the package registries here), and the official
postgres image by Debian's PostgreSQL, run as the unprivileged `postgres` user when the tests
run as root (initdb refuses root). Every process is started in its own session and stopped
as a group by `Stack.stop`, whatever happened.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml

from tests.support.paths import ROOT
from tests.support.processes import check, run
from tests.support.servers import free_port, start, stop
from tests.support.waiting import wait_for

SETTINGS = yaml.safe_load((ROOT / "docker" / "stack.yaml").read_text())
# role -> the name of the variable that carries it (stack.yaml writes `${NAME}`, as compose)
CREDENTIALS = {role: ref.strip("${}") for role, ref in SETTINGS["credentials"].items()}
COMPOSE = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["services"]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
BIN = Path(sys.executable).parent
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:\?[^}]*)?\}")
# what every process of the stack gets: no telemetry, no cloud metadata probe (STACK.md)
QUIET = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "ORT_DISABLE_TELEMETRY": "1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# a developer's own servers must not receive the tests' runs
FOREIGN = (
    "PREFECT_API_URL",
    "PREFECT_HOME",
    "PREFECT_API_AUTH_STRING",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_PROFILE",
)


def http(url: str, auth: str | None, body: dict | None = None, method: str | None = None):
    """(status, JSON body) of one request, with HTTP basic auth `user:password` if given."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            text = r.read().decode()
            return r.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        return e.code, None


def postgres_available() -> bool:
    return (PG_BIN / "initdb").exists()


@dataclass
class Stack:
    """The running services: their ports, the secrets they were given, their processes."""

    home: Path
    ports: dict[str, int] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    # -- the settings compose.yaml uses, resolved for 127.0.0.1 --------------------------------
    def hosts(self) -> dict[str, str]:
        """compose's `service:port` -> this machine's `127.0.0.1:port`."""
        internal = {
            "postgres": SETTINGS["postgres"]["port"],
            "minio": SETTINGS["s3"]["port"],
            "mlflow": SETTINGS["mlflow"]["port"],
            "prefect-server": SETTINGS["prefect"]["port"],
            "dask-scheduler": SETTINGS["dask"]["scheduler_port"],
        }
        hosts = {
            f"{name}:{port}": f"127.0.0.1:{self.ports[name]}" for name, port in internal.items()
        }
        # compose's published ports (e.g. the Prefect UI's API URL)
        for name in ("mlflow", "prefect-server"):
            hosts[f"127.0.0.1:{internal[name]}"] = f"127.0.0.1:{self.ports[name]}"
        return hosts

    def resolve(self, value: str) -> str:
        value = VAR.sub(lambda m: self.secrets[m.group(1)], str(value))
        for compose_host, local in self.hosts().items():
            value = value.replace(compose_host, local)
        return value

    def compose_env(self, service: str) -> dict[str, str]:
        env = COMPOSE[service].get("environment") or {}
        return {k: self.resolve(v) for k, v in env.items()}

    def base_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in FOREIGN}
        return env | QUIET | {"PATH": f"{BIN}{os.pathsep}{env['PATH']}", "CI": "true"} | extra

    def client_env(self, project: Path | None = None, **extra: str) -> dict[str, str]:
        """What the compose worker gets (Prefect, MLflow and S3 settings and credentials), for
        every process that runs the pipeline here: the worker, the Dask workers, the tests."""
        env = self.compose_env("worker")
        if project is not None:
            env["SLIMLINE_PROJECT_DIR"] = str(project)
        return self.base_env(**{**env, "PREFECT_HOME": str(self.home / "prefect-client"), **extra})

    @property
    def credentials(self) -> dict[str, str]:
        return {role: self.secrets[name] for role, name in CREDENTIALS.items()}

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['mlflow']}"

    @property
    def prefect_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['prefect-server']}/api"

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['minio']}"

    @property
    def dask_address(self) -> str:
        return f"tcp://127.0.0.1:{self.ports['dask-scheduler']}"

    def postgres_dsn(self, database: str) -> str:
        c = self.credentials
        return (
            f"postgresql://{c['postgres_user']}:{c['postgres_password']}@127.0.0.1:"
            f"{self.ports['postgres']}/{database}"
        )

    def s3(self):
        import boto3

        c = self.credentials
        return boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            aws_access_key_id=c["s3_access_key"],
            aws_secret_access_key=c["s3_secret_key"],
            region_name="us-east-1",
        )

    # -- starting ----------------------------------------------------------------------------
    def start_all(self, project: Path, before_worker: Callable[[], None]) -> None:
        for name in ("postgres", "minio", "mlflow", "prefect-server", "dask-scheduler"):
            self.ports[name] = free_port()
        self.secrets = {name: secrets.token_hex(12) for name in CREDENTIALS.values()}
        self.secrets["PREFECT_AUTH_STRING"] = f"admin:{secrets.token_hex(12)}"
        self.secrets["POSTGRES_USER"] = "slimline"
        self.secrets["MINIO_ROOT_USER"] = "slimline"
        self.start_postgres()
        self.start_s3()
        self.start_mlflow()
        self.start_prefect()
        self.start_dask()
        before_worker()  # the project the worker runs needs the bucket
        self.start_worker(project)

    def _as_postgres(self, argv: list[str | Path]) -> list[str | Path]:
        return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv

    def pg_ctl(self, *args: str) -> None:
        pg_ctl = [PG_BIN / "pg_ctl", "-D", self.pgdata, *args]
        check(run(self._as_postgres(pg_ctl), timeout=60))

    @property
    def pgdata(self) -> Path:
        return self.home / "postgres" / "data"

    def start_postgres(self) -> None:
        folder = self.home / "postgres"
        (folder / "socket").mkdir(parents=True)
        if os.geteuid() == 0:  # the server runs as `postgres`: it must reach and own its folders
            self.home.chmod(0o755)
            shutil.chown(folder, "postgres")
            shutil.chown(folder / "socket", "postgres")
        initdb = [PG_BIN / "initdb", "-D", self.pgdata, "-U", "postgres", "--auth-local=trust",
                  "--auth-host=scram-sha-256"]  # fmt: skip
        check(run(self._as_postgres(initdb), timeout=120))
        self.start_postgres_server()
        c = self.credentials
        sql = [
            f"CREATE ROLE {c['postgres_user']} LOGIN PASSWORD '{c['postgres_password']}'",
            f"CREATE DATABASE mlflow OWNER {c['postgres_user']}",  # compose's POSTGRES_DB
            # docker/postgres-init.sql, as the postgres image runs it on first start
            *(ROOT / "docker" / "postgres-init.sql").read_text().split(";")[:-1],
            f"ALTER DATABASE prefect OWNER TO {c['postgres_user']}",
        ]
        for statement in sql:
            statement = "\n".join(
                line for line in statement.splitlines() if not line.startswith("--")
            ).strip()
            psql = [PG_BIN / "psql", "-h", folder / "socket", "-p", str(self.ports["postgres"]),
                    "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-c", statement]  # fmt: skip
            check(run(self._as_postgres(psql), timeout=60))

    def start_postgres_server(self) -> None:
        socket = self.home / "postgres" / "socket"
        self.pg_ctl(
            "-l",
            str(self.home / "postgres" / "server.log"),
            "-w",
            "-o",
            f"-h 127.0.0.1 -p {self.ports['postgres']} -k {socket}",
            "start",
        )

    def stop_postgres_server(self) -> None:
        self.pg_ctl("-m", "fast", "-w", "stop")

    def start_s3(self) -> None:
        port = self.ports["minio"]
        self.procs["s3"] = start(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            port,
            self.home / "s3.log",
            health="/moto-api/",
            env=self.base_env(),
        )
        s3 = self.s3()
        for bucket in SETTINGS["s3"]["buckets"].values():  # as compose's minio-buckets job
            s3.create_bucket(Bucket=bucket)

    def start_mlflow(self) -> None:
        folder = self.home / "mlflow"
        folder.mkdir()
        env = self.compose_env("mlflow")
        # compose's auth config with its SQLite user store in this folder instead of a volume
        ini = (ROOT / "docker" / "mlflow-auth.ini").read_text()
        ini = re.sub(r"database_uri = \S+", f"database_uri = sqlite:///{folder}/basic_auth.db", ini)
        (folder / "auth.ini").write_text(ini)
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(folder / "auth.ini")
        command = [self.native_arg(a, "mlflow") for a in COMPOSE["mlflow"]["command"]]
        self.procs["mlflow"] = start(
            [str(BIN / "mlflow"), *command],
            self.ports["mlflow"],
            folder / "server.log",
            cwd=folder,
            env=self.base_env(**env),
        )

    def start_prefect(self) -> None:
        folder = self.home / "prefect-server"
        folder.mkdir()
        env = self.compose_env("prefect-server")
        command = [
            self.native_arg(a, "prefect-server") for a in COMPOSE["prefect-server"]["command"]
        ]
        self.procs["prefect-server"] = start(
            [str(BIN / "prefect"), *command],
            self.ports["prefect-server"],
            folder / "server.log",
            cwd=folder,
            health="/api/health",
            env=self.base_env(**env, PREFECT_HOME=str(folder)),
        )

    def start_dask(self) -> None:
        folder = self.home / "dask"
        folder.mkdir()
        command = [
            self.native_arg(a, "dask-scheduler") for a in COMPOSE["dask-scheduler"]["command"]
        ]
        self.spawn("dask-scheduler", [str(BIN / "dask"), *command], folder, self.base_env(),
                   folder / "scheduler.log")  # fmt: skip
        # compose's: the worker's settings, and a Prefect home of their own
        worker_env = self.base_env(**self.compose_env("dask-worker"))
        worker_env["PREFECT_HOME"] = str(folder / "prefect")
        replicas = COMPOSE["dask-worker"]["deploy"]["replicas"]
        for i in range(replicas):
            command = [self.native_arg(a, "dask-worker") for a in COMPOSE["dask-worker"]["command"]]
            command[command.index("--local-directory") + 1] = str(folder / f"worker-{i}")
            # a container may listen on every interface; here, loopback only
            command += ["--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"]
            self.spawn(f"dask-worker-{i}", [str(BIN / "dask"), *command], folder, worker_env,
                       folder / f"worker-{i}.log")  # fmt: skip
        wait_for(lambda: len(self.dask_workers()) == replicas, 90, f"{replicas} Dask workers")

    def spawn(
        self, name: str, argv: list[str], cwd: Path, env: dict, log: Path
    ) -> subprocess.Popen:
        """Start `argv` in a session of its own (stopped as a group by `stop`), its output
        appended to `log` (the child keeps the file open; this process does not)."""
        with log.open("a") as out:
            self.procs[name] = subprocess.Popen(
                argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return self.procs[name]

    def dask_workers(self) -> list[str]:
        from distributed import Client

        with (
            contextlib.suppress(OSError, TimeoutError),
            Client(self.dask_address, timeout=5) as client,
        ):
            return sorted(client.scheduler_info()["workers"])
        return []

    def prefect_api(self, path: str, body: dict | None = None, method: str | None = None):
        return http(self.prefect_url + path, self.secrets["PREFECT_AUTH_STRING"], body, method)

    def start_worker(self, project: Path) -> None:
        """compose's worker command (create the pool, deploy prefect.yaml's deployment, start
        the worker) in `project`; returns once the worker polls its pool."""
        started = time.time()
        proc = self.spawn(
            "worker", ["/bin/sh", "-c", COMPOSE["worker"]["command"][0]], project,
            self.client_env(project, PREFECT_WORKER_QUERY_SECONDS="2"),  # pick runs up fast
            self.home / "worker.log",
        )  # fmt: skip
        pool = SETTINGS["prefect"]["work_pool"]

        def polling() -> bool:
            assert proc.poll() is None, (self.home / "worker.log").read_text()[-3000:]
            status, workers = self.prefect_api(f"/work_pools/{pool}/workers/filter", {}, "POST")
            return status == 200 and any(
                w["status"] == "ONLINE"
                and datetime.fromisoformat(w["last_heartbeat_time"]).timestamp() > started
                for w in workers
            )

        wait_for(polling, 180, f"a worker polling pool {pool}", interval=0.5)

    def native_arg(self, arg: str, service: str) -> str:
        """One argument of a compose command, for 127.0.0.1 and this stack's ports."""
        arg = self.resolve(arg).replace("0.0.0.0", "127.0.0.1")
        compose_port = {
            "mlflow": SETTINGS["mlflow"]["port"],
            "prefect-server": SETTINGS["prefect"]["port"],
            "dask-scheduler": SETTINGS["dask"]["scheduler_port"],
        }.get(service)
        if compose_port is not None:
            arg = re.sub(rf"^(--port=)?{compose_port}$", rf"\g<1>{self.ports[service]}", arg)
        if arg == ":8787":  # the scheduler's dashboard
            arg = "127.0.0.1:0"
        return arg

    # -- stopping ----------------------------------------------------------------------------
    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            with contextlib.suppress(Exception):
                stop(proc, grace=10)
        if (self.pgdata / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self.stop_postgres_server()


def new_stack() -> Stack:
    # not under pytest's tmp folders: those are private to root, and PostgreSQL runs as postgres
    return Stack(Path(tempfile.mkdtemp(prefix="slimline-stack-")))
