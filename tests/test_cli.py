"""The `slimline` grammar (docs/cli.md): `--version`, an example in every command's help, one
meaning of `--params` and `--project` everywhere, one `--stage-timeout`, the sweep grid's
`-S`, and `--json` documents alone on stdout. The commands' work is replaced by recorders
here: what they run is tested where it lives (tests/orchestration, tests/flows)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import slimline
from slimline.cli import app
from tests.support.params import write_params

COMMANDS = ["run", "check", "schedule", "sweep", "models", "promote", "rollback", "ui", "predict"]
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), terminal_width=200)


@pytest.fixture(autouse=True)
def own_signals_and_exit(monkeypatch):
    """`run` takes SIGINT/SIGTERM and `finished` marks the process done: undo both."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.setattr(sys.modules["slimline.cli.app"], "_finished", False)
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A project folder (its params name the model `from-project`) that is the cwd."""
    root = tmp_path / "project"
    root.mkdir()
    write_params(root / "params.yaml", tracking={"model_name": "from-project"})
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """A params file outside the project, naming the model `from-file`."""
    (tmp_path / "configs").mkdir()
    return write_params(
        tmp_path / "configs" / "small.yaml",
        tracking={"model_name": "from-file"},
        prune={"ratio": 0.25},
    )


def test_version_prints_the_package_version():
    assert invoke("--version").stdout.strip() == slimline.__version__
    done = subprocess.run(
        [sys.executable, "-m", "slimline.cli", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.strip() == slimline.__version__


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_shows_an_example_of_itself(command):
    shown = invoke(command, "--help")
    assert shown.exit_code == 0
    assert f"Example: slimline {command}" in " ".join(shown.stdout.split())


@pytest.fixture
def recorded(monkeypatch):
    """What the commands handed to the layer below, by command."""
    from slimline.orchestration import commands
    from slimline.records import aliases

    calls: dict[str, dict] = {}

    def record(name, result=None):
        def call(*args, **kwargs):
            calls[name] = {"args": args, "kwargs": kwargs}
            return result

        return call

    monkeypatch.setattr(commands, "run_pipeline", record("run", 0))
    monkeypatch.setattr(commands, "serve_schedule", record("schedule"))
    monkeypatch.setattr(commands, "run_sweep", record("sweep", 0))
    monkeypatch.setattr(aliases, "list_versions", record("models", []))
    monkeypatch.setattr(aliases, "promote", record("promote"))
    monkeypatch.setattr(aliases, "rollback", record("rollback", "1"))
    return calls


def test_the_stage_timeout_has_one_name_in_run_schedule_and_sweep(project, recorded):
    assert invoke("run", "--stage-timeout", "12").exit_code == 0
    assert recorded["run"]["args"][2] == 12.0
    assert invoke("schedule", "--cron", "0 3 * * *", "--stage-timeout", "13").exit_code == 0
    assert recorded["schedule"]["args"][3] == 13.0
    swept = invoke(
        "sweep", "-S", "prune.ratio=0.3", "--stage-timeout", "14", "--candidate-timeout", "99"
    )
    assert swept.exit_code == 0, swept.output
    root, specs, workers, address, candidate, stage, verbose = recorded["sweep"]["args"]
    assert (candidate, stage) == (99.0, 14.0)
    for command in ("run", "sweep"):  # the old spelling is gone, not silently ignored
        old = invoke(command, "-S", "prune.ratio=0.3", "--timeout", "5")
        assert old.exit_code == 2 and "--timeout" in old.stderr


@pytest.mark.parametrize("command", ["models", "promote", "rollback"])
def test_params_and_project_mean_the_same_in_the_registry_commands(
    command, project, elsewhere, recorded, tmp_path, monkeypatch
):
    argv = [command, *(["7"] if command == "promote" else [])]

    def seen() -> tuple[Path, str]:
        root, params = recorded[command]["args"][:2]
        return Path(root), params.tracking.model_name

    assert invoke(*argv).exit_code == 0
    assert seen() == (project, "from-project")  # <project>/params.yaml, the project the cwd
    assert invoke(*argv, "--params", str(elsewhere)).exit_code == 0
    assert seen() == (project, "from-file")  # the file's folder is not the project
    monkeypatch.chdir(tmp_path)
    assert invoke(*argv, "--project", str(project)).exit_code == 0
    assert seen() == (project, "from-project")
    relative = Path("configs") / "small.yaml"  # relative to the cwd, as any path typed
    assert invoke(*argv, "--project", str(project), "--params", str(relative)).exit_code == 0
    assert seen() == (project, "from-file")
    missing = invoke(*argv, "--params", "nowhere.yaml")
    assert missing.exit_code == 2 and "nowhere.yaml" in missing.stderr


def test_run_params_file_is_read_then_written_into_the_projects_params_yaml(
    project, elsewhere, recorded, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    done = invoke("run", "--project", str(project), "--params", str(elsewhere))
    assert done.exit_code == 0, done.output
    root, params = recorded["run"]["args"][:2]
    assert Path(root) == project and params.tracking.model_name == "from-file"
    written = yaml.safe_load((project / "params.yaml").read_text())
    assert written == yaml.safe_load(elsewhere.read_text())  # what DVC's stages will read
    assert invoke("run", "--project", str(project), "-S", "prune.ratio=0.5").exit_code == 0
    assert yaml.safe_load((project / "params.yaml").read_text())["prune"]["ratio"] == 0.5


def test_run_refuses_bad_overrides_naming_the_flag_before_writing(project, recorded):
    before = (project / "params.yaml").read_text()
    for argv, said in [
        (["-S", "prune.ratio=0.3", "-S", "prune.ratio=0.5"], "error: -S prune.ratio: given twice"),
        (["-S", "prune.ratio"], "error: -S 'prune.ratio': key=value"),
        (["-S", "prune.ratio=2"], "prune.ratio: less than 1"),
    ]:
        done = invoke("run", *argv)
        assert done.exit_code == 2 and done.stderr.startswith("error: "), done.stderr
        assert said in done.stderr
    assert "run" not in recorded and (project / "params.yaml").read_text() == before


def test_sweep_grid_repeats_keys_and_sends_every_flag_to_the_flow(project, recorded):
    done = invoke(
        "sweep", "-S", "prune.ratio=0.3", "-S", "prune.ratio=0.5", "-S", "seed=1", "-S", "seed=2"
    )
    assert done.exit_code == 0, done.output
    specs = recorded["sweep"]["args"][1]
    assert specs == ["prune.ratio=0.3", "prune.ratio=0.5", "seed=1", "seed=2"]


def test_a_malformed_or_invalid_grid_exits_2_naming_the_flag(project, recorded):
    broken = invoke("sweep", "-S", "prune.ratio")
    assert broken.exit_code == 2 and broken.stderr.startswith("error: -S 'prune.ratio'")
    invalid = invoke("sweep", "-S", "prune.ratio=0.3", "-S", "prune.ratio=1.5")
    assert invalid.exit_code == 2
    assert invalid.stderr.startswith("error: candidate -S prune.ratio=1.5: ")
    assert "prune.ratio: less than 1" in invalid.stderr
    old = invoke("sweep", "-S", "prune.ratio=0.3,0.5")  # the former grid syntax: a hint
    assert old.exit_code == 2 and "-S prune.ratio=0.3 -S prune.ratio=0.5" in old.stderr
    assert "sweep" not in recorded


def test_models_json_is_one_document_on_stdout(project, monkeypatch):
    from slimline.records import aliases
    from slimline.records.aliases import VersionInfo

    created = datetime(2026, 11, 26, 13, 31, tzinfo=UTC)
    versions = [VersionInfo("2", ["champion"], 0.99, 26815, 0.0196, "d6ed0e8ab", created, "passed")]

    def listed(root, params):
        print("a library's chatter")  # must not reach stdout with --json
        return versions

    monkeypatch.setattr(aliases, "list_versions", listed)
    done = invoke("models", "--json")
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    assert doc["model"] == "from-project" and doc["tracking_uri"].endswith("mlflow.db")
    assert doc["versions"] == [
        {
            "version": "2",
            "aliases": ["champion"],
            "accuracy": 0.99,
            "size_bytes": 26815,
            "latency_ms": 0.0196,
            "commit": "d6ed0e8ab",
            "created": "2026-11-26T13:31:00+00:00",
            "gates": "passed",
        }
    ]
    assert "a library's chatter" in done.stderr
    assert "champion" in invoke("models").stdout  # the table stays the default


def test_predict_json_lists_every_row_and_the_accuracy(monkeypatch, tmp_path):
    from slimline.compression.release import predict

    result = predict.Predictions(
        classes=np.array([1, 0, 1]),
        names=["top", "bottom", "top"],
        confidence=np.array([0.9, 0.8, 0.7]),
        labels=np.array([1, 0, 0]),
    )
    monkeypatch.setattr(predict, "predict", lambda model, file: result)
    done = invoke("predict", "m.onnx", "x.npz", "--json")
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    assert doc["count"] == 3 and doc["labelled"] == 3 and doc["accuracy"] == pytest.approx(2 / 3)
    assert doc["predictions"][0] == {"index": 0, "class": 1, "label": "top", "confidence": 0.9}
    assert len(json.loads(invoke("predict", "m", "x", "--json", "--limit", "1").stdout)[
        "predictions"]) == 1  # fmt: skip
    human = invoke("predict", "m.onnx", "x.npz", "--limit", "2")
    assert human.stdout.splitlines() == [
        "0\ttop\t0.9000",
        "1\tbottom\t0.8000",
        "... 1 more",
        "accuracy 0.6667 on 3 labelled samples",
    ]


def test_predict_json_on_bad_input_exits_2_with_nothing_on_stdout(tmp_path):
    missing = invoke("predict", str(tmp_path / "none.onnx"), str(tmp_path / "x.npz"), "--json")
    assert missing.exit_code == 2 and missing.stdout == ""
    assert missing.stderr.startswith("error: ") and "none.onnx" in missing.stderr
