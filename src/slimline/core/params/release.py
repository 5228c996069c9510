"""params.yaml's `quantize`, `export`, `gates`, `benchmark` and `tracking`: how the model
is made small, judged, measured and recorded."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from slimline.core.params.section import Probability, Section


class Quantize(Section):
    """Checked together: `mode: static` needs `calibration_samples` > 0;
    `bits: 4` needs `student.arch` mlp, transformer or boe; `qat: always` needs `mode: static`
    and `bits: 8` (the quantize stage stops with exit 2 otherwise)."""

    mode: Literal["auto", "static", "dynamic"] = Field(
        default="auto",
        description="`static`: onnxruntime QDQ with calibrated activation ranges (for a text "
        "model only its MatMul, Gemm and embedding Gather); `dynamic`: weights INT8, "
        "activations quantized at run time, no calibration; `auto`: dynamic for text (smaller "
        "and faster there, docs/quantization.md), static for the rest.",
    )
    calibration_samples: Annotated[int, Field(ge=0, le=100_000)] = Field(
        default=256,
        description="Stratified train samples the static ranges are calibrated on (at least 1 "
        "with `mode: static`).",
    )
    calibration_method: Literal["minmax", "entropy", "percentile"] = Field(
        default="minmax",
        description="How activation ranges are calibrated: `minmax`, `entropy` or `percentile`.",
    )
    per_channel: bool = Field(
        default=True,
        description="One weight scale per output channel rather than per tensor.",
    )
    max_accuracy_drop: Probability = Field(
        default=0.01,
        description="Largest validation accuracy drop allowed against FP32; beyond it the most "
        "damaging nodes (measured) stay FP32, one more per round.",
    )
    max_excluded_nodes: Annotated[int, Field(ge=0, le=1000)] = Field(
        default=8,
        description="Most nodes the accuracy fallback may keep in FP32 (0: none).",
    )
    bits: Literal[8, 4] = Field(
        default=8,
        description="8: INT8 as `mode` says; 4: block-wise 4-bit weights (onnxruntime "
        "MatMulNBits; embedding tables GatherBlockQuantized), activations float; for "
        "`student.arch` mlp, transformer or boe.",
    )
    qat: Literal["auto", "never", "always"] = Field(
        default="auto",
        description="Quantization-aware fine-tuning (static INT8): `auto` when PTQ with its "
        "fallback stays beyond `max_accuracy_drop`; `always` runs both and keeps the one within "
        "bound and smaller; `never`: PTQ only.",
    )
    # compression.runtime.int8_target picks the format
    target: Literal["portable", "native"] = Field(
        default="portable",
        description="The CPUs the INT8 model computes exactly on: `portable`, every x86-64 CPU "
        "(U8U8: uint8 weights); `native`, this machine's best format (U8S8; with VNNI or AMX, "
        "8-bit weights the model then needs wherever it runs).",
    )

    def resolved(self, text: bool) -> Quantize:
        """This section with `mode: auto` made dynamic for a `text` model, static otherwise."""
        if self.mode != "auto":
            return self
        return self.model_copy(update={"mode": "dynamic" if text else "static"})

    @model_validator(mode="after")
    def _rules(self) -> Quantize:
        if self.mode != "dynamic" and self.calibration_samples < 1:
            raise ValueError(
                "quantize.calibration_samples: static quantization needs calibration_samples "
                f"> 0; or set mode: dynamic (got {self.calibration_samples})"
            )
        return self


class Export(Section):
    opset: Annotated[int, Field(ge=18, le=23)] = Field(
        default=20,
        description="ONNX opset of the exported models (torch's dynamo exporter).",
    )
    parity_atol: Annotated[float, Field(gt=0, le=1)] = Field(
        default=1e-4,
        description="Largest absolute difference allowed between the ONNX model's and torch's "
        "logits.",
    )
    parity_samples: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=128,
        description="Test samples the ONNX-against-torch parity check runs on.",
    )
    # size by default: at slimline's sizes INT8 buys size more than speed
    objective: Literal["size", "latency", "accuracy"] = Field(
        default="size",
        description="Which variant dist/ ships among the pruned FP32 and the quantized model that "
        "pass the model gates: the smallest (`size`), the fastest at batch 1 (`latency`, timed "
        "with the benchmark settings) or the most accurate (`accuracy`). Ties go to accuracy, "
        "then size, then latency.",
    )


class Gates(Section):
    """A failed gate is a result in reports/gates.json, never a crash, and registers
    nothing: no version, no alias moved."""

    min_accuracy: Probability = Field(
        default=0.95,
        description="Lowest test accuracy of the final model.",
    )
    max_accuracy_drop: Probability = Field(
        default=0.01,
        description="Largest test accuracy drop of the final model against the FP32 teacher.",
    )
    min_agreement: Probability = Field(
        default=0.98,
        description="Lowest top-1 agreement of the final model with its FP32 source, on the test "
        "split.",
    )
    max_size_bytes: Annotated[int, Field(ge=1)] = Field(
        default=100_000,
        description="Largest file size of dist/model.onnx, in bytes.",
    )
    min_compression: Annotated[float, Field(ge=1)] = Field(
        default=50.0,
        description="Lowest compression: teacher FP32 ONNX size / final model size.",
    )
    min_speedup: Annotated[float, Field(gt=0)] = Field(
        default=5.0,
        description="Lowest speed-up: teacher batch-1 latency / final model batch-1 latency "
        "(benchmark).",
    )
    decide: Literal["estimate", "bound"] = Field(
        default="estimate",
        description="What the accuracy gates (min_accuracy, max_accuracy_drop, min_agreement) are "
        "decided on: the measured value (`estimate`) or the far end of its 95% interval (`bound`: "
        "the whole interval must clear the threshold).",
    )


class Benchmark(Section):
    threads: Annotated[int, Field(ge=1, le=256)] = Field(
        default=1,
        description="onnxruntime intra-op threads for every timing.",
    )
    warmup: Annotated[int, Field(ge=0, le=10_000)] = Field(
        default=50,
        description="Untimed rounds (a batch-1 call and a throughput batch of every variant) "
        "before timing.",
    )
    runs: Annotated[int, Field(ge=5, le=100_000)] = Field(
        default=500,
        description="Timed batch-1 calls per variant, interleaved across variants (p50, p95).",
    )
    throughput_batch: Annotated[int, Field(ge=1, le=4096)] = Field(
        default=64,
        description="Batch size of the throughput measurement.",
    )
    throughput_runs: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=30,
        description="Timed batches per variant for throughput.",
    )


class Tracking(Section):
    experiment: Annotated[str, Field(min_length=1)] = Field(
        default="slimline",
        description="MLflow experiment that every pipeline run and sweep is recorded in.",
    )
    model_name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")] = Field(
        default="slimline",
        description="Registered model name in the MLflow registry (letters, digits, `_`, `.`, "
        "`-`).",
    )
    primary_metric: Literal["accuracy", "agreement"] = Field(
        default="accuracy",
        description="The figure a challenger must beat to take `champion`: test `accuracy` or "
        "`agreement` with FP32; a tie goes to the lower latency.",
    )
