"""DVC stage export: the deployable bundle in dist/ (model with metadata, card, settings)."""

import hashlib
from pathlib import Path

import numpy as np

from slimline.compression.bundle import model_card, model_metadata, settings
from slimline.compression.data import load_split
from slimline.compression.onnx_io import add_metadata, run_logits, session
from slimline.core.atomic import atomic_paths, read_json, write_json
from slimline.core.params import Params
from slimline.core.stage import run_stage


def main(params: Params, root: Path) -> str:
    paths = params.paths
    test = load_split(root / paths.prepared, "test", lazy=True)
    source = root / paths.quantized_onnx
    dist = root / paths.dist
    metadata = model_metadata(params, root, test)
    targets = [dist / "model.onnx", dist / "model_card.md", dist / "settings.json",
               root / paths.export_metrics]  # fmt: skip
    with atomic_paths(targets) as (model_tmp, card_tmp, settings_tmp, metrics_tmp):
        add_metadata(source, model_tmp, metadata)
        # metadata must not change a single output: compare with the model it came from
        diff = float(np.abs(run_logits(session(model_tmp), test.x) -
                            run_logits(session(source), test.x)).max())  # fmt: skip
        if diff != 0.0:
            raise RuntimeError(f"{model_tmp}: outputs changed by metadata (max diff {diff})")
        size = model_tmp.stat().st_size
        card_tmp.write_text(model_card(params, root, test, size))
        quant = read_json(root / paths.quantize_metrics)
        write_json(settings_tmp, settings(params, quant, metadata))
        write_json(metrics_tmp, {
            "size_bytes": size,
            "sha256": hashlib.sha256(model_tmp.read_bytes()).hexdigest(),
            "parity_max_abs_diff": diff,
        })  # fmt: skip
    return f"export: {dist / 'model.onnx'} ({size:,} bytes), model card and settings"


if __name__ == "__main__":
    run_stage("export", main)
