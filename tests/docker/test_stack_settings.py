"""docker/stack.yaml is the one place for the team stack's ports, buckets and credential names:
compose.yaml, .env.example and docs/orchestration.md follow it, and tests/stack/ reads it."""

from __future__ import annotations

import re
from urllib.parse import urlparse

import pytest
import yaml

from tests.support.paths import ROOT
from tests.support.stack import CREDENTIALS

DOCKER = ROOT / "docker"


@pytest.fixture(scope="module")
def settings() -> dict:
    return yaml.safe_load((DOCKER / "stack.yaml").read_text())


@pytest.fixture(scope="module")
def services() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]


def container_port(service: dict) -> int:
    return int(service["ports"][0].rsplit(":", 1)[1])


def test_credential_names_are_the_env_files(settings):
    example = {
        line.split("=", 1)[0]
        for line in (DOCKER / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert set(CREDENTIALS.values()) == example


def test_compose_uses_the_ports(settings, services):
    assert container_port(services["minio"]) == settings["s3"]["port"]
    assert container_port(services["mlflow"]) == settings["mlflow"]["port"]
    assert container_port(services["prefect-server"]) == settings["prefect"]["port"]
    command = services["dask-scheduler"]["command"]
    assert int(command[command.index("--port") + 1]) == settings["dask"]["scheduler_port"]
    worker = services["dask-worker"]
    assert worker["deploy"]["replicas"] == settings["dask"]["workers"]
    address = f"tcp://dask-scheduler:{settings['dask']['scheduler_port']}"
    assert address in worker["command"]


def test_compose_uses_the_buckets_and_databases(settings, services):
    mlflow = services["mlflow"]["environment"]
    dest = urlparse(mlflow["MLFLOW_ARTIFACTS_DESTINATION"])
    s3 = settings["s3"]
    assert (dest.hostname, dest.path.strip("/")) == (
        s3["buckets"]["artifacts"],
        s3["artifacts_prefix"],
    )
    made = re.findall(
        r"mc mb --ignore-existing local/(\S+)", services["minio-buckets"]["command"][0]
    )
    assert sorted(made) == sorted(s3["buckets"].values())
    assert urlparse(mlflow["MLFLOW_BACKEND_STORE_URI"]).path == "/mlflow"
    assert services["postgres"]["environment"]["POSTGRES_DB"] == "mlflow"
    assert set(settings["postgres"]["databases"]) == {"mlflow", "prefect"}
    prefect_db = services["prefect-server"]["environment"]["PREFECT_SERVER_DATABASE_CONNECTION_URL"]
    assert urlparse(prefect_db).path == "/prefect"


def test_compose_uses_the_names_and_credentials(settings, services):
    creds = CREDENTIALS
    worker = services["worker"]
    assert f"--pool {settings['prefect']['work_pool']}" in worker["command"][0]
    assert f"--name {settings['prefect']['deployment']}" in worker["command"][0]
    env = worker["environment"]
    assert env["MLFLOW_TRACKING_USERNAME"] == settings["mlflow"]["admin"]
    assert creds["mlflow_admin_password"] in env["MLFLOW_TRACKING_PASSWORD"]
    assert creds["prefect_auth"] in env["PREFECT_API_AUTH_STRING"]
    assert creds["s3_access_key"] in env["AWS_ACCESS_KEY_ID"]
    assert creds["s3_secret_key"] in env["AWS_SECRET_ACCESS_KEY"]
    assert env["AWS_ENDPOINT_URL_S3"] == f"http://minio:{settings['s3']['port']}"
    assert env["AWS_EC2_METADATA_DISABLED"] == "true"
    # the Dask workers run candidates' stages: the same clients' settings as the worker
    assert services["dask-worker"]["environment"].items() >= env.items()
    ini = (DOCKER / "mlflow-auth.ini").read_text()
    assert f"admin_username = {settings['mlflow']['admin']}" in ini


def test_prefect_yaml_declares_the_pool_and_deployment(settings):
    prefect = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployment = next(
        d for d in prefect["deployments"] if d["name"] == settings["prefect"]["deployment"]
    )
    assert deployment["work_pool"]["name"] == settings["prefect"]["work_pool"]
    assert deployment["parameters"]["update_imports"] is True


def test_the_docs_name_the_same_ports_and_buckets(settings):
    docs = (ROOT / "docs" / "orchestration.md").read_text()
    for port in (settings["s3"]["port"], settings["mlflow"]["port"], settings["prefect"]["port"],
                 settings["dask"]["scheduler_port"]):  # fmt: skip
        assert str(port) in docs, port
    for bucket in settings["s3"]["buckets"].values():
        assert f"s3://{bucket}" in docs, bucket
    assert settings["prefect"]["work_pool"] in docs
    assert "docker/stack.yaml" in docs
