"""What `slimline run` checks before anything starts, cheaply and without importing torch.

A student that is not smaller than its teacher, and an ONNX teacher that cannot serve the data
(not ONNX, failing the checker, an input the samples do not fit, an output that is not one score
per class), are input errors (exit 2) found in a second, not after the data was prepared. The
stages check the same again on the prepared data, so `dvc repro` alone refuses them too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slimline.compression.models.sizing import check_sizes, source_shape
from slimline.core.params.schema import Params


def check_before_run(params: Params, root: Path) -> None:
    """Raise the `InputError` (exit 2) that the params and the data named would meet later."""
    shape = source_shape(params.data, root)
    teacher_params = None
    if params.teacher.source == "onnx":
        teacher_params = check_onnx_teacher(params, root, shape)
    if shape is not None:
        check_sizes(params, *shape, teacher_params)


def check_onnx_teacher(
    params: Params, root: Path, shape: tuple[tuple[int, ...], int] | None
) -> int:
    """The ONNX teacher's weight count, having checked the file and, where the data's sample
    shape is known exactly (not an image folder's channel count), run it on a zero batch."""
    from slimline.compression.data.tokenizer import encode, load_tokenizer, vocab_of
    from slimline.compression.models.onnx_teacher import inspect_teacher, load_checked, weight_count
    from slimline.core.params.layouts import resolve

    path = root / params.teacher.path
    if shape is None or params.data.source == "image-folder":
        return weight_count(load_checked(path))
    (sample, classes), channels = shape, shape[0][0]
    stats = (np.zeros(channels, np.float32), np.ones(channels, np.float32), 1.0)
    if params.data.source == "text":  # two sentences in the teacher's own tokens (ids are fed
        # as they are: the statistics go unused)
        tok = load_tokenizer(resolve(params.teacher.tokenizer or "", root), "teacher.tokenizer")
        vocab = vocab_of(tok, "teacher.tokenizer")
        probe, _ = encode(tok, ["a first probe text.", "and a second one"], sample[0])
        inspect = inspect_teacher(path, probe, classes, params.teacher.input, stats, vocab)
        return inspect[0].params
    probe = np.zeros((2, *sample), np.float32)
    return inspect_teacher(path, probe, classes, params.teacher.input, stats)[0].params
