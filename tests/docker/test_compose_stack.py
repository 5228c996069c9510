"""docker/ without a Docker engine: compose.yaml parsed and checked for consistent wiring
(services, ports, credentials, volumes, health-gated start order, URIs between services),
plus the Dockerfile's and .env.example's promises."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from tests.support.paths import ROOT

DOCKER = ROOT / "docker"
VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def env(service: dict) -> dict[str, str]:
    return {k: str(v) for k, v in (service.get("environment") or {}).items()}


def test_the_stack_has_every_service(compose):
    assert set(compose["services"]) == {
        "postgres",
        "minio",
        "minio-buckets",
        "mlflow",
        "prefect-server",
        "worker",
        "dask-scheduler",
        "dask-worker",
    }


def test_published_ports_are_bound_to_loopback(compose):
    published = [p for s in compose["services"].values() for p in s.get("ports", [])]
    assert published and all(str(p).startswith("127.0.0.1:") for p in published)


def test_credentials_come_from_the_environment_with_no_default():
    text = (DOCKER / "compose.yaml").read_text()
    example = dict(
        line.split("=", 1)
        for line in (DOCKER / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    used = {name for name, _ in VAR.findall(text)}
    assert used == set(example), "compose.yaml and .env.example name different variables"
    for name, rest in VAR.findall(text):
        assert rest == "" or rest.startswith(":?"), f"${{{name}{rest}}} has a default"
    secrets = {k: v for k, v in example.items() if re.search("PASSWORD|SECRET|AUTH", k)}
    assert secrets and all("change-me" in v for v in secrets.values())  # placeholders only


def test_start_order_waits_for_health(compose):
    services = compose["services"]
    for name, service in services.items():
        for dep, cond in (service.get("depends_on") or {}).items():
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits on {dep}'s health check"
            else:
                assert cond["condition"] == "service_completed_successfully"
                assert services[dep]["restart"] == "no"  # a one-shot job
    assert set(services["worker"]["depends_on"]) == {"prefect-server", "mlflow", "dask-scheduler"}
    assert set(services["mlflow"]["depends_on"]) == {"postgres", "minio-buckets"}


def test_the_worker_reaches_prefect_and_mlflow_with_their_credentials(compose):
    s = compose["services"]
    worker, server = env(s["worker"]), env(s["prefect-server"])
    port = s["prefect-server"]["command"][s["prefect-server"]["command"].index("--port") + 1]
    assert worker["PREFECT_API_URL"] == f"http://prefect-server:{port}/api"
    assert worker["PREFECT_API_AUTH_STRING"] == server["PREFECT_SERVER_API_AUTH_STRING"]
    mlflow_port = next(a.split("=")[1] for a in s["mlflow"]["command"] if a.startswith("--port"))
    assert worker["MLFLOW_TRACKING_URI"] == f"http://mlflow:{mlflow_port}"
    assert f"mlflow:{mlflow_port}" in next(
        a for a in s["mlflow"]["command"] if a.startswith("--allowed-hosts")
    )
    assert "--app-name=basic-auth" in s["mlflow"]["command"]
    assert worker["MLFLOW_TRACKING_PASSWORD"] == env(s["mlflow"])["MLFLOW_AUTH_ADMIN_PASSWORD"]
    # the deployment the worker registers is prefect.yaml's
    names = [d["name"] for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]]
    assert re.search(r"deploy --name (\S+)", s["worker"]["command"][0]).group(1) in names


def test_mlflow_stores_in_postgres_and_the_minio_bucket(compose):
    s = compose["services"]
    mlflow = env(s["mlflow"])
    backend = urlparse(mlflow["MLFLOW_BACKEND_STORE_URI"])
    assert (backend.scheme, backend.hostname, backend.path) == (
        "postgresql",
        "postgres",
        f"/{env(s['postgres'])['POSTGRES_DB']}",
    )
    bucket = urlparse(mlflow["MLFLOW_ARTIFACTS_DESTINATION"])
    assert bucket.scheme == "s3"
    assert f"local/{bucket.hostname}" in s["minio-buckets"]["command"][0]  # the job creates it
    assert mlflow["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert mlflow["AWS_ACCESS_KEY_ID"] == env(s["minio"])["MINIO_ROOT_USER"]
    assert mlflow["AWS_SECRET_ACCESS_KEY"] == env(s["minio"])["MINIO_ROOT_PASSWORD"]
    config = mlflow["MLFLOW_AUTH_CONFIG_PATH"]  # the image holds the project at /app
    assert (ROOT / Path(config).relative_to("/app")).exists()
    prefect_db = urlparse(env(s["prefect-server"])["PREFECT_SERVER_DATABASE_CONNECTION_URL"])
    assert (prefect_db.hostname, prefect_db.path) == ("postgres", "/prefect")
    assert "CREATE DATABASE prefect" in (DOCKER / "postgres-init.sql").read_text()


def test_volumes_are_declared_and_bind_mounts_exist(compose):
    declared = set(compose["volumes"])
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DOCKER / source).exists(), source
            else:
                assert source in declared, source
    assert {"postgres-data", "minio-data", "mlflow-auth", "worker-dvc-cache", "project"} <= declared


def test_the_image_is_cpu_torch_non_root_with_the_slimline_entrypoint():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    assert "--index-url https://download.pytorch.org/whl/cpu torch==2.13.0" in dockerfile
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1] not in {"root", "0"}
    assert 'ENTRYPOINT ["slimline"]' in dockerfile
    # the worker and the Dask workers reach the bucket through DVC (remote, imports), with the
    # pins the native stack of tests/stack/ was proven with
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for pin in ("dvc[s3]", "boto3", "psycopg2-binary", "mlflow[auth]"):
        assert f'"{next(d for d in dev["dev"] if d.startswith(pin))}"' in dockerfile, pin
    assert "docker/.env" in (ROOT / ".dockerignore").read_text()
