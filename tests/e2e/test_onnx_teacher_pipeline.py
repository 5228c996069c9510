"""The real pipeline through `dvc repro` with a pretrained teacher the way a user brings one: a
scikit-learn MLP trained on the raw digits pixels (0..16, flat), converted with skl2onnx, set
as `teacher.source: onnx` with `input: raw`."""

import hashlib
import json

import numpy as np
import onnx
import pytest
import yaml
from skl2onnx import to_onnx
from sklearn.neural_network import MLPClassifier

from tests.support.processes import run
from tests.support.project import dvc_repro, make_project

pytestmark = pytest.mark.slow


def test_an_imported_scikit_learn_teacher_runs_the_whole_chain(tmp_path):
    project = make_project(tmp_path / "project", student={"width": 2, "depth": 1})
    assert dvc_repro(project, "prepare").returncode == 0
    with np.load(project / "data/prepared/train.npz") as z:
        x = (z["x"] * z["std"].reshape(1, -1, 1, 1) + z["mean"].reshape(1, -1, 1, 1)) * z["scale"]
        x, y = x.reshape(len(x), 64).astype(np.float32), z["y"]
    with np.load(project / "data/prepared/test.npz") as z:
        x_test = (z["x"] * z["std"].reshape(1, -1, 1, 1) + z["mean"].reshape(1, -1, 1, 1)) * z[
            "scale"
        ]
        x_test, y_test = x_test.reshape(len(x_test), 64).astype(np.float32), z["y"]
    model = MLPClassifier((64,), max_iter=300, random_state=0).fit(x, y)
    file = project / "data/pretrained/mlp.onnx"
    file.write_bytes(to_onnx(model, x[:1], options={"zipmap": False}).SerializeToString())
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["teacher"] |= {"source": "onnx", "path": "data/pretrained/mlp.onnx", "input": "raw"}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    result = dvc_repro(project)
    assert result.returncode == 0, result.stdout + result.stderr
    said = result.stderr  # the stages' one-line summaries
    assert "imported data/pretrained/mlp.onnx" in said
    assert "holds probabilities, not logits" in said  # accepted, and said so

    teacher = json.loads((project / "metrics/teacher.json").read_text())
    assert teacher["source"] == "onnx"
    assert teacher["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    assert teacher["interface"]["input_mode"] == "raw"
    assert teacher["accuracy"] == pytest.approx((model.predict(x_test) == y_test).mean())
    weights = sum(c.size for c in model.coefs_ + model.intercepts_)
    assert weights <= teacher["params"] <= weights + 16  # + the converter's constants
    kept = project / "models/onnx/teacher.onnx"
    onnx.checker.check_model(str(kept))
    assert teacher["onnx_size_bytes"] == kept.stat().st_size

    bench = json.loads((project / "reports/benchmark.json").read_text())
    row = next(v for v in bench["variants"] if v["name"] == "teacher_fp32")
    assert row["accuracy"] == pytest.approx(teacher["accuracy"])  # fed raw values, as it asks
    assert row["latency_ms_b1_p50"] > 0
    gates = {
        g["name"]: g for g in json.loads((project / "reports/gates.json").read_text())["gates"]
    }
    final = (project / "dist/model.onnx").stat().st_size
    assert gates["min_compression"]["value"] == pytest.approx(kept.stat().st_size / final)
    card = (project / "dist/model_card.md").read_text()
    assert "pretrained ONNX teacher (`data/pretrained/mlp.onnx`" in card
    assert teacher["sha256"][:16] in card and "reading the raw values" in card

    # a new teacher file reruns the chain from train_teacher; the data stays as it was
    model = MLPClassifier((32,), max_iter=300, random_state=1).fit(x, y)
    file.write_bytes(to_onnx(model, x[:1], options={"zipmap": False}).SerializeToString())
    status = run(["dvc", "status", "--json"], project)
    changed = set(json.loads(status.stdout))
    assert "train_teacher" in changed and "prepare" not in changed
