"""`slimline predict` on a model with slimline's metadata, made here from a tiny torch net."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from slimline.compression.onnx_io import add_metadata, export_onnx
from slimline.compression.predict import predict
from slimline.core.errors import InputError


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A 'classifier' of (1, 4, 4) images: class = whether the top half is brighter."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with torch.no_grad():
        net[1].weight.zero_()
        net[1].weight[1, :8], net[1].weight[1, 8:] = 1.0, -1.0
        net[1].bias.zero_()
    tmp = tmp_path_factory.mktemp("predict")
    export_onnx(net, (1, 4, 4), tmp / "raw.onnx", 20)
    meta = {
        "class_names": json.dumps(["bottom", "top"]),
        "input_shape": json.dumps([1, 4, 4]),
        "normalization": json.dumps({"mean": [0.0], "std": [1.0], "scale": 255.0}),
    }
    add_metadata(tmp / "raw.onnx", tmp / "model.onnx", meta)
    return tmp / "model.onnx"


def test_npz_with_labels(model_path, tmp_path):
    x = np.zeros((4, 4, 4), np.uint8)
    x[:2, :2], x[2:, 2:] = 255, 255  # two top-bright, two bottom-bright
    np.savez(tmp_path / "d.npz", x=x, y=np.array([1, 1, 0, 0]))
    out = predict(model_path, tmp_path / "d.npz")
    assert out.names == ["top", "top", "bottom", "bottom"] and out.accuracy == 1.0
    assert np.all(out.confidence > 0.9)


def test_png_image_through_the_cli(model_path, tmp_path):
    from PIL import Image

    pixels = np.zeros((8, 8), np.uint8)
    pixels[4:] = 255  # bottom half bright; resized to 4x4
    Image.fromarray(pixels, mode="L").save(tmp_path / "img.png")
    image = tmp_path / "img.png"
    cmd = [sys.executable, "-m", "slimline.cli", "predict", str(model_path), str(image)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\t")[:2] == ["0", "bottom"]


def test_bad_inputs_name_the_file(model_path, tmp_path):
    with pytest.raises(InputError, match="nothing.npz: file not found"):
        predict(model_path, tmp_path / "nothing.npz")
    np.savez(tmp_path / "wrong.npz", x=np.zeros((2, 5, 5)))
    with pytest.raises(InputError, match=r"wrong.npz: x must be \(N, \(1, 4, 4\)\)"):
        predict(model_path, tmp_path / "wrong.npz")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(InputError, match="notes.txt: expected .png"):
        predict(model_path, tmp_path / "notes.txt")
