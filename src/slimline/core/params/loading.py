"""Loading params.yaml: `load_params(path, overrides)` is the only way the stages, the flows and
the CLI read params. It raises `ParamsError` whose message has one line per problem, each as
`section.field: what was expected (got X)`."""

from __future__ import annotations

import difflib
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from slimline.core.atomic import atomic_path
from slimline.core.errors import InputError
from slimline.core.params.inputs import Data
from slimline.core.params.layouts import input_layout, layout_problem, npz_x_shape, resolve
from slimline.core.params.models import TEXT_ARCHS
from slimline.core.params.overrides import apply_override
from slimline.core.params.schema import Params


class ParamsError(InputError):
    """Bad params: `problems` holds one `section.field: expected (got X)` line each."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"{source}: invalid params\n  " + "\n  ".join(problems))


def load_params(
    path: str | Path = "params.yaml", overrides: list[str] | None = None, base: Path | None = None
) -> Params:
    """Read, override (`key.sub=value`, value parsed as YAML) and validate a params file.
    Relative data paths are checked from `base`, the project the stages will run in (default:
    the file's folder, which is the project for params.yaml itself)."""
    path = Path(path)
    base = path.parent if base is None else base
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ParamsError(str(path), [f"{path}: file not found"]) from None
    except yaml.YAMLError as e:
        raise ParamsError(str(path), [f"{path}: not valid YAML ({e})"]) from None
    if not isinstance(raw, dict):
        raise ParamsError(str(path), [f"{path}: a mapping of sections (got {type(raw).__name__})"])
    problems = [p for item in overrides or [] for p in apply_override(raw, item)]
    try:
        params = Params.model_validate(raw)
    except ValidationError as e:
        # every problem in one message: the data-shape rule too, read from the raw sections
        problems += _describe(e) + _data_shape_problems(raw, base=base)
        raise ParamsError(str(path), problems) from None
    problems += _data_shape_problems(params.model_dump(), base=base)
    if problems:
        raise ParamsError(str(path), problems)
    return params


def write_params(target: Path, params_file: Path, overrides: list[str]) -> None:
    """Make `target` (params.yaml, which dvc.yaml reads) hold `params_file` plus `overrides`.

    Like `dvc exp run -S`, the result is written into the workspace so that `dvc repro`,
    `dvc params diff` and git all see what ran; comments are kept. Call it only with params
    that `load_params` accepted.
    """
    from ruamel.yaml import YAML

    yaml_rt = YAML()  # round-trip: keeps comments and key order
    doc = yaml_rt.load(params_file.read_text())
    problems = [p for item in overrides for p in apply_override(doc, item)]
    if problems:
        raise ParamsError(str(params_file), problems)
    with atomic_path(target) as tmp, tmp.open("w") as f:
        yaml_rt.dump(doc, f)


def _describe(error: ValidationError) -> list[str]:
    lines = []
    for err in error.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"{loc}: unknown key{_suggest(err['loc'])}")
        elif err["type"] == "missing":
            lines.append(f"{loc}: required section or field is missing")
        elif err["type"] == "value_error":
            # our own validators already speak `field: expected (got X)`, one per line
            lines += str(err["ctx"]["error"]).splitlines()
        else:
            lines.append(f"{loc}: {_expected(err['msg'])} (got {err['input']!r})")
    return lines


def _expected(msg: str) -> str:
    return msg.removeprefix("Input should be ").removeprefix("Value should be ")


def _suggest(loc: tuple) -> str:
    model: type[BaseModel] = Params
    for part in loc[:-1]:
        annotation = model.model_fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        model = annotation
    close = difflib.get_close_matches(str(loc[-1]), model.model_fields, n=1, cutoff=0.6)
    valid = ", ".join(model.model_fields)
    return f"; did you mean {close[0]!r}?" if close else f"; expected one of: {valid}"


def _data_shape_problems(raw: dict, base: Path) -> list[str]:
    """x must have a shape `data.layout` reads (LAYOUT_SHAPES); conv families need signals or
    images: tabular (N, F) data can only feed an mlp; text feeds the text families alone, and
    they nothing else.

    Takes the params as a dict, so that it also runs when other fields are invalid."""
    try:
        data = Data.model_validate(raw.get("data") or {})
    except ValidationError:
        return []  # a bad data section is reported on its own
    shape = npz_x_shape(resolve(data.path or "", base)) if data.source == "npz" else None
    if shape is not None and (problem := layout_problem(data.layout, shape, str(data.path))):
        return [problem]
    layout = input_layout(data, base)
    if data.augment != "none" and layout not in ("image", None):
        return [
            f"data.augment: none for {layout} data (crops and flips are for images; "
            f"got {data.augment!r})"
        ]
    sections = {role: raw.get(role) for role in ("teacher", "student")}
    archs = {role: s.get("arch") if isinstance(s, dict) else None for role, s in sections.items()}
    if isinstance(sections["teacher"], dict) and sections["teacher"].get("source") == "onnx":
        del archs["teacher"]  # an imported teacher's arch is not used
    # a missing or unknown arch is reported on its own
    if layout == "text":
        return [
            f"{role}.arch: {', '.join(TEXT_ARCHS)} for text (token ids) data (got {arch!r})"
            for role, arch in archs.items()
            if arch in ("mlp", "cnn", "resnet")
        ]
    wrong = [
        f"{role}.arch: {arch!r} reads token ids; it needs data.source: text (got "
        f"data.source {data.source!r})"
        for role, arch in archs.items()
        if arch in TEXT_ARCHS
    ]
    if layout == "tabular":
        wrong += [
            f"{role}.arch: mlp for tabular (N, F) data in {data.path} (got {arch!r})"
            for role, arch in archs.items()
            if arch in ("cnn", "resnet")
        ]
    return wrong
