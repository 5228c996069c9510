"""The deployable bundle: metadata carried by dist/model.onnx, the model card, the settings."""

from __future__ import annotations

import json
from pathlib import Path

from slimline import __version__
from slimline.compression.data.dataset import Split
from slimline.compression.release.gates import undecidable_notes
from slimline.compression.release.objective import FP32, Choice, markdown
from slimline.core import gitinfo
from slimline.core.atomic import read_json
from slimline.core.params.schema import Params

# the model card's words for each layout (Split.layout)
KINDS = {"tabular": "tabular-feature", "signal": "signal", "image": "image", "text": "text"}
SHAPES = {"tabular": "(F,)", "signal": "(C, L)", "image": "(C, H, W)"}


def model_metadata(params: Params, root: Path, test: Split) -> dict[str, str]:
    """What a consumer needs to feed the model raw inputs, and what made it."""
    # a model trained on a table also names its feature columns (in input order) and label column
    table = (
        {"feature_names": json.dumps(list(test.feature_names)), "target": test.target or ""}
        if test.feature_names
        else {}
    )
    # a text model reads raw texts from a table's column (dist/tokenizer.json tokenizes them)
    if test.vocab is not None:
        table = {"text_column": params.data.text, "target": params.data.target or ""}
    return {
        "class_names": json.dumps(test.class_names),
        "input_shape": json.dumps(list(test.input_shape)),
        "layout": test.layout,  # tabular (F,), signal (C, L) or image (C, H, W)
        "normalization": json.dumps(
            {"mean": test.mean.tolist(), "std": test.std.tolist(), "scale": test.scale}
        ),
        "params_sha256": params.digest(),
        "git_commit": gitinfo.code_commit(root),  # not HEAD: see code_commit
        "slimline_version": __version__,
    } | table


def settings(
    params: Params, quantize_report: dict, metadata: dict[str, str], choice: Choice
) -> dict:
    """Every setting that made the model: the validated params, the quantizer's (none when
    the FP32 model ships), the variant chosen and why, the lineage."""
    quantizer = {
        k: quantize_report.get(k)
        for k in (
            "mode",
            "calibration_method",
            "calibration_samples",
            "per_channel",
            "activation_type",
            "weight_type",
            "excluded_nodes",
            "target",
            "reduce_range",
            "runs_on",
            "made_on",
        )
        if k in quantize_report
    } | {k: quantize_report[k] for k in ("bits", "block_sizes") if k in quantize_report}  # 4-bit
    return {
        "params": params.model_dump(mode="json"),
        "quantizer": None if choice.chosen.name == FP32 else quantizer,
        "variant": choice.as_dict(),
        "lineage": metadata,
    }


def _precision(quant: dict) -> str:
    return "4-bit weights" if quant.get("bits") == 4 else "INT8"


def _final_phrase(quant: dict, choice: Choice) -> str:
    if choice.chosen.name == FP32:
        return (
            f"shipped in FP32: export.objective `{choice.objective}` chose it over the "
            "quantized model (see Variant)"
        )
    kept = ", ".join(quant["excluded_nodes"]) or "none"
    if quant.get("bits") == 4:
        return (
            "its MatMul weights packed to 4 bits, block-wise, by onnxruntime (MatMulNBits, "
            f"block sizes {quant.get('block_sizes')}, activations float; nodes kept in FP32: "
            f"{kept})"
        )
    how = (
        "weights INT8, activations quantized at run time"
        if quant["mode"] == "dynamic"
        else f"{quant.get('calibration_method')} calibration on "
        f"{quant.get('calibration_samples')} samples"
    )
    return (
        f"quantized to INT8 with onnxruntime ({quant['mode']}, {how}; nodes kept in FP32: "
        f"{kept}){_target_phrase(quant)}"
    )


def _input_lines(test: Split, num_classes: int) -> str:
    """The card's lines on what the model takes and how raw inputs become it."""
    if test.vocab is not None:
        return (
            f"- Inputs `input_ids` and `attention_mask`: int64 `(batch, tokens)`, up to "
            f"{test.input_shape[0]} tokens; output `logits` `(batch, {num_classes})`.\n"
            f"- Preprocessing: `tokenizer.json` beside the model (WordPiece, {test.vocab.size:,} "
            f"tokens, `[CLS] text [SEP]`, cut at {test.input_shape[0]}); the mask is 1 for a "
            f"token and 0 for padding (pad id {test.vocab.pad_id}, in the ONNX metadata)."
        )
    per = "per-feature" if test.layout == "tabular" else "per-channel"
    return (
        f"- Input `input`: float32 `(batch, {', '.join(map(str, test.input_shape))})`, layout\n"
        f"  `{test.layout}` {SHAPES.get(test.layout, '')}; output `logits` "
        f"`(batch, {num_classes})`.\n"
        f"- Preprocessing: `(raw / scale - mean) / std` with scale {test.scale:g} and the\n"
        f"  {per} mean and std in the ONNX metadata (`normalization`)."
    )


def _target_phrase(quant: dict) -> str:
    """quantize.target and the CPUs it computes exactly on (int8_target)."""
    if "target" not in quant:  # metrics made before targets
        return ""
    made = f", chosen on {quant['made_on']}" if quant.get("made_on") else ""
    return (
        f".\nINT8 target `{quant['target']}`: {quant['weight_type']} weights, exact on "
        f"{quant['runs_on']}{made}"
    )


def _calibration_limit(quant: dict, choice: Choice) -> str:
    # weight-only INT4 has no activation range to saturate; an FP32 model none at all
    if quant.get("bits") == 4 or choice.chosen.name == FP32:
        return ""
    return (
        f"- INT8 calibration used {quant.get('calibration_samples')} training samples: inputs "
        "far outside\n  their range saturate.\n"
    )


def _teacher_phrase(params: Params, metrics: dict) -> str:
    if metrics.get("source") != "onnx":
        return f"a `{params.teacher.arch}` teacher"
    reads = {"prepared": "the prepared (standardized) samples", "raw": "the raw values"}[
        params.teacher.input
    ]
    said = "".join(f"; {note}" for note in metrics.get("notes", []))
    return (
        f"a pretrained ONNX teacher (`{params.teacher.path}`, sha256 "
        f"`{metrics['sha256'][:16]}…`, reading {reads}{said})"
    )


def _distilled_phrase(params: Params, metrics: dict) -> str:
    """Who taught the student (distill.mode), as the card's Model paragraph says it."""
    d = params.distill
    how = f"(T={d.temperature},\nalpha={d.alpha})"
    if d.mode == "online":
        return (
            f"distilled online (mutual learning) with a `{params.teacher.arch}` peer trained "
            f"alongside it {how}"
        )
    if d.mode == "self":
        return f"self-distilled over {d.generations} born-again generations {how}"
    return f"distilled from {_teacher_phrase(params, metrics)} {how}"


def _student_phrase(params: Params, teacher: dict, student: dict) -> str:
    """How the shipped student learned: distilled, or from labels alone when the distill stage
    kept its labels-only baseline (better on val, metrics/student.json `shipped`)."""
    kd = _distilled_phrase(params, teacher)
    if student.get("shipped") == "labels":
        return f"trained from labels alone (on val it beat the same student {kd})"
    return kd


def _kept_phrase(student: dict) -> str:
    """Which of the distill stage's two students the pruned one starts from, and why."""
    if "shipped" not in student:  # metrics from before the choice: the distilled one
        return "`distilled`"
    return f"`{student['shipped']}` ({student['shipped_reason']}; test never chooses)"


def _training_phrase(student: dict) -> str:
    """Where and how the student trained (metrics/student.json), as the card says it."""
    where = f"on {student.get('device_name') or student.get('device', 'cpu')}"
    precision = student.get("precision", "fp32")
    views = student.get("augment", "none")
    kd = student.get("mode", "offline")  # distill.mode: offline | online | self
    augmented = "no augmentation" if views == "none" else f"augmentation `{views}`"
    return f"{where} in {precision}, {augmented}, {kd} KD"


def _gate_figures(params: Params, choice: Choice) -> str:
    """The shipped variant's accuracy gates with their 95% intervals, and the ones its test
    split is too small to decide."""
    measured = [g for g in choice.chosen.gates if g.interval is not None]
    if not measured:
        return ""
    how = {"estimate": "the measured value", "bound": "the 95% interval's far end"}
    lines = [f"- {g.describe()}" for g in measured]
    notes = [f"- {note}" for note in undecidable_notes(measured)]
    return (
        f"\nOn the shipped variant (`gates.decide: {params.gates.decide}`: each decided on "
        f"{how[params.gates.decide]}):\n\n" + "\n".join(lines + notes) + "\n"
    )


def model_card(params: Params, root: Path, test: Split, size_bytes: int, choice: Choice) -> str:
    p = params.paths
    teacher, student, pruned, quant = (
        read_json(root / path)
        for path in (p.teacher_metrics, p.student_metrics, p.pruned_metrics, p.quantize_metrics)
    )
    data = read_json(root / p.data_report)
    imported = teacher.get("source") == "onnx"
    labels = student.get("shipped") == "labels"  # the distill stage kept its baseline
    rows = [
        ("teacher (FP32)", "onnx" if imported else params.teacher.arch, teacher["accuracy"],
         teacher["params"],
         teacher["onnx_size_bytes"]),
        (f"student, distilled (FP32){'' if labels else ', shipped'}", params.student.arch,
         student.get("distilled_accuracy", student["accuracy"]), student["params"],
         None if labels else student["onnx_size_bytes"]),
        (f"student from labels only{', shipped' if labels else ''}", params.student.arch,
         student["baseline_accuracy"], student["params"],
         student["onnx_size_bytes"] if labels else None),
        ("pruned student (FP32)", params.student.arch, pruned["accuracy"], pruned["params"],
         pruned["onnx_size_bytes"]),
        (f"final: pruned student {'FP32' if choice.chosen.name == FP32 else _precision(quant)}",
         params.student.arch, choice.chosen.accuracy, pruned["params"], size_bytes),
    ]  # fmt: skip
    table = "\n".join(
        f"| {name} | {arch} | {acc:.4f} | {n:,} | {f'{size:,}' if size else '-'} |"
        for name, arch, acc, n, size in rows
    )
    g = params.gates
    splits = ", ".join(f"{k} {v['samples']}" for k, v in data["splits"].items())
    return f"""# Model card: {params.tracking.model_name}

## Model
A {len(test.class_names)}-class {KINDS.get(test.layout, "input")} classifier: a
`{params.student.arch}` student
{_student_phrase(params, teacher, student)}, structurally pruned (channel ratio
{params.prune.ratio}, {params.prune.importance} importance, {params.prune.steps} steps) and
{_final_phrase(quant, choice)}.

{_input_lines(test, len(test.class_names))}
- Classes: {", ".join(test.class_names)}.
- Trained {_training_phrase(student)}.
- Student kept: {_kept_phrase(student)}.

## Data
Source: {data["source"]} (sha256 `{data["sha256"][:16]}…`), stratified splits: {splits};
{data["duplicates_dropped"]} duplicate samples dropped before splitting. Validated with Great
Expectations (reports/data_validation.json).

## Variants (test split)
| variant | family | accuracy | params | ONNX bytes |
| --- | --- | --- | --- | --- |
{table}

Latency and throughput: reports/benchmark.json (measured after export).

## Variant (export.objective `{choice.objective}`)
Shipped: `{choice.chosen.name}`. Why: {choice.reason}.

Candidates, each judged as shipped on every gate but the speed-up (test split):

{markdown(choice)}
## Gates
Promotion needs all of: accuracy >= {g.min_accuracy}, drop against the teacher <=
{g.max_accuracy_drop}, top-1 agreement with the FP32 pruned model >= {g.min_agreement}, size <=
{g.max_size_bytes:,} bytes, teacher size / final size >= {g.min_compression:g}, batch-1 speed-up
against the teacher >= {g.min_speedup:g}. The verdict is reports/gates.json and
reports/benchmark.json.
{_gate_figures(params, choice)}
## Intended use
Classifying inputs drawn from the same distribution as the training data, on CPU, with
onnxruntime (`slimline predict dist/model.onnx FILE`).

## Limits
- Accuracy is measured on {data["splits"]["test"]["samples"]} test samples from the same source;
  inputs from another distribution (other scanners, fonts, lighting) are not covered.
{_calibration_limit(quant, choice)}- Latency figures are from one machine; measure on the target
  hardware.
"""
