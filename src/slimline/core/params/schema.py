"""Typed schema of params.yaml: `Params`, the whole file, with the cross-section rules,
validated once (`loading.load_params` is the only way anything reads params). Each section
lives in its own module: inputs (paths, data), models (teacher, student, distill, prune),
release (quantize, export, gates, benchmark, tracking)."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

from pydantic import Field, StrictBool, model_validator

from slimline.core.params.inputs import Data, Paths
from slimline.core.params.models import MODEL_SIZES, Distill, ModelSpec, Prune, TeacherSpec
from slimline.core.params.release import Benchmark, Export, Gates, Quantize, Tracking
from slimline.core.params.section import Section

# student families whose weights are all MatMul / Linear layers and embedding tables
INT4_ARCHS = ("mlp", "transformer", "boe")


class Params(Section):
    """The whole of params.yaml, validated at once: unknown keys and out-of-range values are
    errors, all reported together as `section.field: what was expected (got X)`, with the
    closest valid key suggested for a typo (exit code 2)."""

    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = Field(
        default=42,
        description="Seed of the split, initializations, batch order, augmentation and "
        "calibration sample.",
    )
    threads: Annotated[int, Field(ge=1, le=256)] = Field(
        default=1,
        description="torch intra-op threads. With `reproducible: false` the thread count changes "
        "floating-point reduction order, so it is part of what makes a run bit-reproducible.",
    )
    # core.kernels pins the kernels
    reproducible: StrictBool = Field(
        default=True,
        description="Pin torch's CPU kernels (AVX2 level, MKL's reproducible GEMM, no oneDNN) so "
        "any x86-64 CPU with AVX2 trains the same weights at any `threads`; false: this CPU's "
        "fastest kernels, weights that differ between CPUs.",
    )
    # strict: `true` is not a count; no stage tracks it, since the weights do not depend on it
    loader_workers: Annotated[int, Field(ge=0, le=64, strict=True)] = Field(
        default=0,
        description="DataLoader processes that read training batches while the model trains (0: "
        "the training process reads them). Worth it for lazily read data bigger than memory and "
        "for GPU training; the weights do not depend on it.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="Where training and the teacher's logits run: `auto` (CUDA when torch sees a "
        "GPU), `cpu` or `cuda` (exit 2 without one). Export, quantization and the benchmark stay "
        "on the CPU.",
    )
    precision: Literal["fp32", "bf16"] = Field(
        default="fp32",
        description="`fp32`, or `bf16` autocast of the forward passes (loss and optimizer stay "
        "fp32; conv families channels-last on CUDA).",
    )
    paths: Paths = Field(
        default=Paths(),
        description="Every output path, written once; dvc.yaml templates them "
        "(`${paths.teacher}`).",
    )
    data: Data = Field(
        default=Data(),
        description="The data set, how it is read and how it is split.",
    )
    teacher: TeacherSpec = Field(
        description="The network the student learns from: trained by train_teacher, or "
        "imported from any framework as ONNX.",
    )
    student: ModelSpec = Field(
        description="The student the teacher distills into; it must be smaller than the teacher "
        "(checked before any stage runs, exit 2 naming both parameter counts).",
    )
    distill: Distill = Field(
        default=Distill(),
        description="Knowledge distillation: who teaches and the loss.",
    )
    prune: Prune = Field(
        default=Prune(),
        description="Structured channel pruning of the student, each step fine-tuned with KD.",
    )
    quantize: Quantize = Field(
        default=Quantize(),
        description="Post-training quantization with onnxruntime, its accuracy guard and "
        "quantization-aware fine-tuning.",
    )
    export: Export = Field(
        default=Export(),
        description="ONNX export, parity with torch, and which variant dist/ ships.",
    )
    gates: Gates = Field(
        default=Gates(),
        description="Thresholds a model must pass to be registered in MLflow.",
    )
    benchmark: Benchmark = Field(
        default=Benchmark(),
        description="How every variant is timed: onnxruntime on the CPU, the variants "
        "interleaved call by call.",
    )
    tracking: Tracking = Field(
        default=Tracking(),
        description="MLflow experiment, registered model and promotion rule.",
    )

    @model_validator(mode="after")
    def _sizes(self) -> Params:
        # a null width / depth is the family's default for the role: resolved here, once, so
        # that every reader (the stages, MLflow's params, settings.json) sees the numbers used;
        for role in MODEL_SIZES:
            spec = getattr(self, role)
            if spec.width is None or spec.depth is None:
                object.__setattr__(self, role, spec.sized(role))
        # and `quantize.mode: auto` by the data, likewise
        object.__setattr__(self, "quantize", self.quantize.resolved(self.data.source == "text"))
        return self

    @model_validator(mode="after")
    def _int4_needs_matmuls(self) -> Params:
        # checked against onnxruntime 1.32: its 4-bit CPU kernels are MatMulNBits (MatMul
        # weights) and GatherBlockQuantized (embedding tables); a QInt4 QDQ conv net loads but
        # runs every Conv as DequantizeLinear -> FP32 Conv, 3x slower than INT8
        # (docs/quantization.md, "4-bit weights")
        if self.quantize.bits == 4 and self.student.arch not in INT4_ARCHS:
            raise ValueError(
                f"quantize.bits: 4 needs student.arch {' / '.join(INT4_ARCHS)} (got student.arch "
                f"{self.student.arch!r}): onnxruntime packs 4-bit weights only into MatMulNBits "
                "(MatMul / Linear layers) and GatherBlockQuantized (embeddings); it has no 4-bit "
                "Conv kernel, so a conv net's weights would stay FP32 or run dequantized, slower "
                "than INT8. Use quantize.bits: 8, or one of those student families"
            )
        return self

    @model_validator(mode="after")
    def _text_teacher_has_its_tokenizer(self) -> Params:
        # an imported text teacher knows its own vocabulary only: ids from another tokenizer
        # would run without error and teach noise
        text, onnx = self.data.source == "text", self.teacher.source == "onnx"
        if text and onnx and self.teacher.tokenizer is None:
            raise ValueError(
                "teacher.tokenizer: the tokenizer.json the ONNX teacher was trained with, for "
                "text data (got None); the student reads it too with data.student_vocab: shared"
            )
        if text and onnx and self.teacher.input != "prepared":
            raise ValueError(
                "teacher.input: prepared for text data (got 'raw'): token ids are read as "
                "they are, never standardized"
            )
        if text and onnx and self.data.tokenizer is not None:
            raise ValueError(
                "data.tokenizer: null with an imported teacher (got "
                f"{self.data.tokenizer!r}): the teacher's tokens come from teacher.tokenizer, "
                "and the student reads them (data.student_vocab: shared) or a vocabulary of "
                "its own (own)"
            )
        if not text and self.teacher.tokenizer is not None:
            raise ValueError(
                f"teacher.tokenizer: only for data.source text (got data.source "
                f"{self.data.source!r})"
            )
        return self

    @model_validator(mode="after")
    def _online_needs_a_trainable_teacher(self) -> Params:
        # online distillation trains a teacher-architecture network from scratch beside the
        # student; an imported ONNX teacher has no architecture or weights slimline can train
        if self.distill.mode == "online" and self.teacher.source == "onnx":
            raise ValueError(
                "distill.mode: online needs teacher.source train (got teacher.source 'onnx'): "
                "online distillation trains a network of the teacher's architecture together "
                "with the student from scratch, and an imported ONNX teacher cannot be "
                "trained. Use distill.mode: offline (KD from the ONNX teacher) or self, or "
                "teacher.source: train"
            )
        return self

    def digest(self) -> str:
        """sha256 of the validated params, so artifacts can name what made them."""
        return hashlib.sha256(
            json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        ).hexdigest()
