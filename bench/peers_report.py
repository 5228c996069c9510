"""The tables, the Pareto verdicts and the figure of bench/peers.py (no measuring here)."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
from importlib import metadata
from pathlib import Path

from slimline.compression.release.latency import markdown_table
from slimline.core.atomic import atomic_path
from slimline.core.units import KB_LABEL, format_kb, kilobytes

THREADS = (1, 2)
ACCURACY_SLACK = 0.005  # "no less accurate beyond 0.5 point"
EPS = 1e-9  # accuracies are k/n fractions


def dominance(final: dict, peer: dict) -> list[str]:
    """Why `final` does not Pareto-dominate `peer` (empty: it does)."""
    why = []
    if final["size_bytes"] > peer["size_bytes"]:
        why.append("larger file")
    if final["accuracy"] < peer["accuracy"] - ACCURACY_SLACK - EPS:
        why.append(f"{100 * (peer['accuracy'] - final['accuracy']):.2f} points less accurate")
    for t in THREADS:
        mine, theirs = final["timing"][t], peer["timing"][t]
        if mine["latency_ms_b1_p50"] > theirs["latency_ms_b1_p50"]:
            why.append(f"slower at batch 1 ({t} thread(s))")
        if mine["throughput_b64"] < theirs["throughput_b64"]:
            why.append(f"lower batch-64 throughput ({t} thread(s))")
    return why


def machine() -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    names = [ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")]
    model = names[0] if names else platform.processor() or "unknown CPU"
    flags = set(next((ln for ln in info.splitlines() if ln.startswith("flags")), "").split())
    simd = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni") if f in flags]
    return f"{os.cpu_count()} cores {model} ({', '.join(simd) or 'no AVX2'}), CPU only"


def report(found: dict, b: argparse.Namespace, test_samples: int) -> str:
    variants = found["variants"]

    def rows(t: int) -> list[dict]:
        return [{"name": n, **v, **v["timing"][t]} for n, v in variants.items()]

    versions = ", ".join(f"{pkg} {metadata.version(pkg)}" for pkg in ("onnxruntime", "torch"))
    lines = [
        "# slimline against the quantizers a user would pick instead",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {machine()}; {versions}.",
        "The machine is shared with other engineers' test runs, so absolute timings are noisy;",
        "every variant is timed in one process, round-robin call by call "
        "(`release.latency.measure_many`), so the noise hits all of them alike. "
        "Absolute latencies depend on the round (the multi-ms peers make every round long, "
        "and sub-ms ONNX models then read 2-4x slower than in `reports/benchmark.md`): "
        "compare ratios within a table, not across files.",
        f"Test split: {test_samples} samples. Calibration: {found['calibration_samples']} "
        "stratified train samples (the quantize stage's). Protocol per thread count: "
        f"{b.warmup} warm-up rounds, {b.runs} batch-1 calls (p50/p95), {b.throughput_runs} "
        f"calls at batch {b.throughput_batch} (images/s). Olive: {found['olive']}.",
        "",
        "## Variants",
        "",
        f"| variant | kind | what | size ({KB_LABEL}) "
        "| INT8 conv/gemm kernels (after ORT fusion) |",
        "| --- | --- | --- | --- | --- |",
        *[
            f"| {n} | {v['kind']} | {v['what']} | {kilobytes(v['size_bytes']):.1f} | "
            f"{v['int8_kernels']} |"
            for n, v in variants.items()
        ],
    ]
    for t in THREADS:
        lines += ["", f"## {t} thread(s): ratios to teacher_fp32 (ORT)", ""]
        lines.append(markdown_table(rows(t)))
    final = variants["final_int8"]
    lines += [
        "## Does slimline's final model (final_int8) Pareto-dominate each peer?",
        "",
        f"Dominates = no larger file, no slower (batch-1 p50 and batch-{b.throughput_batch} "
        f"images/s, at {' and '.join(map(str, THREADS))} threads) and no less accurate beyond "
        f"{100 * ACCURACY_SLACK:.1f} point.",
        "",
        "Margins are final_int8 against the peer: accuracy difference in points, how many times "
        "smaller, and speed-up of batch-1 p50 and of batch images/s at 1 / 2 threads.",
        "",
        "| peer | accuracy drop vs teacher | final − peer accuracy | final smaller by | final p50 "
        "speed-up (1 / 2 thr) | final images/s ratio (1 / 2 thr) | dominated | why not |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, v in variants.items():
        if v["kind"] != "peer":
            continue
        why, t = dominance(final, v), final["timing"]
        p50 = " / ".join(
            f"{v['timing'][n]['latency_ms_b1_p50'] / t[n]['latency_ms_b1_p50']:.1f}x"
            for n in THREADS
        )
        ips = " / ".join(
            f"{t[n]['throughput_b64'] / v['timing'][n]['throughput_b64']:.1f}x" for n in THREADS
        )
        lines.append(
            f"| {name} | {100 * v['accuracy_drop']:+.2f} pt "
            f"| {100 * (final['accuracy'] - v['accuracy']):+.2f} pt "
            f"| {v['size_bytes'] / final['size_bytes']:.1f}x | {p50} | {ips} "
            f"| {'no' if why else 'yes'} | {'; '.join(why) or '-'} |"
        )
    lines += ["", "Rerun: `.venv/bin/python bench/peers.py` from the repo root.", ""]
    return "\n".join(lines)


def plot(variants: dict, path: Path) -> None:
    """Accuracy against batch-1 p50 latency per thread count; marker area grows with file size.

    Most peers share the teacher's accuracy, so points are told apart by colour and shape in
    one legend rather than by labels that would overlap.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(12, 5.8), dpi=100)
    FigureCanvasAgg(fig)
    biggest = max(v["size_bytes"] for v in variants.values())
    shapes = {"slimline": "o", "peer": "s", "reference": "D"}
    colors = dict(zip(variants, [f"C{i}" for i in range(len(variants))], strict=True))
    for i, t in enumerate(THREADS):
        ax = fig.add_subplot(1, len(THREADS), i + 1)
        for name, v in variants.items():
            area = 30 + 900 * (v["size_bytes"] / biggest) ** 0.5  # sizes span 26 kB..4.4 MB
            ms, acc = v["timing"][t]["latency_ms_b1_p50"], 100 * v["accuracy"]
            ax.scatter(ms, acc, s=area, c=colors[name], marker=shapes[v["kind"]], alpha=0.55)
        ax.set_xscale("log")
        ax.set(
            xlabel=f"latency, batch 1, p50, {t} thread(s) (ms, log scale)",
            ylabel="test accuracy (%)",
            title=f"{t} thread(s): up and left is better",
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.margins(x=0.15, y=0.25)
    handles = [
        Line2D([], [], ls="", marker=shapes[v["kind"]], color=colors[name], alpha=0.7, ms=8,
               label=f"{name} ({v['kind']}, {format_kb(v['size_bytes'], ',.0f')})")
        for name, v in variants.items()
    ]  # fmt: skip
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8,
               title="marker area grows with file size (sqrt)", title_fontsize=8)  # fmt: skip
    fig.tight_layout(rect=(0, 0.2, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
