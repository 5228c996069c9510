"""Tags and params are rounded for people; metrics, and what the champion is compared on, are
not (no pipeline run needed)."""

from __future__ import annotations

import math

from slimline.records.aliases import version_figures
from slimline.records.rounding import for_people, json_for_people, significant
from slimline.records.stage_outputs import StageFigures, flatten
from tests.support.registry import client
from tests.support.workspace import fresh_store


def test_accuracies_keep_four_significant_digits_and_bytes_are_whole():
    assert for_people("accuracy", 0.26666666666666666) == "0.2667"
    assert for_people("agreement", 0.9861111111111112) == "0.9861"
    assert for_people("latency_ms", 0.054812345) == "0.05481"
    assert for_people("accuracy", 1.0) == "1.0" and for_people("accuracy", 0.97) == "0.97"
    assert for_people("size_bytes", 34193.0) == "34193"
    assert for_people("final.size_bytes", 34192.6) == "34193"
    assert for_people("speedup", 162.23456) == "162.2"
    # what is not a float stays as it was: counts, flags, text, a figure MLflow cannot hold
    assert for_people("samples", 360) == "360" and for_people("passed", True) == "True"
    assert for_people("variant", "pruned_int8") == "pruned_int8"
    assert for_people("accuracy", math.nan) == "nan"
    assert significant(0.0) == 0.0 and significant(-0.0123456) == -0.01235


def test_a_gate_interval_reads_as_a_param_for_people_and_its_value_stays_a_metric():
    figures = StageFigures()
    gate = {"name": "min_accuracy", "value": 0.9861111111111112,
            "interval": [0.9717834877186631, 0.9956708566568366], "samples": 360}  # fmt: skip
    flatten({"gates": [gate]}, "", figures)
    assert figures.text["min_accuracy.interval"] == "[0.9718, 0.9957]"
    assert figures.metrics["min_accuracy.value"] == 0.9861111111111112
    assert figures.metrics["min_accuracy.samples"] == 360.0
    assert json_for_people("sizes", [{"a": 1.23456789}, "x", 3]) == '[{"a": 1.235}, "x", 3]'
    assert json_for_people("block_bytes", [1024.4, 16]) == "[1024, 16]"


def test_the_champion_defends_the_run_metrics_not_the_rounded_tags(tmp_path):
    db = tmp_path / "mlflow.db"
    fresh_store(db)
    mlflow = client(f"sqlite:///{db}")
    experiment = mlflow.create_experiment("rounding", artifact_location=tmp_path.as_uri())
    run = mlflow.create_run(experiment).info.run_id
    mlflow.log_metric(run, "registry.accuracy", 0.9700333333333333)
    mlflow.log_metric(run, "registry.latency_ms", 0.0512345)
    mlflow.create_registered_model("m")
    tags = {"accuracy": "0.97", "latency_ms": "0.05123", "agreement": "0.9861", "run_id": run}
    registered = mlflow.create_model_version("m", str(tmp_path), run_id=run, tags=tags)
    figures = version_figures(mlflow, "m", str(registered.version))
    # full precision from the run; a figure the run lacks comes from its tag
    assert figures == {"accuracy": 0.9700333333333333, "latency_ms": 0.0512345,
                       "agreement": 0.9861}  # fmt: skip
    # registered by hand, without a run: the tags are all there is
    by_hand = mlflow.create_model_version("m", str(tmp_path), tags={"accuracy": "0.95"})
    assert version_figures(mlflow, "m", str(by_hand.version)) == {"accuracy": 0.95}
