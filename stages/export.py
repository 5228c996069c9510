"""DVC stage export: the deployable bundle in dist/ (model with metadata, card, settings).

The model is the quantized one or the pruned FP32 one, whichever passes every gate and serves
export.objective best (release.objective); the card, settings and metrics say why.
"""

import hashlib
import shutil
import tempfile
from pathlib import Path

import numpy as np

from slimline.compression.data.prepare_text import tokenizer_path
from slimline.compression.data.store import load_split
from slimline.compression.data.tokenizer import TOKENIZER_FILE
from slimline.compression.models.onnx_teacher import teacher_logits
from slimline.compression.release.bundle import model_card, model_metadata, settings
from slimline.compression.release.objective import FP32, choose, quantized_name
from slimline.compression.runtime.onnx_io import run_logits, session
from slimline.core.atomic import atomic_paths, read_json, write_json
from slimline.core.cpu import cpu_info
from slimline.core.params.schema import Params
from slimline.core.stage import run_stage


def main(params: Params, root: Path) -> str:
    paths = params.paths
    test = load_split(root / paths.prepared, "test", lazy=True)
    # the quantized model first: it ships when none passes, or on a tie on every figure
    sources = {quantized_name(params.quantize.bits): root / paths.quantized_onnx,
               FP32: root / paths.pruned_onnx}  # fmt: skip
    dist = root / paths.dist
    metadata = model_metadata(params, root, test)
    teacher = read_json(root / paths.teacher_metrics)
    # a text model ships with the tokenizer it was trained with
    text = test.vocab is not None
    targets = [dist / "model.onnx", dist / "model_card.md", dist / "settings.json",
               root / paths.export_metrics] + [dist / TOKENIZER_FILE] * text  # fmt: skip
    with (
        atomic_paths(targets) as tmps,
        tempfile.TemporaryDirectory(prefix="slimline-export-") as tmp,
    ):
        model_tmp, card_tmp, settings_tmp, metrics_tmp = tmps[:4]
        if text:
            shutil.copyfile(tokenizer_path(params, root), tmps[4])
        teacher_size = (root / paths.teacher_onnx).stat().st_size
        # the drop against the teacher is judged on the same test rows: its ONNX file's
        teacher_out = teacher_logits(root / paths.teacher_onnx, teacher, test)
        choice, shipped = choose(sources, Path(tmp), metadata, test, params,
                                 teacher_out=teacher_out,
                                 teacher_size_bytes=teacher_size)  # fmt: skip
        source = sources[choice.chosen.name]
        shutil.copyfile(shipped[choice.chosen.name], model_tmp)
        # metadata must not change a single output: compare with the model it came from
        diff = float(np.abs(run_logits(session(model_tmp), test.x) -
                            run_logits(session(source), test.x)).max())  # fmt: skip
        if diff != 0.0:
            raise RuntimeError(f"{model_tmp}: outputs changed by metadata (max diff {diff})")
        size = model_tmp.stat().st_size
        card_tmp.write_text(model_card(params, root, test, size, choice))
        quant = read_json(root / paths.quantize_metrics)
        write_json(settings_tmp, settings(params, quant, metadata, choice))
        timed = {"cpu": cpu_info()} if params.export.objective == "latency" else {}
        write_json(metrics_tmp, {
            "size_bytes": size,
            "sha256": hashlib.sha256(model_tmp.read_bytes()).hexdigest(),
            "parity_max_abs_diff": diff,
        } | choice.as_dict() | timed)  # fmt: skip
    if not text:
        (dist / TOKENIZER_FILE).unlink(missing_ok=True)  # left by an earlier text run
    return (
        f"export: {dist / 'model.onnx'} = {choice.chosen.name} ({size:,} bytes; "
        f"objective {choice.objective}: {choice.reason})"
    )


if __name__ == "__main__":
    run_stage("export", main)
