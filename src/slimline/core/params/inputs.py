"""params.yaml's `paths` (every output, once) and `data` (the source and how it is split)."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import Field, model_validator

from slimline.core.params.section import Fraction, Section

# What an output path may not be or live in: the project's own files and source folders.
PROJECT_FILES = frozenset(
    {".git", ".dvc", ".dvcignore", ".gitignore", "dvc.yaml", "dvc.lock", "params.yaml",
     "pyproject.toml", "Makefile", "README.md", "prefect.yaml", "src", "stages", "flows",
     "tests", "docker", "docs", "bench"}
)  # fmt: skip

# How an npz's `x` is read, by its ndim (with N): a short form gains a channel axis, so the
# prepared x is (N, F), (N, C, L) or (N, C, H, W). `auto` is (N, F) tabular or images.
LAYOUT_SHAPES = {
    "tabular": {2: "(N, F)"},
    "signal": {2: "(N, L)", 3: "(N, C, L)"},
    "image": {3: "(N, H, W)", 4: "(N, C, H, W)"},
    "auto": {2: "(N, F)", 3: "(N, H, W)", 4: "(N, C, H, W)"},
}


class Paths(Section):
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


class Data(Section):
    """Checked together: `val_fraction + test_fraction` below 0.9; `path` for every source
    but digits; `target` for `table` and `text` only, and required for a table; `tokenizer`
    for `text` only; `layout` auto or image for digits and image folders, auto or tabular for
    tables, auto for text; and, when params load, the shape of an npz's `x` against `layout`."""

    source: Literal["digits", "npz", "image-folder", "table", "text"] = Field(
        default="digits",
        description="Where the samples come from: scikit-learn's bundled 8x8 `digits` (nothing "
        "downloaded), an `npz` file (`x`, `y`, optional `class_names`), an `image-folder` "
        "(`root/<class>/*.png|jpg|jpeg`), a CSV / Parquet `table`, or `text`: a CSV / Parquet "
        "file with a `data.text` column and a `data.target` column, or a folder "
        "`root/<class>/*.txt` (docs/data.md).",
    )
    path: str | None = Field(
        default=None,
        description="The npz file, image folder or table; required for every source but digits. A "
        "dependency of prepare, so new data reruns the chain (params.yaml sets `data/raw`).",
    )
    target: str | None = Field(
        default=None,
        description="The label column of a `table` (required; every other column is a numeric "
        "feature) or of a `text` file (required there; null for a text folder).",
    )
    text: str = Field(
        default="text",
        description="`text` files: the column that holds the texts.",
    )
    vocab_size: Annotated[int, Field(ge=100, le=262_144)] = Field(
        default=8000,
        description="`text`: at most this many tokens in the WordPiece vocabulary prepare makes "
        "from the train split (specials and every character included).",
    )
    max_len: Annotated[int, Field(ge=4, le=4096)] = Field(
        default=64,
        description="`text`: token ids per text, [CLS] and [SEP] included; longer texts are cut "
        "(the data report counts them), shorter ones padded.",
    )
    tokenizer: str | None = Field(
        default=None,
        description="`text`: a `tokenizer.json` of your own (a `tokenizers` file with a [PAD] "
        "token) for the teacher trained here (and the student, with `student_vocab: shared`), "
        "instead of the vocabulary prepare makes from the train split; null makes one.",
    )
    student_vocab: Literal["own", "shared"] = Field(
        default="own",
        description="`text`: `own`: the student reads a smaller WordPiece vocabulary of its own "
        "(`student_vocab_size`, made from the train split) while the teacher reads its own "
        "tokens; offline KD pairs their logits per text, and the embeddings the student saves "
        "buy it width (docs/data.md); `shared`: the student reads the teacher's tokens.",
    )
    student_vocab_size: Annotated[int, Field(ge=100, le=262_144)] = Field(
        default=2000,
        description="`text`, `student_vocab: own`: at most this many tokens (and never more than "
        "`vocab_size`) in the student's vocabulary.",
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
        if self.source not in ("table", "text") and self.target is not None:
            problems.append(
                f"data.target: only for sources 'table' and 'text'; leave it null for source "
                f"{self.source!r} (got {self.target!r})"
            )
        if self.source != "text" and self.tokenizer is not None:
            problems.append(
                f"data.tokenizer: only for source 'text'; leave it null for source "
                f"{self.source!r} (got {self.tokenizer!r})"
            )
        if self.source == "text" and (self.layout != "auto" or self.augment != "none"):
            problems.append(
                "data.layout: auto and data.augment: none for source 'text' (got "
                f"{self.layout!r}, {self.augment!r})"
            )
        fixed = {"digits": "image", "image-folder": "image", "table": "tabular"}.get(self.source)
        if fixed and self.layout not in ("auto", fixed):
            problems.append(
                f"data.layout: auto or {fixed} for source {self.source!r} (got {self.layout!r})"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self
