"""An MLflow client on a test's own store."""

from __future__ import annotations


def client(uri: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
