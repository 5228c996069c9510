"""Gates as data: each has a metric value, a threshold and a direction; the report says which
failed and by how much. Failing a gate is a result, never an exception.

The accuracy gates (min_accuracy, max_accuracy_drop, min_agreement) are proportions of test
samples, so each also carries its 95% interval and the number of samples behind it:

- min_accuracy and min_agreement: the Wilson score interval of k/n.
- max_accuracy_drop: teacher and model are scored on the same test rows, so the drop is a
  difference of paired proportions: Newcombe's hybrid score interval for paired data (method
  10 of Newcombe 1998, the one `contingencytables` calls square-and-add). It is deterministic,
  and unlike a bootstrap it does not collapse to a point when no row is scored differently.

`gates.decide` says what a gate is decided on: `estimate` (the measured value) or `bound` (the
whole interval must clear the threshold). Either way, a split too small to tell the gate's
tolerance apart (interval wider than twice the tolerance) is reported as undecidable, with the
test split size that would do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from slimline.core.params.release import Gates

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile: two-sided 95%
CONFIDENCE = 0.95
Decide = Literal["estimate", "bound"]


@dataclass(frozen=True)
class Gate:
    name: str
    value: float
    threshold: float
    kind: Literal["min", "max"]  # value must be >= (min) or <= (max) the threshold
    interval: tuple[float, float] | None = None  # 95%, for the gates measured on samples
    samples: int | None = None  # how many test samples the value and interval come from
    decide: Decide = "estimate"  # what is compared with the threshold (gates.decide)
    tolerance: float | None = None  # the distance the split must resolve (undecidable)

    @property
    def decided(self) -> float:
        return decided_figure(self.kind, self.value, self.interval, self.decide)

    @property
    def passed(self) -> bool:
        d = self.decided
        return d >= self.threshold if self.kind == "min" else d <= self.threshold

    @property
    def margin(self) -> float:
        """How far inside the threshold the decided figure is (negative: by how much it
        failed)."""
        diff = self.decided - self.threshold
        return diff if self.kind == "min" else -diff

    @property
    def needed_samples(self) -> int | None:
        """None when the split decides the gate; otherwise the test split size whose interval
        would be twice the tolerance wide (width ~ 1/sqrt(n)), 0 when no size would do."""
        if self.interval is None or not self.samples or self.tolerance is None:
            return None
        return needed_samples(self.interval, self.samples, self.tolerance)

    @property
    def undecidable(self) -> str | None:
        """Why the test split is too small to decide this gate, or None."""
        needed = self.needed_samples
        if needed is None or self.interval is None:
            return None
        return undecidable_note(self.interval, self.samples, needed, self.tolerance)

    def as_dict(self) -> dict:
        out: dict = {
            "name": self.name,
            "value": self.value,
            "threshold": self.threshold,
            "kind": self.kind,
            "passed": self.passed,
            "margin": self.margin,
        }
        if self.interval is not None:
            out |= {
                "interval": [self.interval[0], self.interval[1]],
                "confidence": CONFIDENCE,
                "samples": self.samples,
                "decided_on": self.decide,
                "shown": shown(self.value, self.interval, self.samples),
            }
            if (note := self.undecidable) is not None:
                out["undecidable"] = {
                    "needed_samples": self.needed_samples or None,  # None: no size would do
                    "tolerance": self.tolerance,
                    "width": self.interval[1] - self.interval[0],
                    "note": note,
                }
        return out

    def describe(self) -> str:
        return describe(self.name, self.value, self.threshold, self.kind, self.passed,
                        interval=self.interval, samples=self.samples,
                        decided_on=self.decide)  # fmt: skip


@dataclass(frozen=True)
class Evidence:
    """The test rows behind the accuracy gates, as counts: the teacher and the model scored on
    the same rows (a paired table), and the model's top-1 agreement with its FP32 source."""

    both: int  # rows both get right
    teacher_only: int  # the teacher right, the model wrong
    model_only: int  # the model right, the teacher wrong
    neither: int
    agree: int  # rows on which the model and its FP32 source predict the same class

    @classmethod
    def of(cls, pred, teacher_pred, source_pred, y) -> Evidence:
        """From top-1 predictions (N,) of the model, the teacher and the FP32 source."""
        pred, teacher_pred, source_pred, y = (np.asarray(a) for a in (pred, teacher_pred,
                                                                      source_pred, y))  # fmt: skip
        if not len(pred) == len(teacher_pred) == len(source_pred) == len(y):
            raise ValueError(
                f"length mismatch: {len(pred)} model, {len(teacher_pred)} teacher, "
                f"{len(source_pred)} source predictions for {len(y)} labels"
            )
        if len(y) == 0:
            raise ValueError("cannot score an empty set")
        right, teacher_right = pred == y, teacher_pred == y
        return cls(
            both=int(np.sum(right & teacher_right)),
            teacher_only=int(np.sum(~right & teacher_right)),
            model_only=int(np.sum(right & ~teacher_right)),
            neither=int(np.sum(~right & ~teacher_right)),
            agree=int(np.sum(pred == source_pred)),
        )

    @property
    def n(self) -> int:
        return self.both + self.teacher_only + self.model_only + self.neither

    @property
    def accuracy(self) -> float:
        return (self.both + self.model_only) / self.n

    @property
    def teacher_accuracy(self) -> float:
        return (self.both + self.teacher_only) / self.n

    @property
    def drop(self) -> float:
        """Teacher accuracy - model accuracy, on the same rows."""
        return (self.teacher_only - self.model_only) / self.n

    @property
    def agreement(self) -> float:
        return self.agree / self.n


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of the proportion k/n (n >= 1)."""
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1 (got k={k}, n={n})")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # exact ends where the proportion is: 0/n and n/n would otherwise miss by a rounding
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def paired_difference(
    both: int, first_only: int, second_only: int, neither: int, z: float = Z95
) -> tuple[float, float]:
    """Newcombe's hybrid score interval (1998, method 10) for p1 - p2, where p1 and p2 are
    the proportions of successes of two raters scored on the same n rows: `first_only` rows
    are successes of the first alone, `second_only` of the second alone."""
    n = both + first_only + second_only + neither
    first, second = both + first_only, both + second_only
    p1, p2 = first / n, second / n
    (l1, u1), (l2, u2) = wilson(first, n, z), wilson(second, n, z)
    # the correlation of the two, continuity-corrected as Newcombe's method 10 does
    phi = 0.0
    if 0 < first < n and 0 < second < n:
        a = both * neither - first_only * second_only
        c = a - n / 2 if a > n / 2 else (a if a < 0 else 0.0)
        phi = c / math.sqrt(first * (n - first) * second * (n - second))
    d = p1 - p2
    below = (p1 - l1, u2 - p2)  # how far each may move towards a smaller difference
    above = (p2 - l2, u1 - p1)
    low = d - math.sqrt(max(0.0, below[0] ** 2 - 2 * phi * below[0] * below[1] + below[1] ** 2))
    high = d + math.sqrt(max(0.0, above[0] ** 2 - 2 * phi * above[0] * above[1] + above[1] ** 2))
    return max(-1.0, low), min(1.0, high)


def decided_figure(
    kind: str, value: float, interval: Sequence[float] | None, decided_on: str | None
) -> float:
    """The figure compared with the threshold: the value, or with `gates.decide: bound` the
    interval's far end (its lower end for a min gate, its upper end for a max gate)."""
    if decided_on == "bound" and interval is not None:
        return interval[0] if kind == "min" else interval[1]
    return value


def needed_samples(interval: tuple[float, float], samples: int, tolerance: float) -> int | None:
    """None when the interval is at most twice `tolerance` wide (the split decides); else the
    split size that would make it so, scaling the width as 1/sqrt(n); 0: no size would."""
    width = interval[1] - interval[0]
    if width <= 2 * tolerance:
        return None
    if tolerance <= 0:
        return 0
    return math.ceil(samples * (width / (2 * tolerance)) ** 2)


def model_gates(
    g: Gates,
    evidence: Evidence,
    *,
    size_bytes: int,
    teacher_size_bytes: int,
) -> list[Gate]:
    """Every gate a model file can be judged on by itself (test split): all but the speed-up,
    which needs the teacher timed beside it (the benchmark). Validate judges dist/model.onnx
    with these; export judges each candidate with the same, so its pick passes validate."""
    e, n, decide = evidence, evidence.n, g.decide
    return [
        Gate("min_accuracy", e.accuracy, g.min_accuracy, "min",
             wilson(e.both + e.model_only, n), n, decide, 1 - g.min_accuracy),
        # the teacher FP32 ONNX and the model on the same test rows
        Gate("max_accuracy_drop", e.drop, g.max_accuracy_drop, "max",
             paired_difference(e.both, e.teacher_only, e.model_only, e.neither), n, decide,
             g.max_accuracy_drop),
        # top-1 agreement with the pruned FP32 model the candidate was made from
        Gate("min_agreement", e.agreement, g.min_agreement, "min", wilson(e.agree, n), n,
             decide, 1 - g.min_agreement),
        Gate("max_size_bytes", size_bytes, g.max_size_bytes, "max"),
        Gate("min_compression", teacher_size_bytes / size_bytes, g.min_compression, "min"),
    ]  # fmt: skip


def report(gates: list[Gate]) -> dict:
    """The contract's `{"passed", "gates": [{"name", "value", "threshold", "passed"}]}`; the
    accuracy gates add `interval`, `samples`, `decided_on`, `shown` and, when the split is too
    small, `undecidable`."""
    return {"passed": all(g.passed for g in gates), "gates": [g.as_dict() for g in gates]}


def describe_failures(gates: list[Gate]) -> list[str]:
    return [g.describe() for g in gates if not g.passed]


def undecidable_notes(gates: Sequence[Gate]) -> list[str]:
    """One line per gate the test split is too small to decide."""
    return [f"{g.name}: {g.undecidable}" for g in gates if g.undecidable is not None]


# ---- for people: figures as they are read, never as floats print (JSON keeps the floats) ----


def spec(*values: float | None) -> str:
    """One format for figures read side by side (a value, its threshold, its interval): four
    decimals for proportions and small ratios, two above 10, whole numbers from 1000."""
    top = max((abs(v) for v in values if v is not None), default=0.0)
    return ".4f" if top < 10 else ".2f" if top < 1000 else ",.0f"


def fmt(value: float | None, form: str | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:{form or spec(value)}}"


def shown(value: float, interval: Sequence[float] | None, samples: int | None) -> str:
    """`0.9667 (95% CI 0.9213 to 0.9891, 300 test samples)`; the value alone without one."""
    if interval is None:
        return fmt(value)
    form = spec(value, *interval)
    n = f", {samples:,} test samples" if samples else ""
    return (f"{fmt(value, form)} (95% CI {fmt(interval[0], form)} to "
            f"{fmt(interval[1], form)}{n})")  # fmt: skip


def undecidable_note(
    interval: Sequence[float], samples: int | None, needed: int | None, tolerance: float | None
) -> str:
    width = interval[1] - interval[0]
    what = (
        f"the test split ({samples:,} samples) is too small to decide it: its 95% interval is "
        f"{width:.4f} wide, more than twice the tolerance {fmt(tolerance, '.4f')}"
    )
    if not needed:
        return what + " (a threshold that leaves no tolerance: no split size would do)"
    return what + f"; about {needed:,} test samples would decide it"


def describe(
    name: str,
    value: float | None,
    threshold: float | None,
    kind: str | None,
    passed: bool,
    *,
    interval: Sequence[float] | None = None,
    samples: int | None = None,
    decided_on: str | None = None,
) -> str:
    """A gate as people read it: `max_accuracy_drop: 0.0167 > 0.0100 (off by 0.0067; 95% CI
    0.0044 to 0.0290, 300 test samples)`. With `decided_on: bound` the figure compared is the
    interval's far end, named as such."""
    if value is None or threshold is None or kind not in ("min", "max"):
        return f"{name}: no figure (value {fmt(value)}, threshold {fmt(threshold)})"
    bound = decided_on == "bound" and interval is not None
    decided = decided_figure(kind, value, interval, decided_on)
    form = spec(value, threshold, *(interval or ()))
    sign = {("min", True): ">=", ("min", False): "<", ("max", True): "<=", ("max", False): ">"}
    said = (
        f"{name}: {'lower' if kind == 'min' else 'upper'} bound " if bound else f"{name}: "
    ) + f"{fmt(decided, form)} {sign[kind, passed]} {fmt(threshold, form)}"
    extra = [] if passed else [f"off by {fmt(abs(decided - threshold), form)}"]
    if bound:
        extra.append(f"estimate {fmt(value, form)}")
    if interval is not None:
        n = f", {samples:,} test samples" if samples else ""
        extra.append(f"95% CI {fmt(interval[0], form)} to {fmt(interval[1], form)}{n}")
    return said + (f" ({'; '.join(extra)})" if extra else "")
