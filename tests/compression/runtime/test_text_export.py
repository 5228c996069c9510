"""Text models in ONNX: int64 input_ids and attention_mask, any batch and length up to max_len,
the mask made from the padding by whoever runs the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slimline.compression.models.text_families import TEXT_CLASSES
from slimline.compression.runtime.onnx_io import (
    TEXT_INPUTS,
    ParityError,
    add_metadata,
    check_parity,
    export_onnx,
    read_metadata,
    run_logits,
    session,
)

CONFIGS = {
    "transformer": {
        "vocab_size": 100,
        "dim": 32,
        "layers": [{"heads": 4, "head_dim": 8, "ffn": 64}],
        "pooling": "mean",
        "pad_id": 1,
    },
    "textcnn": {"vocab_size": 100, "dim": 16, "kernels": [3, 4], "channels": [8, 8], "pad_id": 1},
    "boe": {"vocab_size": 100, "dim": 16, "hidden": 32, "pad_id": 1},
}


def _ids(n: int = 6, length: int = 32) -> np.ndarray:
    ids = np.random.default_rng(0).integers(4, 100, (n, length)).astype(np.int32)
    ids[0, 5:], ids[1, 20:] = 1, 1  # padded with the model's pad id, 1 here
    return ids


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_a_text_model_exports_with_token_inputs_and_matches_torch_at_every_length(family, tmp_path):
    torch.manual_seed(0)
    model = TEXT_CLASSES[family]((32,), 4, **CONFIGS[family]).eval()
    path = tmp_path / f"{family}.onnx"
    export_onnx(model, (32,), path)
    sess = session(path)
    assert tuple(i.name for i in sess.get_inputs()) == TEXT_INPUTS
    assert all(i.type == "tensor(int64)" for i in sess.get_inputs())
    assert read_metadata(path)["pad_id"] == "1"
    ids = _ids()
    for length in (32, 16, 7):  # the mask comes from the metadata's pad id at any length
        assert check_parity(model, path, ids[:, :length], atol=1e-5) <= 1e-5
    # the padding never counts: a row padded further scores as it did
    row = run_logits(sess, ids[:1, :16])
    torch.testing.assert_close(run_logits(sess, ids[:1]), row, atol=1e-5, rtol=0)


def test_parity_refuses_a_file_that_takes_one_sequence_length_only(tmp_path):
    torch.manual_seed(0)
    model = TEXT_CLASSES["boe"]((32,), 4, **CONFIGS["boe"]).eval()
    path = tmp_path / "fixed.onnx"
    ids = torch.from_numpy(_ids(2).astype(np.int64))
    batch = torch.export.Dim("batch")
    torch.onnx.export(model, (ids, (ids != 1).long()), str(path), dynamo=True,
                      input_names=list(TEXT_INPUTS), output_names=["logits"],
                      dynamic_shapes=({0: batch}, {0: batch}))  # fmt: skip
    add_metadata(path, path, {"pad_id": "1"})
    with pytest.raises(ParityError, match="cannot run it at 8 tokens"):
        check_parity(model, path, _ids(), atol=1e-5)
