"""A no-op run's verdict: when no stage ran, the model is one the registry already judged.

Registering it again would add a duplicate version per no-op run (and a few seconds of ONNX
logging). The model and its gates are fixed by the dvc.lock entries of the export, validate and
benchmark stages, which tracking tags on every run; an earlier run with the same three hashes
and a recorded verdict gives that verdict, copied onto the new run with promotion `unchanged`.
"""

from __future__ import annotations

import time
from pathlib import Path

from slimline.core.params.schema import Params
from slimline.records.stage_outputs import dvc_lock_hashes
from slimline.records.tracking import connect, tracking_errors

FIXING_STAGES = ("export", "validate", "benchmark")
COPIED = ("slimline.verdict", "slimline.model_version", "slimline.gates.failing")


def reuse_verdict(root: Path, params: Params, run_id: str) -> dict | None:
    """The earlier verdict for the same model, recorded on `run_id`; None when there is none."""
    locks = dvc_lock_hashes(Path(root))
    if any(stage not in locks for stage in FIXING_STAGES):
        return None
    client, experiment_id, uri = connect(Path(root).resolve(), params)
    query = " and ".join(
        [f"tags.`slimline.dvc_lock.{s}` = '{locks[s]}'" for s in FIXING_STAGES]
        + ["tags.`slimline.verdict` LIKE '%'"]
    )
    with tracking_errors(uri):
        earlier = client.search_runs(
            [experiment_id], query, order_by=["attributes.start_time DESC"], max_results=10
        )
        for run in earlier:
            if run.info.run_id == run_id:
                continue
            tags = run.data.tags
            version = tags.get("slimline.model_version")
            passed = tags["slimline.verdict"] == "passed"
            if passed and not _exists(client, params.tracking.model_name, version):
                continue  # the version was deleted since: let the registry judge afresh
            summary = _summary(client, params.tracking.model_name, tags, version, passed)
            _copy(client, run_id, tags, run.info.run_id, passed)
            return {
                "passed": passed,
                "summary": summary,
                "version": version,
                "champion": "holds champion" in summary,
            }
    return None


def _exists(client, name: str, version: str | None) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        return version is not None and client.get_model_version(name, version) is not None
    except MlflowException:
        return False


def _summary(client, name: str, tags: dict, version: str | None, passed: bool) -> str:
    if not passed:
        return "unchanged model; gates failed: " + tags.get("slimline.gates.failing", "?")
    aliases = client.get_registered_model(name).aliases
    held = sorted(a for a, v in aliases.items() if str(v) == str(version))
    champion = aliases.get("champion")
    if "champion" in held:
        return f"unchanged model: version {version} holds champion"
    return (
        f"unchanged model: version {version} ({', '.join(held) or 'no alias'}); "
        f"champion is version {champion}"
    )


def _copy(client, run_id: str, tags: dict, source: str, passed: bool) -> None:
    from mlflow.entities import Metric, RunTag

    copied = {k: v for k, v in tags.items() if k in COPIED or k.startswith("slimline.gate.")}
    copied |= {"slimline.promotion": "unchanged", "slimline.verdict_from": source}
    client.log_batch(
        run_id,
        metrics=[Metric("verdict_passed", float(passed), int(time.time() * 1000), 0)],
        tags=[RunTag(k, v) for k, v in copied.items()],
    )
