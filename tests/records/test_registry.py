"""Registration only through the gates; champion moves only to a better model, under a lock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slimline.cli import app
from slimline.compression.release.gates import Evidence, Gate, model_gates, report, spec
from slimline.core.atomic import write_json
from slimline.core.params.loading import load_params
from slimline.core.params.release import Gates
from slimline.records.aliases import (
    RegistryError,
    list_versions,
    promote,
    rollback,
    version_figures,
)
from slimline.records.registry import Verdict, decide_and_promote, read_gates
from slimline.records.summary import markdown
from slimline.records.tracking import log_pipeline_run
from tests.support.paths import ROOT
from tests.support.racing import race
from tests.support.registry import client
from tests.support.workspace import STAGES, final, reported, scored_accuracy

NAME = "slimline-test"
STAGE_LIST = [{"name": s, "status": "ran", "seconds": 1.0} for s in STAGES]


@pytest.fixture
def store(tmp_path, monkeypatch) -> str:
    """One registry shared by every workspace of the test, as a team's store would be."""
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    (tmp_path / "store").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def pipeline(workspace):
    """`pipeline(root, **variations)`: a copy of the real run, recorded, and the registry's
    verdict on it."""

    def run(root: Path, **variations):
        params = workspace(root, **variations)
        record = log_pipeline_run(root, params, STAGE_LIST)
        return params, record, decide_and_promote(root, params, record.run_id)

    return run


def aliases(uri: str) -> dict[str, str]:
    return {a: str(v) for a, v in client(uri).get_registered_model(NAME).aliases.items()}


def _reports(root: Path, evidence: Evidence, decide: str = "estimate"):
    """reports/gates.json from the library's gates and a benchmark report's speed-up gate."""
    params = load_params(ROOT / "params.yaml")
    gates = model_gates(Gates(decide=decide), evidence, size_bytes=26_815,
                        teacher_size_bytes=4_348_809)  # fmt: skip
    write_json(root / params.paths.gates_report, report(gates))
    speedup = Gate("min_speedup", 7.123456, 5.0, "min").as_dict()
    write_json(root / params.paths.benchmark_report, {"speedup_gate": speedup})
    return params


def test_gate_results_keep_their_interval_and_read_like_people_write(tmp_path):
    # 60 test rows: 2 the teacher gets and the model misses, so a drop of 0.0333
    tiny = Evidence(both=57, teacher_only=2, model_only=0, neither=1, agree=59)
    params = _reports(tmp_path, tiny)
    gates = {g.name: g for g in read_gates(tmp_path, params)}
    drop = gates["max_accuracy_drop"]
    assert drop.interval is not None and drop.samples == 60 and drop.decided_on == "estimate"
    assert drop.interval[0] <= drop.value <= drop.interval[1]
    assert drop.describe().startswith("max_accuracy_drop: 0.0333 > 0.0100 (off by 0.0233; ")
    assert drop.tag().startswith("failed 0.0333 > 0.0100 (off by 0.0233; 95% CI ")
    assert "60 test samples" in drop.tag() and "too small to decide it" in drop.tag()
    assert gates["min_speedup"].tag() == "passed 7.1235 >= 5.0000"
    summary = Verdict(False, list(gates.values())).summary()
    assert summary.startswith("gates failed: max_accuracy_drop: 0.0333 > 0.0100")
    assert "0.033333" not in summary  # figures for people, not floats
    page = markdown(tmp_path, params, [], {"summary": summary}, {})
    assert "| max_accuracy_drop | 0.0333 (95% CI " in page and "| 0.0100 | estimate |" in page
    assert "**Test split too small:** max_accuracy_drop: the test split (60 samples)" in page
    assert "test samples would decide it" in page


def test_a_large_split_has_no_note_and_bound_is_named(tmp_path):
    large = Evidence(both=9_890, teacher_only=10, model_only=10, neither=90, agree=9_990)
    params = _reports(tmp_path, large, decide="bound")
    gates = read_gates(tmp_path, params)
    assert all(g.passed and g.undecidable is None for g in gates)
    assert gates[0].describe().startswith("min_accuracy: lower bound 0.9879 >= 0.9500 (")
    page = markdown(tmp_path, params, [], {"summary": "-"}, {})
    assert "too small" not in page and "| bound |" in page


@pytest.mark.slow
def test_failed_gate_registers_nothing_moves_nothing_and_tags_the_run(tmp_path, store, pipeline):
    _, _, first = pipeline(tmp_path / "a", accuracy=0.97)
    before = aliases(store)
    # the real run, with validate's min_accuracy judged against 1.01: a candidate that would
    # otherwise win (0.99 > 0.97) must not move anything
    params, record, verdict = pipeline(
        tmp_path / "b", accuracy=0.99, thresholds={"min_accuracy": 1.01}
    )
    assert not verdict.passed and verdict.version is None
    assert [g.name for g in verdict.failing] == ["min_accuracy"]
    assert len(verdict.gates) == 6  # validate's five and the benchmark's speed-up
    assert aliases(store) == before == {"champion": first.version, "challenger": first.version}
    assert [v.version for v in list_versions(tmp_path / "b", params)] == [first.version]
    tags = client(store).get_run(record.run_id).data.tags
    assert tags["slimline.promotion"] == "rejected" and tags["slimline.verdict"] == "failed"
    assert tags["slimline.gates.failing"] == "min_accuracy: 0.9900 < 1.0100 (off by 0.0200)"
    assert tags["slimline.gate.min_accuracy"] == "failed 0.9900 < 1.0100 (off by 0.0200)"
    assert tags["slimline.gate.max_size_bytes"].startswith("passed ")


@pytest.mark.slow
def test_speedup_gate_from_the_benchmark_counts_and_a_missing_report_fails_closed(
    tmp_path, store, pipeline
):
    _, _, slow = pipeline(tmp_path / "a", thresholds={"min_speedup": 1e9})
    assert [g.name for g in slow.failing] == ["min_speedup"]
    params, _, blind = pipeline(tmp_path / "b", omit=("reports/gates.json",))
    assert [g.name for g in blind.failing] == ["reports/gates.json:gates"]
    assert list_versions(tmp_path / "b", params) == []


@pytest.mark.slow
def test_champion_moves_only_to_a_better_model_and_ties_go_to_lower_latency(
    tmp_path, store, pipeline
):
    _, _, v1 = pipeline(tmp_path / "1", accuracy=0.97, latency_ms=0.05)
    assert v1.champion and aliases(store) == {"champion": "1", "challenger": "1"}
    _, _, v2 = pipeline(tmp_path / "2", accuracy=0.99, latency_ms=0.05)
    assert v2.champion and v2.previous_champion == "1"
    _, _, v3 = pipeline(tmp_path / "3", accuracy=0.98, latency_ms=0.05)
    assert not v3.champion and aliases(store) == {"champion": "2", "challenger": "3"}
    _, _, v4 = pipeline(tmp_path / "4", accuracy=0.99, latency_ms=0.05)
    assert not v4.champion  # same accuracy, same latency: not better
    _, _, v5 = pipeline(tmp_path / "5", accuracy=0.99, latency_ms=0.04)
    assert v5.champion and aliases(store)["champion"] == "5"


@pytest.mark.slow
def test_version_carries_verdict_figures_and_lineage_tags(tmp_path, store, pipeline):
    root = tmp_path / "a"
    params, record, verdict = pipeline(root, accuracy=0.97, latency_ms=0.08)
    real = reported(root, params)
    tags = client(store).get_model_version(NAME, verdict.version).tags
    assert tags["gates"] == "passed" and tags["run_id"] == record.run_id
    assert tags["accuracy"] == "0.97" and tags["latency_ms"] == "0.08"
    # figures for people: 4 significant digits, bytes whole; the run's metrics keep them all
    agreement = real["quantize_metrics"]["agreement"]
    assert tags["agreement"] == repr(float(f"{agreement:.4g}"))
    assert tags["size_bytes"] == str(final(real["benchmark_report"])["size_bytes"])
    assert tags["size_bytes"] == str((root / "dist/model.onnx").stat().st_size)
    metrics = client(store).get_run(record.run_id).data.metrics
    assert metrics["registry.agreement"] == agreement
    assert metrics["registry.accuracy"] == 0.97 and metrics["registry.latency_ms"] == 0.08
    assert tags["data_sha256"] == real["data_report"]["sha256"]
    assert tags["primary_metric"] == "accuracy" and tags["git_commit"] == "unknown"
    run_tags = client(store).get_run(record.run_id).data.tags
    assert run_tags["slimline.model_version"] == verdict.version
    teacher = next(v for v in real["benchmark_report"]["variants"] if v["name"] == "teacher_fp32")
    speedup = teacher["latency_ms_b1_p50"] / 0.08
    form = spec(speedup, params.gates.min_speedup)  # one format for the pair
    assert run_tags["slimline.gate.min_speedup"] == (
        f"passed {speedup:{form}} >= {params.gates.min_speedup:{form}}"
    )


@pytest.mark.slow
def test_a_version_tag_is_rounded_and_the_champion_defends_full_precision(
    tmp_path, store, pipeline
):
    # 0.9700333... and 0.97001 both read 0.97 in the tags: compared on the tags they would
    # tie, and the lower latency would take champion; on the metrics the first holds
    params, record, v1 = pipeline(tmp_path / "1", accuracy=0.97 + 1 / 30_000, latency_ms=0.05)
    tags = client(store).get_model_version(NAME, v1.version).tags
    assert tags["accuracy"] == "0.97" and tags["latency_ms"] == "0.05"
    metrics = client(store).get_run(record.run_id).data.metrics
    assert metrics["registry.accuracy"] == 0.97 + 1 / 30_000  # full precision, not 0.97
    assert version_figures(client(store), NAME, v1.version)["accuracy"] == 0.97 + 1 / 30_000
    _, _, v2 = pipeline(tmp_path / "2", accuracy=0.97001, latency_ms=0.04)
    assert client(store).get_model_version(NAME, v2.version).tags["accuracy"] == "0.97"
    assert not v2.champion and aliases(store) == {"champion": "1", "challenger": "2"}
    # 0.97004, also 0.97 in the tags, beats it despite a higher latency
    _, _, v3 = pipeline(tmp_path / "3", accuracy=0.97004, latency_ms=0.06)
    assert v3.champion and v3.previous_champion == "1"
    assert {"0.97"} == {
        client(store).get_model_version(NAME, v).tags["accuracy"] for v in ("1", "2", "3")
    }


@pytest.mark.slow
def test_champion_loads_with_pyfunc_and_scores_the_reported_accuracy(tmp_path, store, pipeline):
    import mlflow

    root = tmp_path / "a"
    params, _, verdict = pipeline(root)  # the run's own figures, untouched
    (tmp_path / "dl").mkdir()
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion", dst_path=str(tmp_path / "dl"))
    accuracy = scored_accuracy(root, params, lambda x: model.predict(x)["logits"])
    real = reported(root, params)
    gate = next(g for g in real["gates_report"]["gates"] if g["name"] == "min_accuracy")
    assert accuracy == pytest.approx(gate["value"], abs=1e-12)
    assert gate["value"] == verdict.figures["accuracy"] == real["quantize_metrics"]["int8_accuracy"]
    assert 0.5 < accuracy < 1.0  # a trained model, scored on the real test split
    assert model.metadata.signature.inputs.to_dict()[0]["tensor-spec"]["shape"] == (-1, 1, 8, 8)


@pytest.mark.slow
def test_promote_and_rollback_follow_the_champion_history(tmp_path, store, pipeline):
    params, _, _ = pipeline(tmp_path / "1", accuracy=0.97)
    pipeline(tmp_path / "2", accuracy=0.99)
    root = tmp_path / "2"
    assert rollback(root, params) == "1" and aliases(store)["champion"] == "1"
    with pytest.raises(RegistryError, match="no earlier champion"):
        rollback(root, params)
    promote(root, params, "2")
    promote(root, params, "1", alias="challenger")
    assert aliases(store) == {"champion": "2", "challenger": "1"}
    assert rollback(root, params) == "1"
    with pytest.raises(RegistryError, match="has no version '99'"):
        promote(root, params, "99")
    unchecked = client(store).create_model_version(NAME, str(tmp_path / "1" / "dist"))
    with pytest.raises(RegistryError, match="did not pass its gates"):
        promote(root, params, str(unchecked.version))
    assert aliases(store) == {"champion": "1", "challenger": "1"}


@pytest.mark.slow
def test_cli_models_promote_rollback(tmp_path, store, pipeline):
    pipeline(tmp_path / "1", accuracy=0.97)
    pipeline(tmp_path / "2", accuracy=0.99)
    params = str(tmp_path / "2" / "params.yaml")
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "--params", params], terminal_width=200)
    assert listed.exit_code == 0, listed.output
    assert "champion" in listed.stdout and "0.9900" in listed.stdout
    bad = runner.invoke(app, ["promote", "7", "--params", params])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: slimline-test has no version")
    back = runner.invoke(app, ["rollback", "--params", params])
    assert back.exit_code == 0 and "version 1" in back.stdout
    ok = runner.invoke(app, ["promote", "2", "--params", params])
    assert ok.exit_code == 0 and aliases(store)["champion"] == "2"


# Each racer runs the real decide_and_promote in its own process. Inside the promotion lock,
# right after reading the champion, it holds on until the other racer has entered
# decide_and_promote and asked for the lock: so the two calls overlap by construction, and the
# second's read can only come after the first's write if the lock serializes them. (Unlocked,
# both would read "no champion" and both take it.) Every wait is on a file, with a timeout.
RACER = """
import contextlib, json, sys, time
from pathlib import Path

root, run_id, folder, me, other = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), *sys.argv[4:6]
sys.path.insert(0, sys.argv[6])  # the repo root: tests.waiting
from tests.support.waiting import wait_for
from slimline.core.params.loading import load_params
from slimline.records import registry

times = {}
real_lock, read_holder = registry.promotion_lock, registry._alias_holder


@contextlib.contextmanager
def announced_lock(*args):
    times["requested"] = time.time()
    (folder / f"{me}.requested").touch()
    with real_lock(*args):
        times["acquired"] = time.time()
        yield
    times["released"] = time.time()


def holder_once_the_other_asks(*args):
    holder = read_holder(*args)
    wait_for(lambda: (folder / f"{other}.requested").exists(), timeout=300,
             what=f"racer {other} to ask for the promotion lock")
    return holder


registry.promotion_lock, registry._alias_holder = announced_lock, holder_once_the_other_asks
params = load_params(root / "params.yaml")
times["entered"] = time.time()
verdict = registry.decide_and_promote(root, params, run_id)
times["left"] = time.time()
print(json.dumps(times | {"previous": verdict.previous_champion, "version": verdict.version}))
"""


@pytest.mark.slow
def test_two_racing_promotions_leave_exactly_one_champion_the_better(tmp_path, store, workspace):
    runs = {}
    for name, acc in (("better", 0.99), ("worse", 0.96)):
        params = workspace(tmp_path / name, accuracy=acc)
        runs[name] = log_pipeline_run(tmp_path / name, params, STAGE_LIST).run_id
    (folder := tmp_path / "race").mkdir()
    seen = race(
        RACER,
        ("better", "worse"),
        lambda me, other: [str(tmp_path / me), runs[me], str(folder), me, other, str(ROOT)],
    )
    # they raced: both were inside decide_and_promote at once
    assert max(s["entered"] for s in seen.values()) < min(s["left"] for s in seen.values())
    # and the lock serialized them: one held it while the other asked, then handed it over
    first, second = sorted(seen.values(), key=lambda s: s["acquired"])
    assert second["requested"] < first["released"] <= second["acquired"]
    # the second saw the first's champion (unlocked, both would have seen none)
    assert first["previous"] is None and second["previous"] == first["version"]
    version_of = {
        n: client(store).get_run(runs[n]).data.tags["slimline.model_version"] for n in runs
    }
    assert aliases(store)["champion"] == version_of["better"]
    history = json.loads(client(store).get_registered_model(NAME).tags["slimline.champion_history"])
    assert history[-1] == version_of["better"] and len(history) == len(set(history))
