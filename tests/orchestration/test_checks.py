"""`slimline check`: the params as `run` takes them, the preflight, the model sizes, and the
stages DVC would rerun, on a three-stage DVC project whose commands only copy files (no
training), without writing anything to the project."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from slimline.cli import app
from slimline.core.errors import InputError
from slimline.orchestration import checks
from tests.support.params import write_params
from tests.support.processes import check, run

# `first` reads seed; `second` prune.ratio and a path from params; `third` the quantize section
PIPELINE = {
    "stages": {
        "first": {"cmd": "echo a > a.txt", "params": ["seed"], "outs": ["a.txt"]},
        "second": {
            "cmd": "cp a.txt ${paths.dist}.txt",
            "deps": ["a.txt"],
            "params": ["prune.ratio"],
            "outs": ["${paths.dist}.txt"],
        },
        "third": {
            "cmd": "cp ${paths.dist}.txt c.txt",
            "deps": ["${paths.dist}.txt"],
            "params": ["quantize"],
            "outs": ["c.txt"],
        },
    }
}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The project after one `dvc repro`: dvc.lock holds every stage."""
    root = tmp_path_factory.mktemp("check") / "project"
    root.mkdir()
    write_params(root / "params.yaml")
    (root / "dvc.yaml").write_text(yaml.safe_dump(PIPELINE, sort_keys=False))
    for args in (("init", "--no-scm", "-q"), ("repro", "-q")):
        check(run([sys.executable, "-m", "dvc", *args], root))
    return root


@pytest.fixture
def project(built, tmp_path, monkeypatch) -> Path:
    """A private copy, with DVC's per-repo state in the test's folder (not /var/tmp)."""
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / "dvc-site"))
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    return Path(shutil.copytree(built, tmp_path / "project", symlinks=True))


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file but DVC's own state (.dvc/tmp), with its content and modification time."""
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".dvc/tmp" not in str(p.relative_to(root))
    }


def by_name(doc: dict) -> dict[str, dict]:
    return {s["name"]: s for s in doc["stages"]}


def test_an_unchanged_project_reruns_nothing(project):
    doc = checks.report(project, project / "params.yaml", [])
    assert [s["name"] for s in doc["stages"]] == ["first", "second", "third"]
    assert {s["status"] for s in doc["stages"]} == {"unchanged"}
    assert doc["rerun"] == [] and doc["may_rerun"] == []


def test_an_override_reruns_its_stage_and_marks_what_follows(project):
    before = snapshot(project)
    doc = checks.report(project, project / "params.yaml", ["prune.ratio=0.55"])
    stages = by_name(doc)
    assert stages["first"]["status"] == "unchanged"
    assert stages["second"]["status"] == "changed"
    assert stages["second"]["reasons"] == ["param prune.ratio modified (params.yaml)"]
    assert stages["third"]["status"] == "downstream" and stages["third"]["after"] == ["second"]
    assert doc["rerun"] == ["second"] and doc["may_rerun"] == ["third"]
    assert snapshot(project) == before  # params.yaml untouched: `run` would write it, not check


def test_a_params_file_elsewhere_is_compared_as_run_would_write_it(project, tmp_path):
    other = write_params(tmp_path / "other.yaml", seed=7)
    doc = checks.report(project, other, [])
    assert doc["params_file"] == str(other.resolve())
    assert doc["rerun"] == ["first"] and doc["may_rerun"] == ["second", "third"]
    # the same change made in the project's own params.yaml: DVC's status says the same
    write_params(project / "params.yaml", seed=7)
    assert checks.report(project, project / "params.yaml", [])["rerun"] == ["first"]


def test_a_path_dvc_yaml_reads_from_params_reruns_the_stages_using_it(project):
    doc = checks.report(project, project / "params.yaml", ["paths.dist=elsewhere"])
    stages = by_name(doc)
    assert stages["second"]["reasons"] == ["path ${paths.dist} dist -> elsewhere"]
    assert stages["third"]["status"] == "changed"


def test_sizes_are_the_preflights_counts(project):
    def sizes_with(*sets: str) -> dict:
        params = checks.validated(project / "params.yaml", list(sets), project)
        return checks.model_sizes(params, project)

    sizes = sizes_with()
    assert sizes["input_shape"] == [1, 8, 8] and sizes["classes"] == 10  # digits
    assert sizes["teacher"] | {"params": 0} == {
        "source": "train", "arch": "resnet", "width": 40, "depth": 2, "params": 0
    }  # fmt: skip
    assert 0 < sizes["student"]["params"] < sizes["teacher"]["params"]
    small = sizes_with("student.width=8")
    assert small["student"]["params"] < sizes["student"]["params"]


def test_check_json_is_one_document_listing_the_stages(project, monkeypatch):
    monkeypatch.chdir(project)
    result = CliRunner().invoke(app, ["check", "-S", "prune.ratio=0.55", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # stdout is the document and nothing else
    assert doc["valid"] and doc["overrides"] == ["prune.ratio=0.55"]
    assert [(s["name"], s["status"]) for s in doc["stages"]] == [
        ("first", "unchanged"),
        ("second", "changed"),
        ("third", "downstream"),
    ]
    human = CliRunner().invoke(app, ["check", "--project", str(project), "-S", "seed=3"])
    assert human.exit_code == 0, human.output
    assert "would rerun: first; may follow: second, third" in human.stdout


def test_check_on_bad_params_exits_2_naming_the_field_and_writes_nothing(project):
    before = snapshot(project)
    runner = CliRunner()
    bad = runner.invoke(app, ["check", "--project", str(project), "-S", "prune.ratio=1.5"])
    assert bad.exit_code == 2 and bad.stdout == ""
    assert bad.stderr.startswith("error: ") and "prune.ratio" in bad.stderr
    big = runner.invoke(app, ["check", "--project", str(project), "-S", "student.width=512"])
    assert big.exit_code == 2 and big.stderr.startswith("error: student: ")  # the preflight's
    twice = runner.invoke(
        app, ["check", "--project", str(project), "-S", "seed=1", "-S", "seed=2", "--json"]
    )
    assert twice.exit_code == 2 and twice.stdout == "" and "-S seed: given twice" in twice.stderr
    assert snapshot(project) == before


def test_a_folder_dvc_cannot_read_is_a_configuration_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / "dvc-site"))
    write_params(tmp_path / "params.yaml")
    with pytest.raises(InputError, match="dvc status"):
        checks.report(tmp_path, tmp_path / "params.yaml", [])
