"""Training on a CUDA GPU, where there is one (skipped elsewhere): the model comes back on the
CPU and exports like a CPU-trained one; bf16, per-batch KD on augmented batches and loader workers
with pinned memory run there."""

import numpy as np
import pytest
import torch

from slimline.compression.models.families import build_model
from slimline.compression.runtime.onnx_io import check_parity, export_onnx
from slimline.compression.training.augment import Augment
from slimline.compression.training.device import accelerator
from slimline.compression.training.fit import (
    fit,
    make_per_batch_kd_loss,
    predict_logits,
    seed_everything,
)
from slimline.compression.training.setup import Setup
from slimline.core.params.models import ModelSpec
from tests.support.data import make_split

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
SHAPE = (3, 16, 16)


def trained(precision: str, arch: str = "cnn", loss_fn=None, augment=None, workers=0):
    acc = accelerator("cuda", precision)  # type: ignore[arg-type]
    seed_everything(0, 1)
    model = build_model(ModelSpec(arch=arch, width=8, depth=2, epochs=3, lr=0.01,
                                  batch_size=64), SHAPE, 3)  # fmt: skip
    setup = Setup(make_split(512, SHAPE, seed=1), make_split(128, SHAPE, seed=2), epochs=3,
                  lr=0.01, batch_size=64, weight_decay=1e-4, seed=0, acc=acc, augment=augment,
                  loader_workers=workers)  # fmt: skip
    history = fit(model, setup, loss_fn=loss_fn)
    return model, history


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_training_returns_a_cpu_model_that_exports(tmp_path, precision):
    model, history = trained(precision)
    assert history.best.val_accuracy >= 0.8
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert all(p.is_contiguous() for p in model.parameters())  # channels-last undone
    export_onnx(model, SHAPE, tmp_path / "m.onnx")
    x = make_split(64, SHAPE, seed=3).x
    assert check_parity(model, tmp_path / "m.onnx", x, atol=1e-4) <= 1e-4
    gpu = accelerator("cuda", "fp32")
    on_gpu = predict_logits(gpu.prepare(model), x, acc=gpu)
    np.testing.assert_allclose(on_gpu, predict_logits(model.cpu(), x), atol=1e-3)


def test_per_batch_kd_on_augmented_batches_runs_on_the_gpu():
    teacher, _ = trained("fp32", arch="resnet")
    kd = make_per_batch_kd_loss(teacher, 4.0, 0.7, accelerator("cuda", "bf16"))
    student, history = trained("bf16", loss_fn=kd, augment=Augment(pad=2, flip=False))
    assert history.best.val_accuracy >= 0.6


def test_loader_workers_feed_pinned_batches_to_the_gpu_with_the_same_result():
    in_process, history = trained("fp32")
    with_workers, history_workers = trained("fp32", workers=2)
    # the same batches in the same order: on CUDA, reruns agree closely, not bit for bit
    assert abs(history.best.val_accuracy - history_workers.best.val_accuracy) <= 0.02
    for a, b in zip(in_process.state_dict().values(), with_workers.state_dict().values(),
                    strict=True):  # fmt: skip
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)
