"""MLflow records which variant dist/ ships and why: tags on the parent run, params on the
export stage's child run, read from metrics/export.json (no pipeline run needed)."""

from __future__ import annotations

import json

from slimline.core.params.loading import load_params
from slimline.records.tracking import log_pipeline_run
from tests.support.params import write_params

REASON = "pruned_fp32: fastest at batch 1 (pruned_int8 0.0154 ms, pruned_fp32 0.0115 ms)"


def test_the_shipped_variant_and_its_reason_are_tagged(tmp_path, monkeypatch):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    params = load_params(write_params(tmp_path / "params.yaml", export={"objective": "latency"}))
    (tmp_path / "metrics").mkdir()
    candidates = [{"name": "pruned_fp32", "passed": True}]
    export = {"size_bytes": 98_616, "variant": "pruned_fp32", "objective": "latency",
              "reason": REASON, "candidates": candidates}  # fmt: skip
    (tmp_path / "metrics/export.json").write_text(json.dumps(export))
    record = log_pipeline_run(tmp_path, params, [{"name": "export", "status": "ran", "seconds": 1}])
    client = mlflow.MlflowClient(record.tracking_uri)
    parent = client.get_run(record.run_id).data
    assert parent.tags["slimline.variant"] == "pruned_fp32"
    assert parent.tags["slimline.objective"] == "latency"
    assert parent.tags["slimline.objective_reason"] == REASON
    assert parent.params["export.objective"] == "latency"
    child = client.get_run(record.stage_runs["export"]).data
    assert child.params["variant"] == "pruned_fp32" and child.params["reason"] == REASON
