"""What a finished run says to people: the terminal summary and the Prefect markdown artifact.

Both read what the stages wrote (reports/benchmark.json and .md, the gates) and the registry's
verdict; nothing here computes a figure of its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slimline.core.params.schema import Params
from slimline.core.units import format_kb


def variants(root: Path, params: Params) -> list[dict[str, Any]]:
    """The benchmark's variants (name, accuracy, size_bytes, latency_ms_b1_p50, ...), or []."""
    try:
        report = json.loads((root / params.paths.benchmark_report).read_text())
        return [v for v in report.get("variants", []) if isinstance(v, dict) and "name" in v]
    except (OSError, ValueError):
        return []


def stage_line(stages: list[dict]) -> str:
    ran = [s["name"] for s in stages if s["status"] == "ran"]
    cached = [s["name"] for s in stages if s["status"] == "cached"]
    failed = [s["name"] for s in stages if s["status"] == "failed"]
    cancelled = [s["name"] for s in stages if s["status"] == "cancelled"]
    parts = [f"ran: {', '.join(ran) or 'none'}", f"cached: {', '.join(cached) or 'none'}"]
    if failed:
        parts.append(f"failed: {', '.join(failed)}")
    if cancelled:
        parts.append(f"cancelled: {', '.join(cancelled)}")
    return "; ".join(parts)


def markdown(root: Path, params: Params, stages: list[dict], verdict: dict, run: dict) -> str:
    """The Prefect artifact: verdict, gates (value with its 95% interval, threshold, what it
    was decided on, verdict; the ones the test split is too small to decide), benchmark."""
    from slimline.compression.release.gates import shown, spec
    from slimline.records.registry import read_gates

    lines = [
        "# slimline pipeline",
        "",
        f"**Registry verdict:** {verdict.get('summary', 'none')}",
        "",
        f"MLflow run `{run.get('run_name', '?')}` ({run.get('run_id', '?')}) at "
        f"`{run.get('tracking_uri', '?')}`; stages {stage_line(stages)}.",
        "",
        "## Gates",
        "",
        "| gate | value | threshold | decided on | passed |",
        "| --- | --- | --- | --- | --- |",
    ]
    gates = read_gates(root, params)
    for g in gates:
        if g.interval is not None and g.value is not None and g.threshold is not None:
            form = spec(g.value, g.threshold, *g.interval)  # one format for the row
            value, threshold = shown(g.value, g.interval, g.samples), f"{g.threshold:{form}}"
        else:
            value, threshold = _num(g.value), _num(g.threshold)
        lines.append(f"| {g.name} | {value} | {threshold} | {g.decided_on or 'value'} | "
                     f"{_yes(g.passed)} |")  # fmt: skip
    lines += [f"\n**Test split too small:** {g.name}: {g.undecidable}" for g in gates
              if g.undecidable]  # fmt: skip
    lines += ["", "## Benchmark", ""]
    table = root / params.paths.benchmark_table
    if table.exists():  # its own "# Benchmark (...)" title becomes the section's first line
        title, _, body = table.read_text().partition("\n")
        lines += [f"_{title.removeprefix('# Benchmark').strip(' ()')}_", body]
    else:
        lines.append("_no benchmark table was written_")
    return "\n".join(lines)


def print_summary(root: Path, params: Params, outcome: dict) -> None:
    """The end of `slimline run`: variant, accuracy, size, latency, then the verdict."""
    from rich.console import Console
    from rich.table import Table

    from slimline.core.tables import key_column

    table = Table(title="slimline: what this run produced")
    rows = variants(root, params)
    key_column(table, "variant", (v["name"] for v in rows))
    for column in ("accuracy", "size", "latency b1 p50"):
        table.add_column(column, justify="right")
    for v in rows:
        table.add_row(
            v["name"],
            _num(v.get("accuracy")),
            format_kb(v["size_bytes"]) if "size_bytes" in v else "-",
            f"{v['latency_ms_b1_p50']:.4f} ms" if "latency_ms_b1_p50" in v else "-",
        )
    console = Console()
    console.print(table)
    console.print(f"stages: {stage_line(outcome['stages'])}")
    run = outcome.get("run", {})
    console.print(f"MLflow run: {run.get('run_name')} ({run.get('run_id')})")
    console.print(f"registry: {outcome['verdict']['summary']}", markup=False)
    for note in undecidable(root, params):
        console.print(f"test split too small: {note}", markup=False)
    paths = params.paths
    console.print(
        f"look: {paths.dist}/model_card.md, {paths.gates_report}, {paths.benchmark_table}, "
        "slimline ui",
        markup=False,
    )


def undecidable(root: Path, params: Params) -> list[str]:
    """`gate: why the test split is too small to decide it, and the size that would`."""
    from slimline.records.registry import read_gates

    return [f"{g.name}: {g.undecidable}" for g in read_gates(root, params) if g.undecidable]


def _num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, int | float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _yes(passed: bool) -> str:
    return "yes" if passed else "**no**"
