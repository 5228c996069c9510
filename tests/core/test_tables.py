"""At 80 columns (a CI log, a small terminal) every table still prints each name, alias and
override whole: the figures around them give way instead."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from slimline.cli import app
from slimline.core.params.loading import load_params
from slimline.core.tables import key_column
from slimline.orchestration.commands import print_sweep
from slimline.records import aliases
from slimline.records.aliases import VersionInfo
from slimline.records.summary import print_summary, variants
from tests.support.paths import ROOT

NAMES = ["sweep-20261126T133131Z-cand-00", "sweep-20261126T133131Z-cand-01"]
OVERRIDES = [
    ["prune.ratio=0.3", "quantize.calibration_method=percentile", "student.width=16"],
    ["prune.ratio=0.6", "quantize.mode=dynamic", "distill.temperature=2.0"],
]


@pytest.fixture(autouse=True)
def eighty_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")


def flat(text: str) -> str:
    """The table's text with its borders and line breaks gone: what a reader's eye joins."""
    return re.sub(r"[│┃|\s]+", " ", text)


def lines_hold_whole(text: str, words: list[str]) -> None:
    for word in words:
        assert any(word in line for line in text.splitlines()), f"{word!r} cut:\n{text}"


def test_sweep_candidates_and_overrides_print_whole(capsys):
    figures = {"accuracy": 0.98611, "latency_ms": 0.0196, "size_bytes": 26815}
    outcome = {
        "sweep": "sweep-20261126T133131Z",
        "candidates": [
            {
                "name": n,
                "overrides": o,
                "figures": figures,
                "gates_passed": True,
                "ok": True,
                "pareto": i == 0,
            }
            for i, (n, o) in enumerate(zip(NAMES, OVERRIDES, strict=True))
        ],  # fmt: skip
        "best": NAMES[0],
        "verdict": {"summary": "version 7 is champion"},
    }
    print_sweep(outcome)
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= 80
    lines_hold_whole(out, NAMES + [o for over in OVERRIDES for o in over])
    assert "…" not in out


def test_run_summary_names_every_variant_whole(capsys):
    params = load_params(ROOT / "params.yaml")
    outcome = {"stages": {}, "run": {"run_name": "r", "run_id": "1"}, "verdict": {"summary": "-"}}
    print_summary(ROOT, params, outcome)
    out = capsys.readouterr().out
    names = [v["name"] for v in variants(ROOT, params)]
    assert "pruned_int8_dynamic" in names
    lines_hold_whole(out, names)
    assert "…" not in out.split("stages:")[0]


def test_models_prints_every_alias_whole(monkeypatch):
    created = datetime(2026, 11, 26, 13, 31, tzinfo=UTC)
    versions = [
        VersionInfo("12", ["challenger", "champion"], 0.98611, 26815, 0.0196, "d6ed0e8ab",
                    created, "passed"),
        VersionInfo("11", ["previous-champion"], 0.97, 26048, 0.02, "9f2f0ba11", created,
                    "passed"),
    ]  # fmt: skip
    monkeypatch.setattr(aliases, "list_versions", lambda root, params: versions)
    listed = CliRunner().invoke(app, ["models", "--params", str(ROOT / "params.yaml")],
                                terminal_width=80)  # fmt: skip
    assert listed.exit_code == 0, listed.output
    lines_hold_whole(listed.stdout, ["challenger,", "champion", "previous-champion"])
    assert "…" not in listed.stdout


def test_a_key_column_wider_than_the_terminal_folds_instead_of_cutting():
    console = Console(width=50, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    table = Table()
    name = "x" * 120
    key_column(table, "name", [name])
    table.add_row(name)
    console.print(table)
    text = console.export_text()
    assert "…" not in text and flat(text).count("x") == 120
