"""Gates as data: each has a metric value, a threshold and a direction; the report says which
failed and by how much. Failing a gate is a result, never an exception."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from slimline.core.params import Gates


@dataclass(frozen=True)
class Gate:
    name: str
    value: float
    threshold: float
    kind: Literal["min", "max"]  # value must be >= (min) or <= (max) the threshold

    @property
    def passed(self) -> bool:
        return self.value >= self.threshold if self.kind == "min" else self.value <= self.threshold

    @property
    def margin(self) -> float:
        """How far inside the threshold (negative: by how much it failed)."""
        diff = self.value - self.threshold
        return diff if self.kind == "min" else -diff

    def as_dict(self) -> dict:
        return asdict(self) | {"passed": self.passed, "margin": self.margin}


def model_gates(
    g: Gates,
    *,
    accuracy: float,
    teacher_accuracy: float,
    agreement: float,
    size_bytes: int,
    teacher_size_bytes: int,
) -> list[Gate]:
    """Every gate a model file can be judged on by itself (test split): all but the speed-up,
    which needs the teacher timed beside it (the benchmark). Validate judges dist/model.onnx
    with these; export judges each candidate with the same, so its pick passes validate."""
    return [
        Gate("min_accuracy", accuracy, g.min_accuracy, "min"),
        Gate("max_accuracy_drop", teacher_accuracy - accuracy, g.max_accuracy_drop, "max"),
        # top-1 agreement with the pruned FP32 model the candidate was made from
        Gate("min_agreement", agreement, g.min_agreement, "min"),
        Gate("max_size_bytes", size_bytes, g.max_size_bytes, "max"),
        Gate("min_compression", teacher_size_bytes / size_bytes, g.min_compression, "min"),
    ]


def report(gates: list[Gate]) -> dict:
    """The contract's `{"passed", "gates": [{"name", "value", "threshold", "passed"}]}`."""
    return {"passed": all(g.passed for g in gates), "gates": [g.as_dict() for g in gates]}


def describe_failures(gates: list[Gate]) -> list[str]:
    return [
        f"{g.name}: {g.value:.6g} {'<' if g.kind == 'min' else '>'} {g.threshold:.6g} "
        f"(off by {-g.margin:.4g})"
        for g in gates
        if not g.passed
    ]
