"""The registry verdict: a candidate that passed every gate is registered as `challenger` and
takes `champion` only if it beats the holder; a failed gate registers nothing, moves nothing.

Gates come from reports/gates.json (validate) plus the speed-up gate of reports/benchmark.json;
a missing report fails closed. Alias moves (here and in `aliases`) happen under one lock.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from slimline.compression.release.gates import describe
from slimline.core.env import VERBOSE_ENV
from slimline.core.params.schema import Params
from slimline.records.aliases import (
    CHALLENGER,
    CHAMPION,
    FIGURE_METRIC,
    promotion_lock,
    set_champion,
    version_figures,
)
from slimline.records.rounding import for_people
from slimline.records.stage_outputs import read_stage
from slimline.records.tracking import connect, tracking_errors

PASSED = "passed"  # the version tag `gates` holds this only when every gate passed


@dataclass(frozen=True)
class GateResult:
    name: str
    value: float | None
    threshold: float | None
    passed: bool
    kind: str | None = None  # min | max
    interval: tuple[float, float] | None = None  # 95%, the accuracy gates
    samples: int | None = None  # test samples behind value and interval
    decided_on: str | None = None  # estimate | bound (gates.decide)
    undecidable: str | None = None  # why the test split is too small to decide it, if it is

    def describe(self) -> str:
        """As people read it: `max_accuracy_drop: 0.0167 > 0.0100 (off by 0.0067; 95% CI
        0.0044 to 0.0290, 300 test samples)`."""
        return describe(self.name, self.value, self.threshold, self.kind, self.passed,
                        interval=self.interval, samples=self.samples,
                        decided_on=self.decided_on)  # fmt: skip

    def tag(self) -> str:
        """The run tag `slimline.gate.<name>`: `passed 0.9667 >= 0.9500 (95% CI ...)`."""
        said = self.describe().removeprefix(f"{self.name}: ")
        note = f"; {self.undecidable}" if self.undecidable else ""
        return f"{PASSED if self.passed else 'failed'} {said}{note}"

    @classmethod
    def from_report(cls, g: dict) -> GateResult:
        """One gate of reports/gates.json or the benchmark's speed-up gate (`Gate.as_dict`)."""
        interval = g.get("interval")
        pair = (
            (float(interval[0]), float(interval[1]))
            if isinstance(interval, list) and len(interval) == 2
            else None
        )
        undecidable = g.get("undecidable")
        return cls(
            g.get("name", "?"), g.get("value"), g.get("threshold"), g.get("passed") is True,
            kind=g.get("kind"), interval=pair,
            samples=g.get("samples"), decided_on=g.get("decided_on"),
            undecidable=undecidable.get("note") if isinstance(undecidable, dict) else None,
        )  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    passed: bool
    gates: list[GateResult]
    version: str | None = None  # the registered version, when every gate passed
    champion: bool = False  # whether it took `champion`
    previous_champion: str | None = None
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def failing(self) -> list[GateResult]:
        return [g for g in self.gates if not g.passed]

    def summary(self) -> str:
        if not self.passed:
            return "gates failed: " + "; ".join(g.describe() for g in self.failing)
        if self.champion:
            return f"version {self.version} is champion (was {self.previous_champion or 'none'})"
        return f"version {self.version} is challenger; champion {self.previous_champion} holds"


def read_gates(root: Path, params: Params) -> list[GateResult]:
    """Every gate of the validate report plus the benchmark's speed-up gate."""
    gates: list[GateResult] = []
    sources = [
        (params.paths.gates_report, "gates"),
        (params.paths.benchmark_report, "speedup_gate"),
    ]
    for rel, key in sources:
        try:
            found = json.loads((root / rel).read_text())[key]
        except (OSError, ValueError, KeyError, TypeError):
            # no report means no evidence: fail closed rather than promote blind
            gates.append(GateResult(f"{rel}:{key}", None, None, False))
            continue
        found = found if isinstance(found, list) else [found]
        if not found:  # an empty gate list proves nothing either
            gates.append(GateResult(f"{rel}:{key}", None, None, False))
        gates += [GateResult.from_report(g) for g in found]
    return gates


def candidate_figures(root: Path, params: Params) -> dict[str, float]:
    """accuracy, agreement (test split, validate), size and batch-1 p50 latency (benchmark)."""
    gates, _ = read_stage(root, params, "validate")
    bench, _ = read_stage(root, params, "benchmark")
    quant, _ = read_stage(root, params, "quantize")
    picks = {
        "accuracy": [
            gates.metrics.get("min_accuracy.value"),
            bench.metrics.get("final_int8.accuracy"),
        ],
        "agreement": [gates.metrics.get("min_agreement.value"), quant.metrics.get("agreement")],
        "size_bytes": [bench.metrics.get("final_int8.size_bytes")],
        "latency_ms": [bench.metrics.get("final_int8.latency_ms_b1_p50")],
    }
    return {
        k: next(v for v in vals if v is not None)
        for k, vals in picks.items()
        if any(v is not None for v in vals)
    }


def beats(candidate: dict[str, float], champion: dict[str, float], metric: str) -> bool:
    """Higher primary metric wins; a tie goes to the lower latency. A champion without the
    figure (registered by hand) cannot defend it."""
    mine, theirs = candidate.get(metric, -math.inf), champion.get(metric)
    if theirs is None:
        return True
    if not math.isclose(mine, theirs, rel_tol=0, abs_tol=1e-12):
        return mine > theirs
    return candidate.get("latency_ms", math.inf) < champion.get("latency_ms", math.inf)


def decide_and_promote(root: Path, params: Params, run_id: str) -> Verdict:
    """Apply the gates to the run's outputs; register and move aliases only if all passed."""
    root = Path(root).resolve()
    client, _, uri = connect(root, params)
    name = params.tracking.model_name
    gates = read_gates(root, params)
    with tracking_errors(uri):
        if not all(g.passed for g in gates):
            verdict = Verdict(False, gates)
            _record(client, run_id, verdict, "rejected")
            return verdict
        figures = candidate_figures(root, params)
        # a retried flow task finds its version on the run instead of registering it twice
        done = client.get_run(run_id).data.tags.get("slimline.model_version")
        version = done or _register(client, root, params, run_id, figures)
        with promotion_lock(root, uri, name):  # every alias move, challenger's too
            client.set_registered_model_alias(name, CHALLENGER, version)
            holder = _alias_holder(client, name, CHAMPION)
            held = version_figures(client, name, holder) if holder else {}
            already = holder == version  # a retry after the move
            take = not already and (
                holder is None or beats(figures, held, params.tracking.primary_metric)
            )
            if take:
                set_champion(client, name, version)
        before = None if already else holder
        verdict = Verdict(True, gates, version, take or already, before, figures)
        _record(client, run_id, verdict, CHAMPION if take else CHALLENGER)
    return verdict


def _alias_holder(client, name: str, alias: str) -> str | None:
    # no catch-all here: "could not ask" must never read as "no champion, take it"
    aliases = client.get_registered_model(name).aliases
    return str(aliases[alias]) if alias in aliases else None


REGISTRY_NOTES = ("Successfully registered model", "Registered model ", "Created version")


@contextlib.contextmanager
def registry_notes_hidden() -> Iterator[None]:
    """Drop MLflow's registry notes from stderr (shown with `--verbose`); keep the rest."""
    if os.environ.get(VERBOSE_ENV):
        yield
        return
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    finally:
        kept = [line for line in captured.getvalue().splitlines(keepends=True)
                if not line.startswith(REGISTRY_NOTES)]  # fmt: skip
        sys.stderr.write("".join(kept))


def _register(client, root: Path, params: Params, run_id: str, figures: dict) -> str:
    """Log dist/model.onnx (ONNX flavor, signature from test inputs) and register it. The
    version's figure tags are rounded for people (`rounding.for_people`); the same figures go
    on the run first as full-precision metrics `registry.<figure>`, which the champion's
    defence compares (`aliases.version_figures`)."""
    import mlflow
    import mlflow.onnx
    from mlflow.models import infer_signature

    from slimline.compression.data.store import load_split
    from slimline.compression.runtime.onnx_io import feeds, load, session

    path = root / params.paths.dist / "model.onnx"
    example = load_split(root / params.paths.prepared, "test", lazy=True).x[:2]
    # checked before it is loaded (onnx.checker; external data must stay inside dist/): a
    # corrupt or tampered file fails with OnnxError naming it, before anything is registered
    sess = session(path)
    fed = feeds(sess)(example)  # one float input, or a text model's ids and mask
    logits = {"logits": sess.run(["logits"], fed)[0]}
    # a single input stays an unnamed tensor, as MLflow's ONNX flavor feeds it
    signature = infer_signature(next(iter(fed.values())) if len(fed) == 1 else fed, logits)
    model = load(path)
    run_tags = client.get_run(run_id).data.tags
    export, _ = read_stage(root, params, "export")
    tags = {
        "gates": PASSED,
        # the variant shipped (pruned FP32 or quantized) and the objective that chose it
        **{k: export.text[k] for k in ("variant", "objective") if k in export.text},
        **{k: for_people(k, float(v)) for k, v in figures.items()},
        "primary_metric": params.tracking.primary_metric,
        "git_commit": run_tags.get("slimline.git_commit", "unknown"),
        "data_sha256": run_tags.get("slimline.data_sha256", "unknown"),
        "run_id": run_id,
    }
    log_figures(client, run_id, figures)
    # explicit requirements: MLflow would otherwise infer them in a slow subprocess
    needs = [f"{p}=={importlib.metadata.version(p)}" for p in ("mlflow", "onnx", "onnxruntime")]
    # MLflow prints its registry notes ("Successfully registered model ...", "Created version
    # ...") to stderr; the verdict line says the same. Anything else it prints goes through.
    with mlflow.start_run(run_id=run_id), registry_notes_hidden():
        info = mlflow.onnx.log_model(
            model,
            name="model",
            signature=signature,
            input_example=example,
            registered_model_name=params.tracking.model_name,
            metadata={p.key: p.value for p in model.metadata_props} | tags,
            pip_requirements=needs,
            onnx_execution_providers=["CPUExecutionProvider"],
            save_as_external_data=False,
        )
    version = str(info.registered_model_version)
    for key, value in tags.items():
        client.set_model_version_tag(params.tracking.model_name, version, key, value)
    return version


def log_figures(client, run_id: str, figures: dict[str, float]) -> None:
    """The registry's figures on the run at full precision: `registry.accuracy`, ..."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(FIGURE_METRIC.format(k), float(v), now, 0) for k, v in figures.items()]
    client.log_batch(run_id, metrics=metrics)


def _record(client, run_id: str, verdict: Verdict, outcome: str) -> None:
    """The verdict on the run: one tag per gate, the failing ones together, and a JSON file."""
    from mlflow.entities import Metric, RunTag

    tags = {
        "slimline.verdict": PASSED if verdict.passed else "failed",
        "slimline.promotion": outcome,
        **{f"slimline.gate.{g.name}": g.tag() for g in verdict.gates},
    }
    if verdict.failing:
        tags["slimline.gates.failing"] = "; ".join(g.describe() for g in verdict.failing)
    if verdict.version:
        tags["slimline.model_version"] = verdict.version
    client.log_batch(
        run_id,
        metrics=[Metric("verdict_passed", float(verdict.passed), int(time.time() * 1000), 0)],
        tags=[RunTag(k, v[:8000]) for k, v in tags.items()],
    )
    client.log_dict(run_id, asdict(verdict) | {"outcome": outcome}, "verdict.json")
