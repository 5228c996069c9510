"""Typed schema of params.yaml: every section and field, its bounds and the cross-field
rules, validated once (`loading.load_params` is the only way anything reads params)."""

from __future__ import annotations

import hashlib
import json
from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

# What an output path may not be or live in: the project's own files and source folders.
PROJECT_FILES = frozenset(
    {".git", ".dvc", ".dvcignore", ".gitignore", "dvc.yaml", "dvc.lock", "params.yaml",
     "pyproject.toml", "Makefile", "README.md", "prefect.yaml", "src", "stages", "flows",
     "tests", "docker", "docs", "bench"}
)  # fmt: skip

Fraction = Annotated[float, Field(gt=0, lt=1)]

Probability = Annotated[float, Field(ge=0, le=1)]

# How an npz's `x` is read, by its ndim (with N): a short form gains a channel axis, so the
# prepared x is (N, F), (N, C, L) or (N, C, H, W). `auto` is (N, F) tabular or images.
LAYOUT_SHAPES = {
    "tabular": {2: "(N, F)"},
    "signal": {2: "(N, L)", 3: "(N, C, L)"},
    "image": {3: "(N, H, W)", 4: "(N, C, H, W)"},
    "auto": {2: "(N, F)", 3: "(N, H, W)", 4: "(N, C, H, W)"},
}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Paths(_Section):
    """Every output path, written once: dvc.yaml templates these (`${paths.teacher}`)."""

    prepared: str = "data/prepared"
    data_report: str = "reports/data_validation.json"
    teacher: str = "models/teacher.pt"
    teacher_onnx: str = "models/onnx/teacher.onnx"
    teacher_metrics: str = "metrics/teacher.json"
    teacher_curve: str = "plots/teacher_curve.csv"
    student: str = "models/student.pt"
    student_onnx: str = "models/onnx/student.onnx"
    student_metrics: str = "metrics/student.json"
    student_curve: str = "plots/student_curve.csv"
    pruned: str = "models/pruned.pt"
    pruned_onnx: str = "models/onnx/pruned.onnx"
    pruned_metrics: str = "metrics/pruned.json"
    pruned_curve: str = "plots/pruned_curve.csv"
    quantized_onnx: str = "models/onnx/pruned_int8.onnx"
    quantize_metrics: str = "metrics/quantize.json"
    dist: str = "dist"
    export_metrics: str = "metrics/export.json"
    gates_report: str = "reports/gates.json"
    benchmark_report: str = "reports/benchmark.json"
    benchmark_table: str = "reports/benchmark.md"
    tradeoff_plot: str = "plots/tradeoff.png"
    confusion_plot: str = "plots/confusion.png"

    @model_validator(mode="after")
    def _inside_project(self) -> Paths:
        # Outputs are deleted and rewritten by DVC: a path that escapes the project, or names
        # one of its own files (params.yaml, src/...), could make a stage overwrite a user's files.
        bad = []
        for name, value in self:
            parts = PurePosixPath(value).parts
            if PurePosixPath(value).is_absolute() or ".." in parts:
                bad.append(f"paths.{name}: a relative path inside the project (got {value!r})")
            elif not parts or parts[0] in PROJECT_FILES:
                bad.append(
                    f"paths.{name}: an output path of its own, not the project root or one of its "
                    f"files and source folders (got {value!r})"
                )
        if bad:
            raise ValueError("\n".join(bad))
        return self


class Data(_Section):
    source: Literal["digits", "npz", "image-folder", "table"] = "digits"
    path: str | None = None
    # table: the label column of the CSV / Parquet file; every other column is a feature
    target: str | None = None
    val_fraction: Fraction = 0.15
    test_fraction: Fraction = 0.2
    image_size: Annotated[int, Field(ge=8, le=512)] = 8
    min_per_class: Annotated[int, Field(ge=1)] = 2
    # how an npz's x is read (LAYOUT_SHAPES); digits and image folders hold images, tables rows
    layout: Literal["auto", "tabular", "signal", "image"] = "auto"
    # train-time views of image data (compression.augment): random crop with 4 pixels of
    # padding, and a left-right flip for classes that allow it; never val / test
    augment: Literal["none", "crop", "crop_flip"] = "none"

    @model_validator(mode="after")
    def _rules(self) -> Data:
        problems = []
        if self.val_fraction + self.test_fraction >= 0.9:
            problems.append(
                "data.val_fraction: val_fraction + test_fraction below 0.9, leaving a train "
                f"split (got {self.val_fraction} + {self.test_fraction})"
            )
        if self.source != "digits" and not self.path:
            problems.append(f"data.path: a file or folder for source {self.source!r} (got None)")
        if self.source == "table" and not self.target:
            problems.append(
                f"data.target: the table's label column, for source 'table' (got {self.target!r})"
            )
        if self.source != "table" and self.target is not None:
            problems.append(
                f"data.target: only for source 'table'; leave it null for source {self.source!r} "
                f"(got {self.target!r})"
            )
        fixed = {"digits": "image", "image-folder": "image", "table": "tabular"}.get(self.source)
        if fixed and self.layout not in ("auto", fixed):
            problems.append(
                f"data.layout: auto or {fixed} for source {self.source!r} (got {self.layout!r})"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self


# (width, depth) that a null `width` / `depth` stands for, per role and family: each family at
# its own scale, so that switching `arch` alone (mlp for tables) still gives a real teacher and
# a student of at most a tenth of it. resnet / cnn are the digits run's sizes (1,086,370 and
# 94,186 parameters); an mlp teacher is 512 x 3 (~0.5M + 512 per feature), its student 32 x 2.
MODEL_SIZES: dict[str, dict[str, tuple[int, int]]] = {
    "teacher": {"mlp": (512, 3), "cnn": (128, 3), "resnet": (40, 2)},
    "student": {"mlp": (32, 2), "cnn": (32, 3), "resnet": (16, 1)},
}


class ModelSpec(_Section):
    """One network and how it is trained; shared by the teacher and the student."""

    arch: Literal["mlp", "cnn", "resnet"]
    # mlp: hidden units; cnn: channels of the first conv (doubled per layer);
    # resnet: channels of the first stage (doubled per stage). null: the family's default
    # for the role (MODEL_SIZES), which `Params` fills in.
    width: Annotated[int, Field(ge=2, le=1024)] | None = None
    # mlp: hidden layers; cnn: conv layers; resnet: residual blocks per stage (3 stages).
    depth: Annotated[int, Field(ge=1, le=8)] | None = None
    epochs: Annotated[int, Field(ge=1, le=1000)]
    lr: Annotated[float, Field(gt=0, le=1)]
    batch_size: Annotated[int, Field(ge=1, le=4096)]
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 1e-4

    def size(self, role: str) -> tuple[int, int]:
        """(width, depth), a null one being the family's default for `role` (teacher or
        student; a student's for any other name)."""
        width, depth = MODEL_SIZES.get(role, MODEL_SIZES["student"])[self.arch]
        return (
            width if self.width is None else self.width,
            depth if self.depth is None else self.depth,
        )

    def sized(self, role: str) -> ModelSpec:
        """This spec with its null width / depth replaced by the role's defaults."""
        width, depth = self.size(role)
        return self.model_copy(update={"width": width, "depth": depth})


class TeacherSpec(ModelSpec):
    """The teacher: trained here (`source: train`) or a pretrained ONNX classifier (`onnx`),
    which keeps the training keys' defaults since nothing trains it."""

    source: Literal["train", "onnx"] = "train"
    # source onnx: the ONNX file. The default folder is the train_teacher stage's dependency
    # (dvc.yaml), so that a teacher dropped there or replaced reruns the chain.
    path: str = "data/pretrained"
    # what the ONNX teacher reads: the prepared (standardized) samples or the raw values
    input: Literal["prepared", "raw"] = "prepared"
    arch: Literal["mlp", "cnn", "resnet"] = "resnet"
    epochs: Annotated[int, Field(ge=1, le=1000)] = 15
    lr: Annotated[float, Field(gt=0, le=1)] = 0.003
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 64

    @model_validator(mode="after")
    def _rules(self) -> TeacherSpec:
        if self.source == "onnx" and not self.path.endswith(".onnx"):
            raise ValueError(f"teacher.path: an .onnx file for source 'onnx' (got {self.path!r})")
        if self.source == "train" and self.input != "prepared":
            raise ValueError(
                "teacher.input: only for source 'onnx'; a trained teacher reads the prepared "
                f"data (got {self.input!r})"
            )
        return self


class Distill(_Section):
    # who teaches the student (compression.distill_modes): offline, the frozen teacher of
    # train_teacher; online, a network of the teacher's architecture trained together with it
    # from scratch (deep mutual learning); self, earlier generations of the student itself
    # (born-again networks)
    mode: Literal["offline", "online", "self"] = "offline"
    temperature: Annotated[float, Field(gt=0, le=100)] = 4.0
    alpha: Probability = 0.7
    # self: students taught after generation 0 (the student from labels); each is one more
    # full student training, so the count is bounded
    generations: Annotated[int, Field(ge=1, le=5)] = 2


class Prune(_Section):
    ratio: Annotated[float, Field(ge=0, lt=1)] = 0.4
    steps: Annotated[int, Field(ge=1, le=20)] = 2
    importance: Literal["magnitude", "taylor"] = "magnitude"
    round_to: Annotated[int, Field(ge=1, le=64)] = 4
    finetune_epochs: Annotated[int, Field(ge=1, le=100)] = 3
    lr: Annotated[float, Field(gt=0, le=1)] = 1e-3


class Quantize(_Section):
    mode: Literal["static", "dynamic"] = "static"
    calibration_samples: Annotated[int, Field(ge=0, le=100_000)] = 256
    calibration_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    per_channel: bool = True
    max_accuracy_drop: Probability = 0.01
    max_excluded_nodes: Annotated[int, Field(ge=0, le=1000)] = 8
    # 8: INT8 (`mode`); 4: block-wise INT4 weight-only (onnxruntime MatMulNBits), mlp only
    bits: Literal[8, 4] = 8
    # quantization-aware fine-tuning (static INT8): auto when PTQ with its fallback stays out
    # of max_accuracy_drop; always: both, keep the one within bound and smaller; never: PTQ
    qat: Literal["auto", "never", "always"] = "auto"
    # the CPUs the INT8 model computes exactly on (compression.int8_target): portable, every
    # x86-64 CPU (U8U8: uint8 weights); native, this machine's best format (U8S8 with
    # 8-bit weights when it has VNNI or AMX, which the model then needs wherever it runs)
    target: Literal["portable", "native"] = "portable"

    @model_validator(mode="after")
    def _rules(self) -> Quantize:
        if self.mode == "static" and self.calibration_samples < 1:
            raise ValueError(
                "quantize.calibration_samples: static quantization needs calibration_samples "
                f"> 0; or set mode: dynamic (got {self.calibration_samples})"
            )
        return self


class Export(_Section):
    opset: Annotated[int, Field(ge=18, le=23)] = 20
    parity_atol: Annotated[float, Field(gt=0, le=1)] = 1e-4
    parity_samples: Annotated[int, Field(ge=1, le=10_000)] = 128
    # which model dist/ ships, among the pruned FP32 and the quantized one that pass every
    # gate: the smallest, the fastest at batch 1 (timed with the benchmark settings), or the
    # most accurate. size by default: at slimline's sizes INT8 buys size more than speed
    objective: Literal["size", "latency", "accuracy"] = "size"


class Gates(_Section):
    min_accuracy: Probability = 0.95
    max_accuracy_drop: Probability = 0.01
    min_agreement: Probability = 0.98
    max_size_bytes: Annotated[int, Field(ge=1)] = 100_000
    # teacher FP32 ONNX size / final INT8 size
    min_compression: Annotated[float, Field(ge=1)] = 50.0
    # batch-1 latency of the teacher / of the final model (from the benchmark)
    min_speedup: Annotated[float, Field(gt=0)] = 5.0
    # what the accuracy gates (min_accuracy, max_accuracy_drop, min_agreement) are decided on:
    # the measured value, or the 95% interval's far end (the whole interval must clear)
    decide: Literal["estimate", "bound"] = "estimate"


class Benchmark(_Section):
    threads: Annotated[int, Field(ge=1, le=256)] = 1
    warmup: Annotated[int, Field(ge=0, le=10_000)] = 50
    runs: Annotated[int, Field(ge=5, le=100_000)] = 500
    throughput_batch: Annotated[int, Field(ge=1, le=4096)] = 64
    throughput_runs: Annotated[int, Field(ge=1, le=10_000)] = 30


class Tracking(_Section):
    experiment: Annotated[str, Field(min_length=1)] = "slimline"
    model_name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")] = "slimline"
    primary_metric: Literal["accuracy", "agreement"] = "accuracy"


class Params(_Section):
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 42
    # torch intra-op threads: with oneDNN (reproducible: false) the thread count changes float
    # reduction order, so it is part of what makes a run bit-reproducible.
    threads: Annotated[int, Field(ge=1, le=256)] = 1
    # pin torch's CPU kernels to their AVX2 level and train convolutions through MKL's
    # reproducible GEMM instead of oneDNN (core.kernels), so that any x86-64 CPU with AVX2
    # gives the same weights, whatever its instruction sets and `threads`. false: the
    # fastest kernels for this CPU, with weights that differ from one CPU to another.
    reproducible: StrictBool = True
    # processes that read training batches (torch DataLoader workers) while the model trains;
    # 0 reads them in the training process. For lazily read data bigger than memory and for
    # GPU training; the weights do not depend on it, so no stage tracks it. Strict: `true` is
    # not a count.
    loader_workers: Annotated[int, Field(ge=0, le=64, strict=True)] = 0
    # where training and teacher logits run (auto: cuda when torch sees one); export,
    # quantization and the benchmark stay on the CPU with onnxruntime
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast of the forward passes
    paths: Paths = Paths()
    data: Data = Data()
    teacher: TeacherSpec
    student: ModelSpec
    distill: Distill = Distill()
    prune: Prune = Prune()
    quantize: Quantize = Quantize()
    export: Export = Export()
    gates: Gates = Gates()
    benchmark: Benchmark = Benchmark()
    tracking: Tracking = Tracking()

    @model_validator(mode="after")
    def _sizes(self) -> Params:
        # a null width / depth is the family's default for the role: resolved here, once, so
        # that every reader (the stages, MLflow's params, settings.json) sees the numbers used
        for role in MODEL_SIZES:
            spec = getattr(self, role)
            if spec.width is None or spec.depth is None:
                object.__setattr__(self, role, spec.sized(role))
        return self

    @model_validator(mode="after")
    def _int4_needs_mlp(self) -> Params:
        # checked against onnxruntime 1.32: its 4-bit CPU kernels are MatMulNBits (MatMul
        # weights) and GatherBlockQuantized; a QInt4 QDQ conv net loads but runs every Conv as
        # DequantizeLinear -> FP32 Conv, 3x slower than INT8 (README, "4-bit weights")
        if self.quantize.bits == 4 and self.student.arch != "mlp":
            raise ValueError(
                f"quantize.bits: 4 needs student.arch mlp (got student.arch "
                f"{self.student.arch!r}): onnxruntime packs 4-bit weights only into MatMulNBits "
                "(MatMul / Linear layers); it has no 4-bit Conv kernel, so a conv net's weights "
                "would stay FP32 or run dequantized, slower than INT8. Use quantize.bits: 8, "
                "or student.arch: mlp"
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
