"""Latency, throughput and size of ONNX variants, measured fairly, and how to show them.

`measure_many` times every variant in the same loop, round-robin with a rotating start, so
a noisy neighbour or a frequency change hits all variants alike instead of whichever ran
during it. Timings are wall-clock `perf_counter_ns` around `session.run` at batch 1 (what a
request pays) and total images/s at a larger batch (what a worker sustains).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slimline.compression.models.onnx_teacher import TeacherFeed
from slimline.compression.runtime.onnx_io import feeds as model_feeds
from slimline.compression.runtime.onnx_io import session
from slimline.core.atomic import atomic_path
from slimline.core.units import KB_LABEL, kilobytes

MARKERS = "osD^vP*X"  # with the colour cycle, each variant's point tells apart in the legend


def measure_many(
    paths: Mapping[str, str | Path],
    x_one: np.ndarray,
    x_batch: np.ndarray,
    *,
    threads: int,
    warmup: int,
    runs: int,
    throughput_runs: int,
    feeds: Mapping[str, TeacherFeed] | None = None,
    own_x: Mapping[str, np.ndarray] | None = None,
    token_lengths: Sequence[int] = (),
) -> dict[str, dict[str, float]]:
    """latency_ms_b1_p50 / _p95 (batch 1) and throughput_b64 (images/s at x_batch) of each
    variant, interleaved call by call. A variant in `feeds` (an imported ONNX teacher) is
    called as it asks: raw values, its own shape and names, a fixed batch padded; one in
    `own_x` reads those samples instead (a text teacher's own token ids). For token ids, also
    `latency_ms_b1_p50_<n>tok`: batch 1 cut to each of `token_lengths` shorter than x (at
    x's own length that is latency_ms_b1_p50); a model that takes no such length has none."""
    calls = {}
    for name, path in paths.items():
        sess = session(path, threads)
        x = (own_x or {}).get(name)
        one, batch = (x_one[:1], x_batch) if x is None else (x[:1], x[: len(x_batch)])
        one, batch = np.asarray(one), np.asarray(batch)  # (1, ...), (B, ...)
        feed = (feeds or {}).get(name)
        out = [feed.interface.output_name if feed else sess.get_outputs()[0].name]
        calls_of = _caller(sess, feed)
        inputs = {"one": calls_of(one), "batch": calls_of(batch)}
        if one.dtype.kind in "iu":
            for n in (n for n in token_lengths if n < one.shape[1]):
                cut = calls_of(np.ascontiguousarray(one[:, :n]))
                if _runs(sess, out, cut):
                    inputs[f"{n}tok"] = cut
        calls[name] = (sess, out, inputs)
    names = list(calls)

    def timed(name: str, which: str) -> int:
        sess, out, inputs = calls[name]
        start = time.perf_counter_ns()
        for x in inputs[which]:
            sess.run(out, x)
        return time.perf_counter_ns() - start

    for _ in range(warmup):  # thread pools, allocator arenas, caches
        for name in names:
            timed(name, "one")
            timed(name, "batch")
    latency: dict[str, dict[str, list[int]]] = {
        name: {k: [] for k in calls[name][2] if k != "batch"} for name in names
    }
    busy = dict.fromkeys(names, 0)
    for i in range(max(runs, throughput_runs)):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            if i < runs:
                for which, times in latency[name].items():
                    times.append(timed(name, which))
            if i < throughput_runs:
                busy[name] += timed(name, "batch")
    batch_rows = len(x_batch)
    return {
        name: {
            "latency_ms_b1_p50": float(np.percentile(latency[name]["one"], 50)) / 1e6,
            "latency_ms_b1_p95": float(np.percentile(latency[name]["one"], 95)) / 1e6,
            "throughput_b64": batch_rows * throughput_runs / (busy[name] / 1e9),
        }
        | {
            f"latency_ms_b1_p50_{which}": float(np.percentile(times, 50)) / 1e6
            for which, times in latency[name].items()
            if which != "one"
        }
        for name in names
    }


def _caller(sess: Any, feed: TeacherFeed | None) -> Any:
    """rows -> the session calls that run them, made before the clock starts: floats, or ids
    and mask; an imported teacher's as its feed asks (a fixed batch: several calls)."""
    if feed is None:
        make = model_feeds(sess)
        return lambda rows: [make(rows)]
    return lambda rows: [inputs for inputs, _ in feed.batches(rows)]


def _runs(sess: Any, out: list[str], calls: list[dict[str, np.ndarray]]) -> bool:
    """Whether the session takes these inputs (a sequence length its graph allows)."""
    try:
        for inputs in calls:
            sess.run(out, inputs)
    except Exception:  # onnxruntime's errors have no common type: this length cannot run
        return False
    return True


def tradeoff_plot(variants: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """Size against batch-1 p50 latency (log-log), each point named with its accuracy in a
    legend: the small variants (FP32, INT8, INT4 of one pruned net) sit too close for labels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    # both axes log: sizes span 2 kB..4 MB and latencies 0.01..0.5 ms
    for i, v in enumerate(sorted(variants, key=lambda v: v["size_bytes"])):
        acc = v.get("accuracy")
        label = display_name(v) if acc is None else f"{display_name(v)}, acc {acc:.3f}"
        ax.scatter(kilobytes(v["size_bytes"]), v["latency_ms_b1_p50"], s=45,
                   marker=MARKERS[i % len(MARKERS)], label=label)  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(
        xlabel=f"model size ({KB_LABEL}, log scale)",
        ylabel="latency, batch 1, p50 (ms, log scale)",
        title="size vs latency (legend: test accuracy)",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.margins(x=0.2, y=0.2)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None}, bbox_inches="tight")


def display_name(variant: Mapping[str, Any]) -> str:
    """The variant's name, and its weight bits where the name does not say them: with
    quantize.bits 4 the deployed model keeps its contract name `final_int8`."""
    bits = variant.get("bits")
    return variant["name"] if bits is None else f"{variant['name']} ({bits}-bit weights)"


def compare(variants: Sequence[Mapping[str, Any]], name: str, reference: str) -> dict[str, Any]:
    """`name` against `reference`: size ratio (reference / it: > 1 is smaller), accuracy
    delta, batch-1 speed-up and throughput ratio (> 1 is faster)."""
    by_name = {v["name"]: v for v in variants}
    v, ref = by_name[name], by_name[reference]
    return {
        "variant": name,
        "reference": reference,
        "size_ratio": ref["size_bytes"] / v["size_bytes"],
        "accuracy_delta": v["accuracy"] - ref["accuracy"],
        "speedup_b1": ref["latency_ms_b1_p50"] / v["latency_ms_b1_p50"],
        "throughput_ratio": v["throughput_b64"] / ref["throughput_b64"],
    }


def markdown_table(variants: Sequence[Mapping[str, Any]], reference: str = "teacher_fp32") -> str:
    """A table of every variant with ratios to the reference.

    compression = reference size / size, speed-up = reference p50 / p50, throughput ratio =
    throughput / reference throughput, delta accuracy = accuracy - reference accuracy.
    """
    ref = next((v for v in variants if v["name"] == reference), None)
    if ref is None:
        names = [v["name"] for v in variants]
        raise ValueError(f"reference variant {reference!r} not among {names}")
    head = (
        f"| variant | accuracy | Δ accuracy | size ({KB_LABEL}) | compression | p50 (ms) "
        "| p95 (ms) | speed-up | images/s | throughput ratio |"
    )
    rows = [head, "|" + " --- |" * 10]
    for v in variants:
        acc, ref_acc = v.get("accuracy"), ref.get("accuracy")
        delta = f"{acc - ref_acc:+.4f}" if acc is not None and ref_acc is not None else "n/a"
        cells = [
            display_name(v),
            f"{acc:.4f}" if acc is not None else "n/a",
            delta,
            f"{kilobytes(v['size_bytes']):.1f}",
            f"{ref['size_bytes'] / v['size_bytes']:.2f}x",
            f"{v['latency_ms_b1_p50']:.4f}",
            f"{v['latency_ms_b1_p95']:.4f}",
            f"{ref['latency_ms_b1_p50'] / v['latency_ms_b1_p50']:.2f}x",
            f"{v['throughput_b64']:,.0f}",
            f"{v['throughput_b64'] / ref['throughput_b64']:.2f}x",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"
