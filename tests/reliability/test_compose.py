"""The team stack and the repository's secrets (issue 8, item 25).

docker/compose.yaml: every credential comes from the environment (no literal, no default that
would silently become a known password), and a port published on all interfaces belongs to a
service that demands credentials; MLflow only with its basic-auth app. The checker is tested on
inline examples as well, so it is proven even while the stack is not written yet.
No secret is committed: `git grep` over the tracked files.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.support.paths import ROOT
from tests.support.processes import check, run

COMPOSE_FILES = sorted((ROOT / "docker").glob("compose*.y*ml"))
CREDENTIAL = re.compile(r"PASSWORD|SECRET|TOKEN|AUTH_STRING|ACCESS_KEY|API_KEY", re.IGNORECASE)
# ${VAR} or ${VAR:?message} / ${VAR?message}: from the environment, no fallback value
FROM_ENV = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:?\?[^}]*)?\}$")
URL_WITH_PASSWORD = re.compile(r"://[^/\s:@]+:([^@\s]+)@")
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", "KEY"]
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _published(port) -> tuple[str | None, bool]:
    """(host ip, whether the port is published on the host) for short or long syntax."""
    if isinstance(port, dict):
        return port.get("host_ip"), port.get("published") is not None
    parts = str(port).rsplit(":", 2)
    if len(parts) == 1:  # "5000": a random host port on every interface
        return None, True
    return (parts[0] if len(parts) == 3 else None), True


def _command(service: dict) -> str:
    command = service.get("command") or ""
    return " ".join(map(str, command)) if isinstance(command, list) else str(command)


def _demands_credentials(service: dict) -> bool:
    if "mlflow" in f"{service.get('image', '')} {_command(service)}":
        return "basic-auth" in _command(service)  # MLflow alone has no authentication at all
    env = _environment(service)
    return any(CREDENTIAL.search(k) and FROM_ENV.match(v) for k, v in env.items())


def compose_problems(doc: dict) -> list[str]:
    problems = []
    for name, service in (doc.get("services") or {}).items():
        env = _environment(service)
        for key, value in env.items():
            if CREDENTIAL.search(key) and not FROM_ENV.match(value):
                problems.append(f"{name}: {key} must come from the environment (got {value!r})")
        for value in [_command(service), *env.values()]:
            for password in URL_WITH_PASSWORD.findall(value):
                if not FROM_ENV.match(password):
                    problems.append(f"{name}: a password written into a URL ({password!r})")
        for port in service.get("ports") or []:
            host, published = _published(port)
            if published and host not in LOOPBACK and not _demands_credentials(service):
                problems.append(f"{name}: port {port} is open on every interface without auth")
    return problems


GOOD = """
services:
  db:
    image: postgres:16
    environment: {POSTGRES_USER: mlflow, POSTGRES_PASSWORD: "${POSTGRES_PASSWORD:?set it}"}
  mlflow:
    image: ghcr.io/mlflow/mlflow:v3.1.7
    command: mlflow server --app-name basic-auth --host 0.0.0.0
      --backend-store-uri postgresql://mlflow:${POSTGRES_PASSWORD}@db/mlflow
    environment:
      - MLFLOW_FLASK_SERVER_SECRET_KEY=${MLFLOW_SECRET_KEY:?}
      - MLFLOW_AUTH_ADMIN_PASSWORD=${MLFLOW_ADMIN_PASSWORD}
    ports: ["5000:5000"]
  prefect:
    image: prefecthq/prefect:3-latest
    environment: {PREFECT_SERVER_API_AUTH_STRING: "${PREFECT_AUTH:?}"}
    ports: [{target: 4200, published: 4200}]
  minio:
    image: minio/minio
    environment: {MINIO_ROOT_PASSWORD: "${MINIO_PASSWORD:?}"}
    ports: ["127.0.0.1:9001:9001"]
"""
BAD = """
services:
  db:
    image: postgres:16
    environment: {POSTGRES_PASSWORD: "${POSTGRES_PASSWORD:-postgres}"}
  mlflow:
    image: ghcr.io/mlflow/mlflow:v3.1.7
    command: ["mlflow", "server", "--backend-store-uri", "postgresql://u:hunter2@db/m"]
    ports: ["0.0.0.0:5000:5000"]
  minio:
    image: minio/minio
    environment: ["MINIO_ROOT_PASSWORD=minioadmin"]
"""


def test_the_checker_accepts_a_stack_with_credentials_from_the_environment():
    assert compose_problems(yaml.safe_load(GOOD)) == []


def test_the_checker_names_literal_defaulted_and_unauthenticated_services():
    assert compose_problems(yaml.safe_load(BAD)) == [
        "db: POSTGRES_PASSWORD must come from the environment "
        "(got '${POSTGRES_PASSWORD:-postgres}')",
        "mlflow: a password written into a URL ('hunter2')",
        "mlflow: port 0.0.0.0:5000:5000 is open on every interface without auth",
        "minio: MINIO_ROOT_PASSWORD must come from the environment (got 'minioadmin')",
    ]


@pytest.mark.skipif(not COMPOSE_FILES, reason="docker/compose.yaml is not written yet")
@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_stack_takes_credentials_from_the_environment(path: Path):
    doc = yaml.safe_load(path.read_text())
    assert doc.get("services"), f"{path}: no services"
    assert compose_problems(doc) == []


# what a committed secret looks like (built from pieces, so this file does not match itself)
SECRET_PATTERNS = [
    "-----BEGIN [A-Z ]*PRIV" + "ATE KEY-----",
    "AKIA" + "[0-9A-Z]{16}",  # AWS access key id
    "gh[pousr]_" + "[A-Za-z0-9]{36}",  # GitHub token
    "xox[baprs]-" + "[A-Za-z0-9-]{10,}",  # Slack token
]
CONFIG_FILES = ["*.yaml", "*.yml", "*.toml", "*.ini", "*.cfg", "*.json", "*.env", ".env*",
                # measurements, not settings: soak.json counts rows of Prefect's `secrets` table
                ":(exclude)bench/results/*"]  # fmt: skip
# a credential key given a value in a config file: `password: x`, `DB_PASSWORD=x`, ...
ASSIGNED = r"(password|passwd|secret|token)[A-Za-z_]*['\"]?[[:space:]]*[:=]"
# (a `tokenizer:` is a file of words, not a credential)
VALUE = re.compile(
    r"(?i)(?:password|passwd|secret|token(?!iz))[a-z_]*['\"]?\s*[:=]\s*['\"]?([^\s'\"]*)"
)
# not a secret: empty, from the environment (${VAR...}), or a placeholder (.env.example)
PLACEHOLDER = re.compile(r"(?i)^(|\$.*|<.*|change-?me.*|example.*|your[-_].*|x{3,}|\*+)$")


def committed_values(hits: list[str]) -> list[str]:
    """The grep hits whose value is a literal: not empty, not ${VAR}, not a placeholder."""
    return [
        hit
        for hit in hits
        if any(not PLACEHOLDER.match(value) for value in VALUE.findall(hit.split(":", 2)[-1]))
    ]


def git_grep(pattern: str, *pathspecs: str, flags: tuple[str, ...] = ()) -> list[str]:
    """Matching lines of the tracked files (binary files skipped)."""
    command = ["git", "grep", "-I", "-n", "-E", *flags, "-e", pattern, "--", *pathspecs]
    result = run(command, ROOT)
    assert result.returncode in (0, 1), result.stderr  # 1: no match
    return result.stdout.splitlines()


def test_no_secret_is_committed():
    found = [hit for pattern in SECRET_PATTERNS for hit in git_grep(pattern)]
    found += committed_values(git_grep(ASSIGNED, *CONFIG_FILES, flags=("-i",)))
    listed = check(run(["git", "ls-files"], ROOT))
    for name in listed.stdout.split():
        if Path(name).name == ".env" or Path(name).suffix in (".pem", ".key"):
            found.append(f"{name}: a secrets file is tracked")
    assert found == []


def test_the_secret_scan_flags_credentials_not_tokenizers():
    hits = ["a.yaml:3:  api_token: abc123", "b.env:1:DB_PASSWORD=hunter2",
            "params.yaml:64:  tokenizer: data/pretrained/tokenizer.json",
            "c.yaml:2:  password: ${DB_PASSWORD}"]  # fmt: skip
    assert committed_values(hits) == hits[:2]
