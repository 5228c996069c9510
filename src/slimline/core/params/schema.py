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
    """Checked together: each path is relative, inside the project, and neither the project
    root nor one of its own files and source folders (params.yaml, dvc.yaml, src/, tests/,
    docs/, ...), which a stage would overwrite."""

    prepared: str = Field(
        default="data/prepared",
        description="Folder of the prepared splits (train.npz, val.npz, test.npz), standardized "
        "with the train split's statistics.",
    )
    data_report: str = Field(
        default="reports/data_validation.json",
        description="The prepare stage's data report: every Great Expectations check and its "
        "result, the learnability probe, the data's sha256.",
    )
    teacher: str = Field(
        default="models/teacher.pt",
        description="The teacher checkpoint: channel configuration and weights, loadable with "
        "`torch.load(weights_only=True)`.",
    )
    teacher_onnx: str = Field(
        default="models/onnx/teacher.onnx",
        description="The teacher as one FP32 ONNX file (an imported ONNX teacher is kept here, "
        "self-contained).",
    )
    teacher_metrics: str = Field(
        default="metrics/teacher.json",
        description="The teacher's metrics: test accuracy, best epoch, device, parameter count.",
    )
    teacher_curve: str = Field(
        default="plots/teacher_curve.csv",
        description="The teacher's training curve, one row per epoch.",
    )
    student: str = Field(
        default="models/student.pt",
        description="The distilled student's checkpoint.",
    )
    student_onnx: str = Field(
        default="models/onnx/student.onnx",
        description="The distilled student as FP32 ONNX.",
    )
    student_metrics: str = Field(
        default="metrics/student.json",
        description="The student's metrics, with `kd_gain` against the same student trained from "
        "labels alone.",
    )
    student_curve: str = Field(
        default="plots/student_curve.csv",
        description="The student's training curve, one row per epoch.",
    )
    pruned: str = Field(
        default="models/pruned.pt",
        description="The pruned, fine-tuned student's checkpoint.",
    )
    pruned_onnx: str = Field(
        default="models/onnx/pruned.onnx",
        description="The pruned student as FP32 ONNX: what the quantize stage quantizes.",
    )
    pruned_metrics: str = Field(
        default="metrics/pruned.json",
        description="The prune stage's metrics, one record per pruning step.",
    )
    pruned_curve: str = Field(
        default="plots/pruned_curve.csv",
        description="The pruning fine-tunes' curve, one row per epoch.",
    )
    quantized_onnx: str = Field(
        default="models/onnx/pruned_int8.onnx",
        description="The quantized model: INT8 QDQ, or 4-bit weights with `quantize.bits: 4`.",
    )
    quantize_metrics: str = Field(
        default="metrics/quantize.json",
        description="The quantize stage's metrics: accuracy and size against FP32, the nodes kept "
        "in FP32, the INT8 format.",
    )
    dist: str = Field(
        default="dist",
        description="The deployable bundle's folder: model.onnx, model_card.md, settings.json.",
    )
    export_metrics: str = Field(
        default="metrics/export.json",
        description="The export stage's metrics: which variant ships, the objective and the "
        "reason.",
    )
    gates_report: str = Field(
        default="reports/gates.json",
        description="Every gate validate judged: value, threshold, margin, 95% interval, verdict.",
    )
    benchmark_report: str = Field(
        default="reports/benchmark.json",
        description="Latency, throughput, size and accuracy of every variant, and the speed-up "
        "gate.",
    )
    benchmark_table: str = Field(
        default="reports/benchmark.md",
        description="The benchmark as a markdown table, with ratios to the teacher.",
    )
    tradeoff_plot: str = Field(
        default="plots/tradeoff.png",
        description="Accuracy against batch-1 latency and size, one point per variant.",
    )
    confusion_plot: str = Field(
        default="plots/confusion.png",
        description="The final model's confusion matrix on the test split.",
    )

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
    """Checked together: `val_fraction + test_fraction` below 0.9; `path` for every source
    but digits; `target` for `table` only, and required there; `layout` auto or image for
    digits and image folders, auto or tabular for tables; and, when params load, the shape of
    an npz's `x` against `layout`."""

    source: Literal["digits", "npz", "image-folder", "table"] = Field(
        default="digits",
        description="Where the samples come from: scikit-learn's bundled 8x8 `digits` (nothing "
        "downloaded), an `npz` file (`x`, `y`, optional `class_names`), an `image-folder` "
        "(`root/<class>/*.png|jpg|jpeg`) or a CSV / Parquet `table`.",
    )
    path: str | None = Field(
        default=None,
        description="The npz file, image folder or table; required for every source but digits. A "
        "dependency of prepare, so new data reruns the chain (params.yaml sets `data/raw`).",
    )
    target: str | None = Field(
        default=None,
        description="`table` only (and required there): the label column; every other column is a "
        "numeric feature.",
    )
    val_fraction: Fraction = Field(
        default=0.15,
        description="Share of the samples in the validation split (stratified; val + test below "
        "0.9).",
    )
    test_fraction: Fraction = Field(
        default=0.2,
        description="Share of the samples in the test split (stratified; val + test below 0.9).",
    )
    image_size: Annotated[int, Field(ge=8, le=512)] = Field(
        default=8,
        description="Side in pixels that image-folder images are resized to (square).",
    )
    min_per_class: Annotated[int, Field(ge=1)] = Field(
        default=2,
        description="Samples every class needs in each of train, val and test; fewer stops "
        "prepare with exit 2, naming the class.",
    )
    # LAYOUT_SHAPES says which shapes each layout reads
    layout: Literal["auto", "tabular", "signal", "image"] = Field(
        default="auto",
        description="How an npz's `x` is read: `auto` takes (N, F) as tabular and 3-D / 4-D as "
        "images; `tabular`, `signal` ((N, L) or (N, C, L), into 1-D conv families) or `image` "
        "force one reading (docs/data.md). digits and image folders take auto or image, tables "
        "auto or tabular.",
    )
    augment: Literal["none", "crop", "crop_flip"] = Field(
        default="none",
        description="Train-time views of image data: `crop` (random crop with 4 pixels of zero "
        "padding), `crop_flip` (also mirrored left-right half of the time). Val and test are "
        "never augmented; the teacher's logits are then computed per batch.",
    )

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
    """One network and how it is trained, for the teacher and the student alike. Tabular
    (N, F) data needs `arch: mlp`."""

    arch: Literal["mlp", "cnn", "resnet"] = Field(
        description="Model family: `mlp` (tabular data needs it), `cnn` or `resnet` (2-D for "
        "images, 1-D for signals).",
    )
    # a null width / depth is filled in by `Params` from MODEL_SIZES
    width: Annotated[int, Field(ge=2, le=1024)] | None = Field(
        default=None,
        description="mlp: hidden units; cnn: channels of the first conv (doubled per layer); "
        "resnet: channels of the first stage (doubled per stage). null: the family's default for "
        "the role.",
    )
    depth: Annotated[int, Field(ge=1, le=8)] | None = Field(
        default=None,
        description="mlp: hidden layers; cnn: conv layers; resnet: residual blocks per stage (3 "
        "stages). null: the family's default for the role.",
    )
    epochs: Annotated[int, Field(ge=1, le=1000)] = Field(
        description="Training epochs; the best epoch by validation accuracy is kept.",
    )
    lr: Annotated[float, Field(gt=0, le=1)] = Field(
        description="Peak learning rate of AdamW's one-cycle schedule.",
    )
    batch_size: Annotated[int, Field(ge=1, le=4096)] = Field(
        description="Training batch size; lower it when a GPU runs out of memory.",
    )
    weight_decay: Annotated[float, Field(ge=0, le=1)] = Field(
        default=1e-4,
        description="AdamW weight decay (not applied to biases and norm layers).",
    )

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
    which keeps the training keys' defaults since nothing trains it. Checked together: with
    `source: onnx`, `path` names an .onnx file; `input` is for `source: onnx` only."""

    source: Literal["train", "onnx"] = Field(
        default="train",
        description="`train`: slimline trains the teacher from `arch`, `width` and `depth`; "
        "`onnx`: a pretrained ONNX classifier from any framework at `path`, whose logits teach "
        "the student.",
    )
    path: str = Field(
        default="data/pretrained",
        description="`source: onnx`: the .onnx file. The default folder is train_teacher's DVC "
        "dependency, so a teacher dropped there reruns the chain.",
    )
    input: Literal["prepared", "raw"] = Field(
        default="prepared",
        description="`source: onnx`: what the ONNX teacher reads, slimline's `prepared` "
        "(standardized) samples or the `raw` values.",
    )
    arch: Literal["mlp", "cnn", "resnet"] = Field(
        default="resnet",
        description="The teacher's family (`source: train`): `mlp`, `cnn` or `resnet`.",
    )
    epochs: Annotated[int, Field(ge=1, le=1000)] = Field(
        default=15,
        description="Teacher training epochs; the best epoch by validation accuracy is kept.",
    )
    lr: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.003,
        description="Teacher's peak learning rate (AdamW, one-cycle schedule).",
    )
    batch_size: Annotated[int, Field(ge=1, le=4096)] = Field(
        default=64,
        description="Teacher's training batch size.",
    )

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
    """Checked together: `mode: online` needs `teacher.source: train` (an imported ONNX
    teacher cannot be trained beside the student)."""

    # compression.training.distillation runs the three modes
    mode: Literal["offline", "online", "self"] = Field(
        default="offline",
        description="Who teaches the student: `offline`, the frozen teacher of train_teacher; "
        "`online`, a network of the teacher's architecture trained beside it from scratch (deep "
        "mutual learning; not with `teacher.source: onnx`); `self`, earlier generations of the "
        "student (born-again networks).",
    )
    temperature: Annotated[float, Field(gt=0, le=100)] = Field(
        default=4.0,
        description="Softmax temperature T of the KD loss `alpha*T^2*KL(teacher/T || student/T) + "
        "(1-alpha)*CE`.",
    )
    alpha: Probability = Field(
        default=0.7,
        description="Weight of the soft-target (KL) term against the labels' cross-entropy.",
    )
    # each generation is one more full student training, so the count is bounded
    generations: Annotated[int, Field(ge=1, le=5)] = Field(
        default=2,
        description="`mode: self` only: student generations taught after generation 0 (the "
        "labels-only student); each is one more full training.",
    )


class Prune(_Section):
    ratio: Annotated[float, Field(ge=0, lt=1)] = Field(
        default=0.4,
        description="Per-layer channel ratio removed (structured, torch-pruning); parameters fall "
        "roughly quadratically (0.5 leaves about a quarter). 0 prunes nothing.",
    )
    steps: Annotated[int, Field(ge=1, le=20)] = Field(
        default=2,
        description="Pruning steps to reach `ratio`, each followed by a KD fine-tune.",
    )
    importance: Literal["magnitude", "taylor"] = Field(
        default="magnitude",
        description="How channels are ranked: `magnitude` (L2 norm of the weights) or `taylor` "
        "(weight x gradient).",
    )
    round_to: Annotated[int, Field(ge=1, le=64)] = Field(
        default=4,
        description="Channel counts kept are rounded down to a multiple of this.",
    )
    finetune_epochs: Annotated[int, Field(ge=1, le=100)] = Field(
        default=3,
        description="KD fine-tune epochs after each pruning step.",
    )
    lr: Annotated[float, Field(gt=0, le=1)] = Field(
        default=1e-3,
        description="Learning rate of the fine-tunes after pruning (and of quantization-aware "
        "fine-tuning).",
    )


class Quantize(_Section):
    """Checked together: `mode: static` needs `calibration_samples` > 0;
    `bits: 4` needs `student.arch: mlp`; `qat: always` needs `mode: static` and `bits: 8`
    (the quantize stage stops with exit 2 otherwise)."""

    mode: Literal["static", "dynamic"] = Field(
        default="static",
        description="`static`: onnxruntime QDQ with calibrated activation ranges; `dynamic`: "
        "activations quantized at run time, no calibration.",
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
        "MatMulNBits), activations float, `student.arch: mlp` only.",
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

    @model_validator(mode="after")
    def _rules(self) -> Quantize:
        if self.mode == "static" and self.calibration_samples < 1:
            raise ValueError(
                "quantize.calibration_samples: static quantization needs calibration_samples "
                f"> 0; or set mode: dynamic (got {self.calibration_samples})"
            )
        return self


class Export(_Section):
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


class Gates(_Section):
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


class Benchmark(_Section):
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


class Tracking(_Section):
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


class Params(_Section):
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
        # DequantizeLinear -> FP32 Conv, 3x slower than INT8 (docs/quantization.md, "4-bit weights")
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
