"""docs/params.md is the schema's own reference: generated from every field's description,
and this test fails when the file is stale or a field has none."""

from __future__ import annotations

import subprocess
import sys

from slimline.core.params import reference
from slimline.core.params.schema import Params
from tests.support.imports import STAGES, stage_code
from tests.support.paths import ROOT

DOC = ROOT / "docs" / "params.md"


def test_docs_params_md_is_what_the_schema_generates():
    assert DOC.read_text() == reference.render(), (
        f"docs/params.md is stale: run `{reference.COMMAND}` and commit it"
    )


def test_every_field_of_every_section_has_a_description():
    assert reference.undocumented() == []
    page = reference.render()
    sections = {prefix.rstrip(".") for prefix, _ in reference.models()} - {""}
    for prefix, model in reference.models():
        for name in model.model_fields:
            row, heading = f"| `{prefix}{name}` |", f"\n## `{name}`\n"
            assert (heading if name in sections else row) in page


def test_a_field_without_a_description_is_named(monkeypatch):
    monkeypatch.setattr(Params.model_fields["seed"], "description", None)
    monkeypatch.setattr(Params.model_fields["prune"].annotation.model_fields["lr"],
                        "description", " ")  # fmt: skip
    assert reference.undocumented() == ["seed", "prune.lr"]


def test_types_defaults_and_bounds_read_as_params_yaml_writes_them():
    rows = {line.split(" | ")[0][2:]: line for line in reference.render().splitlines()
            if line.startswith("| `")}  # fmt: skip
    assert "| float in (0, 1) | `0.15` |" in rows["`data.val_fraction`"]
    assert (
        "| int in [2, 1024] or null | `null` (mlp 512, cnn 128, resnet 40, transformer 128, "
        "textcnn 128, boe 128) |" in rows["`teacher.width`"]
    )
    families = "`mlp`, `cnn`, `resnet`, `transformer`, `textcnn`, `boe`"
    assert f"| {families} | required |" in rows["`student.arch`"]
    assert "| bool, strict: `true` or `false` only | `true` |" in rows["`reproducible`"]
    assert "| `8`, `4` | `8` |" in rows["`quantize.bits`"]
    assert "`root/<class>/*.png\\|jpg\\|jpeg`" in rows["`data.source`"]  # a pipe kept in its cell


def test_the_command_prints_the_page_and_no_stage_imports_the_generator():
    printed = subprocess.run(
        [sys.executable, "-m", "slimline.core.params.reference"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout  # fmt: skip
    assert printed == reference.render() == reference.render()  # deterministic
    generator = "src/slimline/core/params/reference.py"
    assert all(generator not in stage_code(stage) for stage in STAGES)
    assert generator not in (ROOT / "dvc.yaml").read_text()
