"""Great Expectations suite over the prepared splits, failing closed.

GX validates tables, and a (N, C, H, W) image array is not one: each sample becomes a row of
summaries (min, max, mean, value count, content hash) that carry every property we check.
Five batches, each with its own suite: the samples of all splits, the class counts per split,
the train rows (standardization), the train mean of each channel (signals (N, C, L), images
(N, C, H, W)) or feature (tabular (N, F)), which standardization makes 0 one by one, and the
content hashes (leakage between splits).

The summaries are made block by block (`SampleSummaries`), so a data set streamed from disk is
validated in one pass over every sample, with only its summary rows in memory.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Any

import numpy as np
import pandas as pd

from slimline.compression.data.dataset import SPLITS, DataError

# After z-scoring with train statistics, |value| beyond this means broken statistics or
# corrupt inputs, not an unusual sample.
MAX_ABS_VALUE = 50.0
# Standardized train data has mean 0; float32 rounding stays far below this.
MAX_TRAIN_MEAN = 1e-3

Parts = dict[str, tuple[np.ndarray, np.ndarray]]


class DataValidationError(DataError):
    def __init__(self, message: str, report: dict):
        self.report = report
        super().__init__(message)


def sample_hash(row: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(row).tobytes()).hexdigest()[:32]


class SampleSummaries:
    """The summary row of every sample of one split, made from blocks of its x, in order;
    with the per-channel (feature) sums of its values for the channel means."""

    def __init__(self, x_dtype: np.dtype, input_shape: tuple[int, ...]):
        self.x_dtype, self.n_values = str(x_dtype), int(np.prod(input_shape, dtype=np.int64))
        self.columns: dict[str, list[np.ndarray]] = {"x_min": [], "x_max": [], "x_mean": []}
        self.hashes: list[str] = []
        self.channel_sums, self.count = np.zeros(input_shape[0] if input_shape else 0), 0

    def add(self, x: np.ndarray) -> None:
        flat = x.reshape(len(x), -1)
        with np.errstate(invalid="ignore"):
            self.columns["x_min"].append(flat.min(axis=1).astype(np.float64))
            self.columns["x_max"].append(flat.max(axis=1).astype(np.float64))
            self.columns["x_mean"].append(flat.mean(axis=1, dtype=np.float64))
            self.channel_sums += x.sum(axis=(0, *range(2, x.ndim)), dtype=np.float64)
        self.hashes += [sample_hash(r) for r in flat]
        self.count += len(x)

    def channel_means(self) -> np.ndarray:
        per_channel = self.count * self.n_values // max(len(self.channel_sums), 1)
        with np.errstate(invalid="ignore"):
            return self.channel_sums / per_channel if self.count else np.zeros(0)

    def frame(self, name: str, y: np.ndarray) -> pd.DataFrame:
        def column(key: str) -> np.ndarray:
            return np.concatenate(self.columns[key]) if self.columns[key] else np.zeros(0)

        return pd.DataFrame(
            {
                "split": name,
                "y": y,
                "x_dtype": self.x_dtype,
                "n_values": self.n_values,
                **{key: column(key) for key in self.columns},
                "sample_hash": self.hashes,
            }
        )


def summarize(x: np.ndarray) -> SampleSummaries:
    """The summaries of a split held in memory, in one block."""
    summaries = SampleSummaries(x.dtype, x.shape[1:])
    summaries.add(x)
    return summaries


Summaries = dict[str, tuple[SampleSummaries, np.ndarray]]  # split: (summaries, y)


def _frames(parts: Parts, num_classes: int) -> dict[str, pd.DataFrame]:
    x_train = parts["train"][0]
    axes = (0, *range(2, x_train.ndim))  # all but the channel (feature) axis
    with np.errstate(invalid="ignore"):
        channel_means = x_train.mean(axis=axes, dtype=np.float64) if len(x_train) else []
    summaries = {name: (summarize(x), y) for name, (x, y) in parts.items()}
    return _summary_frames(summaries, channel_means, num_classes)


def _summary_frames(
    summaries: Summaries, channel_means, num_classes: int
) -> dict[str, pd.DataFrame]:
    samples = pd.concat([s.frame(name, y) for name, (s, y) in summaries.items()], ignore_index=True)
    counts = pd.DataFrame(
        [
            {"split": name, "label": k, "count": int(np.sum(y == k))}
            for name, (_, y) in summaries.items()
            for k in range(num_classes)
        ]
    )
    # Duplicates inside one split are harmless; across splits they are leakage. Deduplicate
    # per split first so a uniqueness expectation over the union finds only the latter.
    hashes = samples.drop_duplicates(["split", "sample_hash"])[["split", "sample_hash"]]
    channels = pd.DataFrame({"channel": np.arange(len(channel_means)), "train_mean": channel_means})
    return {
        "samples": samples,
        "class_counts": counts,
        "train": samples[samples["split"] == "train"],
        "channels": channels,
        "leakage": hashes,
    }


def _suites(num_classes: int, n_values: int, min_per_class: int) -> dict[str, list]:
    import great_expectations.expectations as gxe

    return {
        "samples": [
            gxe.ExpectTableColumnsToMatchSet(
                column_set=[
                    "split",
                    "y",
                    "x_dtype",
                    "n_values",
                    "x_min",
                    "x_max",
                    "x_mean",
                    "sample_hash",
                ],
                exact_match=True,
            ),
            gxe.ExpectColumnValuesToBeInSet(column="x_dtype", value_set=["float32"]),
            gxe.ExpectColumnValuesToBeBetween(
                column="n_values", min_value=n_values, max_value=n_values
            ),
            # NaN is invisible to range checks: NotBeNull catches it, Between catches inf
            *[gxe.ExpectColumnValuesToNotBeNull(column=c) for c in ("x_min", "x_max", "x_mean")],
            gxe.ExpectColumnValuesToBeBetween(
                column="x_min", min_value=-MAX_ABS_VALUE, max_value=MAX_ABS_VALUE
            ),
            gxe.ExpectColumnValuesToBeBetween(
                column="x_max", min_value=-MAX_ABS_VALUE, max_value=MAX_ABS_VALUE
            ),
            gxe.ExpectColumnValuesToNotBeNull(column="y"),
            gxe.ExpectColumnValuesToBeInSet(column="y", value_set=list(range(num_classes))),
            gxe.ExpectColumnDistinctValuesToBeInSet(column="split", value_set=list(SPLITS)),
        ],
        "class_counts": [
            gxe.ExpectTableRowCountToEqual(value=len(SPLITS) * num_classes),
            gxe.ExpectColumnValuesToBeBetween(column="count", min_value=min_per_class),
        ],
        "train": [
            gxe.ExpectColumnMeanToBeBetween(
                column="x_mean", min_value=-MAX_TRAIN_MEAN, max_value=MAX_TRAIN_MEAN
            ),
        ],
        # per channel too: an overall mean of 0 can hide channels at +1 and -1
        "channels": [
            gxe.ExpectColumnValuesToBeBetween(
                column="train_mean", min_value=-MAX_TRAIN_MEAN, max_value=MAX_TRAIN_MEAN
            ),
        ],
        "leakage": [gxe.ExpectColumnValuesToBeUnique(column="sample_hash")],
    }


def _run(frames: dict[str, pd.DataFrame], suites: dict[str, list]) -> list[dict]:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX pins its module loggers at INFO and announces its ephemeral docs dir on every run
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = ctx.data_sources.add_pandas("prepared").add_dataframe_asset("splits")
    entries = []
    for name, expectations in suites.items():
        suite = ctx.suites.add(gx.ExpectationSuite(name=name))
        for expectation in expectations:
            suite.add_expectation(expectation)
        definition = ctx.validation_definitions.add(
            gx.ValidationDefinition(
                name=name, data=asset.add_batch_definition_whole_dataframe(name), suite=suite
            )
        )
        result = definition.run(batch_parameters={"dataframe": frames[name]})
        entries += [_entry(name, r) for r in result.results]
    return sorted(entries, key=lambda e: (e["batch"], e["expectation"], e["column"] or ""))


def _entry(batch: str, r: Any) -> dict:
    kwargs = {k: v for k, v in r.expectation_config.kwargs.items() if k != "batch_id"}
    raised = bool(r.exception_info and r.exception_info.get("raised_exception"))
    observed = {k: r.result[k] for k in ("observed_value", "unexpected_count") if k in r.result}
    if r.result.get("partial_unexpected_list"):
        observed["examples"] = r.result["partial_unexpected_list"][:5]
    if raised:
        observed["exception"] = str(r.exception_info.get("exception_message"))
    return _jsonable(
        {
            "batch": batch,
            "expectation": r.expectation_config.type,
            "column": kwargs.pop("column", None),
            "kwargs": kwargs,
            # GX raising inside an expectation is a failure, not a pass: fail closed
            "success": bool(r.success) and not raised,
            "observed": observed,
        }
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def _failure_line(e: dict) -> str:
    """`samples: expect_..._in_set on y, expected value_set=[0, 1] (got {...})`."""
    wanted = ", ".join(f"{k}={v}" for k, v in sorted(e["kwargs"].items()) if v is not None)
    return (
        f"  {e['batch']}: {e['expectation']}"
        + (f" on {e['column']}" if e["column"] else "")
        + (f", expected {wanted}" if wanted else "")
        + f" (got {e['observed']})"
    )


def validate(parts: Parts, num_classes: int, min_per_class: int, source: str) -> list[dict]:
    """Run the suite; return the entries, or raise DataValidationError naming what failed."""
    n_values = int(np.prod(parts["train"][0].shape[1:]))
    return _check(_frames(parts, num_classes), num_classes, n_values, min_per_class, source)


def validate_summaries(
    summaries: Summaries, num_classes: int, min_per_class: int, source: str
) -> list[dict]:
    """`validate` from summaries made block by block (a streamed data set); the train channel
    means are the summed values over their count, in float64."""
    train = summaries["train"][0]
    frames = _summary_frames(summaries, train.channel_means(), num_classes)
    return _check(frames, num_classes, train.n_values, min_per_class, source)


def _check(
    frames: dict[str, pd.DataFrame],
    num_classes: int,
    n_values: int,
    min_per_class: int,
    source: str,
) -> list[dict]:
    return run_suites(frames, _suites(num_classes, n_values, min_per_class), source)


def run_suites(frames: dict[str, pd.DataFrame], suites: dict[str, list], source: str) -> list[dict]:
    """Each suite on its frame; the entries, or DataValidationError naming what failed."""
    try:
        entries = _run(frames, suites)
    except Exception as e:  # GX failing to run is a failed validation, never a silent pass
        raise DataValidationError(
            f"{source}: data validation could not run ({type(e).__name__}: {e})", {}
        ) from e
    failed = [e for e in entries if not e["success"]]
    if failed:
        lines = [_failure_line(e) for e in failed]
        raise DataValidationError(
            f"{source}: {len(failed)} data expectation(s) failed:\n" + "\n".join(lines),
            {"expectations": entries},
        )
    return entries
