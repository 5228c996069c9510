"""What every model stage (teacher, student, pruned) writes, all or nothing.

An imported ONNX teacher (`import_teacher`) writes the same four outputs: the file as given,
a teacher checkpoint around it, its metrics and a curve of no epochs.

The checkpoint, the ONNX export (checked and compared with torch), the metrics and the curve
are written to temp files and renamed together only when all of them succeeded: a failed
parity check or a killed run leaves the previous model, metrics and curve in place.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from torch import nn

from slimline.compression.data.dataset import Split
from slimline.core.atomic import atomic_paths
from slimline.core.params.schema import Params

Role = Literal["teacher", "student", "pruned"]
# train samples an ONNX teacher is first run on: enough to tell probabilities from logits
PROBE_SAMPLES = 256


@dataclass(frozen=True)
class ModelOutputs:
    """Temp paths, renamed onto the stage's outputs when the `model_outputs` block succeeds."""

    checkpoint: Path
    onnx: Path
    metrics: Path
    curve: Path


@contextlib.contextmanager
def model_outputs(root: Path, params: Params, role: Role) -> Iterator[ModelOutputs]:
    paths = params.paths
    names = (role, f"{role}_onnx", f"{role}_metrics", f"{role}_curve")
    with atomic_paths([root / getattr(paths, n) for n in names]) as tmps:
        yield ModelOutputs(*tmps)


def finish_model(model: nn.Module, out: ModelOutputs, test: Split, params: Params) -> dict:
    """Save, export, check parity and measure `model`; returns the metrics it wrote."""
    from slimline.compression.models.checkpoints import save_checkpoint
    from slimline.compression.models.families import count_macs, count_params
    from slimline.compression.runtime.onnx_io import check_parity, export_onnx, parity_bound
    from slimline.compression.training.fit import loss_and_accuracy

    model.eval()
    save_checkpoint(out.checkpoint, model)
    export_onnx(model, test.input_shape, out.onnx, params.export.opset)
    sample = test.x[: params.export.parity_samples]
    diff = check_parity(model, out.onnx, sample, params.export.parity_atol)
    loss, accuracy = loss_and_accuracy(model, test)
    return {
        "accuracy": accuracy,
        "loss": loss,
        "params": count_params(model),
        "macs": count_macs(model, test.input_shape),
        "onnx_size_bytes": out.onnx.stat().st_size,
        "onnx_parity_bound": parity_bound(diff),
    }


def import_teacher(
    source: Path, out: ModelOutputs, train: Split, test: Split, params: Params
) -> dict:
    """Check the ONNX teacher at `source`, keep it as given (the baseline the benchmark and the
    gates measure) and as a teacher checkpoint; returns the metrics it wrote nothing of yet."""
    import hashlib

    from slimline.compression.models.onnx_teacher import TeacherFeed, inspect_teacher
    from slimline.compression.models.teacher import OnnxTeacher, save_teacher
    from slimline.compression.training.fit import loss_and_accuracy

    train, test = train.for_teacher(), test.for_teacher()  # text: its own tokenizer's ids
    stats = (train.mean, train.std, train.scale)
    probe = train.x[:PROBE_SAMPLES]
    interface, data = inspect_teacher(source, probe, train.num_classes, params.teacher.input,
                                      stats, train.vocab)  # fmt: skip
    out.onnx.write_bytes(data)  # one file, weights inside: its size is the teacher's size
    feed = TeacherFeed(interface, *stats)
    save_teacher(out.checkpoint, data, feed)
    loss, accuracy = loss_and_accuracy(OnnxTeacher(data, feed), test)
    return {
        "accuracy": accuracy,
        "loss": loss,
        "params": interface.params,
        "onnx_size_bytes": len(data),
        "source": "onnx",
        "source_path": params.teacher.path,
        "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),  # of the file as given
        "interface": interface.as_dict(),
        "notes": interface.notes(),
    }
