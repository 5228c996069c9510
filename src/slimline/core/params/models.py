"""params.yaml's `teacher`, `student`, `distill` and `prune`: the models and their training."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from slimline.core.params.section import Probability, Section

# (width, depth) that a null `width` / `depth` stands for, per role and family: each family at
# its own scale, so that switching `arch` alone (mlp for tables) still gives a real teacher and
# a student of at most a tenth of it. resnet / cnn are the digits run's sizes (1,086,370 and
# 94,186 parameters); an mlp teacher is 512 x 3 (~0.5M + 512 per feature), its student 32 x 2.
# Text families (width: embedding size; depth: blocks, conv kernels) are dominated by their
# embedding table (vocab x width), so the student's width is what keeps it under a tenth.
MODEL_SIZES: dict[str, dict[str, tuple[int, int]]] = {
    "teacher": {"mlp": (512, 3), "cnn": (128, 3), "resnet": (40, 2),
                "transformer": (128, 2), "textcnn": (128, 3), "boe": (128, 1)},
    "student": {"mlp": (32, 2), "cnn": (32, 3), "resnet": (16, 1),
                "transformer": (48, 1), "textcnn": (12, 2), "boe": (12, 1)},
}  # fmt: skip
TEXT_ARCHS = ("transformer", "textcnn", "boe")


class ModelSpec(Section):
    """One network and how it is trained, for the teacher and the student alike. Tabular
    (N, F) data needs `arch: mlp`."""

    arch: Literal["mlp", "cnn", "resnet", "transformer", "textcnn", "boe"] = Field(
        description="Model family: `mlp` (tabular data needs it), `cnn` or `resnet` (2-D for "
        "images, 1-D for signals); for text, `transformer` (pre-norm, [CLS] pooling), `textcnn` "
        "or `boe` (a bag of embeddings).",
    )
    # a null width / depth is filled in by `Params` from MODEL_SIZES
    width: Annotated[int, Field(ge=2, le=1024)] | None = Field(
        default=None,
        description="mlp: hidden units; cnn: channels of the first conv (doubled per layer); "
        "resnet: channels of the first stage (doubled per stage); text families: the embedding "
        "size (transformer: 4 heads from 64 on, else 2; FFN 4x; textcnn: channels per kernel; "
        "boe: hidden units). null: the family's default for the role.",
    )
    depth: Annotated[int, Field(ge=1, le=8)] | None = Field(
        default=None,
        description="mlp: hidden layers; cnn: conv layers; resnet: residual blocks per stage (3 "
        "stages); transformer: blocks; textcnn: kernel sizes (3, 4, 5, ...); boe: 1. null: the "
        "family's default for the role.",
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

    @model_validator(mode="after")
    def _boe_depth(self) -> ModelSpec:
        if self.arch == "boe" and self.depth not in (None, 1):
            raise ValueError(f"depth: 1 or null for arch boe (got {self.depth})")
        return self

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
    tokenizer: str | None = Field(
        default=None,
        description="`source: onnx` on text data (required there): the `tokenizer.json` the "
        "teacher was trained with. Prepare tokenizes every text with it, so the teacher reads "
        "its own ids while the student reads a vocabulary of its own (`data.student_vocab: "
        "own`) or these same ids (`shared`).",
    )
    arch: Literal["mlp", "cnn", "resnet", "transformer", "textcnn", "boe"] = Field(
        default="resnet",
        description="The teacher's family (`source: train`): `mlp`, `cnn` or `resnet`; for text "
        "`transformer`, `textcnn` or `boe`.",
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
        if self.source == "train" and self.tokenizer is not None:
            raise ValueError(
                "teacher.tokenizer: only for source 'onnx'; a teacher trained here reads "
                f"data.tokenizer or the vocabulary prepare makes (got {self.tokenizer!r})"
            )
        if self.source == "train" and self.input != "prepared":
            raise ValueError(
                "teacher.input: only for source 'onnx'; a trained teacher reads the prepared "
                f"data (got {self.input!r})"
            )
        return self


class Distill(Section):
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


class Prune(Section):
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
