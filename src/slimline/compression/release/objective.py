"""Which model dist/ ships: the variant that passes every gate and serves `export.objective`.

The candidates are the quantized model and the pruned FP32 model it was made from, each judged
as it would ship (with the bundle's metadata) on every gate a model file can be judged on by
itself (`gates.model_gates`: all but the benchmark's speed-up). Among those that pass, the best
for the objective wins:

- size: fewest bytes; latency: lowest batch-1 p50; accuracy: highest test accuracy.
- A tie goes to the other figures in the order accuracy, size, latency (the objective skipped):
  accuracy and size are exact, the timed latency is the one noisy figure, so it decides last.
  Latencies within LATENCY_TIE of the fastest are a tie; an untimed latency ties with any.
- A tie on every figure keeps the quantized model (the first candidate), as does a run where
  no candidate passes: that model goes on and validate fails its gates with the usual report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from slimline.compression.data.dataset import Split
from slimline.compression.release.gates import Evidence, Gate, describe_failures, model_gates
from slimline.compression.release.latency import measure_many
from slimline.compression.runtime.onnx_io import add_metadata, run_logits, session
from slimline.compression.scores import predictions
from slimline.core.params.release import Benchmark, Gates
from slimline.core.params.schema import Params

Objective = Literal["size", "latency", "accuracy"]
TIE_ORDER: tuple[Objective, ...] = ("accuracy", "size", "latency")
# Repeated seeded p50s of one model moved < 1% on an idle 2-core EPYC, more beside a busy
# neighbour: a gap under 5% is noise, no reason to ship a 3.7x bigger file.
LATENCY_TIE = 0.05
FP32 = "pruned_fp32"


def quantized_name(bits: int) -> str:
    return f"pruned_int{bits}"


@dataclass(frozen=True)
class Variant:
    name: str
    accuracy: float  # test split
    drop: float  # teacher accuracy - accuracy, both on the test split
    size_bytes: int  # as shipped, metadata included
    gates: tuple[Gate, ...]
    latency_ms: float | None = None  # batch-1 p50; None: not timed

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "accuracy": self.accuracy,
            "accuracy_drop": self.drop,
            "size_bytes": self.size_bytes,
            "latency_ms_b1_p50": self.latency_ms,
            "passed": self.passed,
            "failed_gates": describe_failures(list(self.gates)),
        }


@dataclass(frozen=True)
class Choice:
    objective: Objective
    chosen: Variant
    candidates: tuple[Variant, ...]
    reason: str

    def as_dict(self) -> dict:
        """What metrics/export.json, dist/settings.json and reports/gates.json carry."""
        return {
            "variant": self.chosen.name,
            "objective": self.objective,
            "reason": self.reason,
            "candidates": [c.as_dict() for c in self.candidates],
        }


def choose(
    sources: Mapping[str, Path],
    folder: Path,
    metadata: dict[str, str],
    test: Split,
    params: Params,
    *,
    teacher_out: np.ndarray,  # the teacher's test logits (or top-1 labels)
    teacher_size_bytes: int,
) -> tuple[Choice, dict[str, Path]]:
    """Each source model (the quantized one first, then FP32) copied into `folder` with the
    bundle's metadata, judged on the test split (beside the teacher's outputs on
    the same rows), timed when the objective is latency; the choice and the shipped copies.
    Metadata changes no output (export checks it on the one it ships), so each is judged on
    its source's logits."""
    shipped = {name: folder / f"{name}.onnx" for name in sources}
    logits = {name: run_logits(session(src), test.x) for name, src in sources.items()}
    candidates = []
    for name, src in sources.items():
        add_metadata(src, shipped[name], metadata)
        candidates.append(
            judge(name, logits[name], y=test.y, fp32_logits=logits[FP32],
                  teacher_out=teacher_out, size_bytes=shipped[name].stat().st_size,
                  teacher_size_bytes=teacher_size_bytes, gates=params.gates)
        )  # fmt: skip
    # timed only then: timings differ run to run, and so would dist/ and the metrics
    if params.export.objective == "latency":
        candidates = timed(candidates, shipped, test.x, params.benchmark)
    return select(candidates, params.export.objective), shipped


def judge(
    name: str,
    logits: np.ndarray,
    *,
    y: np.ndarray,
    fp32_logits: np.ndarray,
    teacher_out: np.ndarray,  # the teacher's test logits (or top-1 labels)
    size_bytes: int,
    teacher_size_bytes: int,
    gates: Gates,
) -> Variant:
    """A candidate from its test logits: its figures and every gate it can be judged on."""
    e = Evidence.of(predictions(logits), predictions(teacher_out), predictions(fp32_logits), y)
    judged = model_gates(gates, e, size_bytes=size_bytes, teacher_size_bytes=teacher_size_bytes)
    return Variant(name, e.accuracy, e.drop, size_bytes, tuple(judged))


def timed(
    candidates: Sequence[Variant], paths: Mapping[str, Path], x: np.ndarray, b: Benchmark
) -> list[Variant]:
    """The candidates with their batch-1 p50 latency, measured as the benchmark does (its
    threads, warm-ups and runs, interleaved) on the first test sample."""

    figures = measure_many({c.name: paths[c.name] for c in candidates}, x[:1],
                           x[: b.throughput_batch], threads=b.threads, warmup=b.warmup,
                           runs=b.runs, throughput_runs=b.throughput_runs)  # fmt: skip
    return [replace(c, latency_ms=figures[c.name]["latency_ms_b1_p50"]) for c in candidates]


# per figure: the value to maximize (None: not measured), its words, how it is printed
SCORE: dict[str, Callable[[Variant], float | None]] = {
    "accuracy": lambda c: c.accuracy,
    "size": lambda c: -c.size_bytes,
    "latency": lambda c: None if c.latency_ms is None else -c.latency_ms,
}
BEST = {"accuracy": "most accurate", "size": "smallest", "latency": "fastest at batch 1"}
SHOWN: dict[str, Callable[[Variant], str]] = {
    "accuracy": lambda c: f"{c.accuracy:.4f}",
    "size": lambda c: f"{c.size_bytes:,} bytes",
    "latency": lambda c: "not timed" if c.latency_ms is None else f"{c.latency_ms:.4f} ms",
}


def select(candidates: Sequence[Variant], objective: Objective) -> Choice:
    """The best passing candidate for `objective` (module docstring), with the reason."""
    failed = "; ".join(
        f"{c.name} fails {', '.join(describe_failures(list(c.gates)))}"
        for c in candidates
        if not c.passed
    )
    pool = [c for c in candidates if c.passed]
    if not pool:
        why = (f"no candidate passes every gate ({failed}): the quantized model goes on and "
               "validate reports its gates")  # fmt: skip
        return Choice(objective, candidates[0], tuple(candidates), f"{candidates[0].name}: {why}")
    said = []
    for key in (objective, *(k for k in TIE_ORDER if k != objective)):
        if len(pool) == 1:
            break
        kept = _best(pool, key)
        values = ", ".join(f"{c.name} {SHOWN[key](c)}" for c in pool)
        said.append(f"tie on {key} ({values})" if len(kept) == len(pool)
                    else f"{BEST[key]} ({values})")  # fmt: skip
        pool = kept
    if not said:
        said = ["the only candidate that passes every gate"]
    elif len(pool) > 1:
        said.append("a tie on every figure keeps the first candidate, the quantized model")
    chosen = pool[0]
    reason = f"{chosen.name}: {'; '.join(said)}" + (f"; {failed}" if failed else "")
    return Choice(objective, chosen, tuple(candidates), reason)


def _best(pool: list[Variant], key: str) -> list[Variant]:
    """The candidates that tie with the best on `key`, in their order."""
    scores = [SCORE[key](c) for c in pool]
    known = [s for s in scores if s is not None]
    if not known:  # not measured for any: no one wins on it
        return pool
    top = max(known)
    slack = abs(top) * LATENCY_TIE if key == "latency" else 1e-12  # accuracy: a float ratio
    return [c for c, s in zip(pool, scores, strict=True) if s is not None and top - s <= slack]


def markdown(choice: Choice) -> str:
    """The candidates table of the model card, the shipped variant marked."""
    rows = ["| variant | accuracy | drop vs teacher | bytes | batch-1 p50 (ms) | gates |",
            "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for c in choice.candidates:
        name = f"**{c.name}** (shipped)" if c is choice.chosen else c.name
        latency = "not timed" if c.latency_ms is None else f"{c.latency_ms:.4f}"
        verdict = "pass" if c.passed else "fail: " + "; ".join(describe_failures(list(c.gates)))
        rows.append(f"| {name} | {c.accuracy:.4f} | {c.drop:.4f} | {c.size_bytes:,} | "
                    f"{latency} | {verdict} |")  # fmt: skip
    return "\n".join(rows) + "\n"
