"""The reliability tests' shared material: the outputs to compare before and after a fault.

The trained run itself is the session's `pipeline_once` (tests/conftest.py, TRAINED params).
"""

from __future__ import annotations

from pathlib import Path

import yaml

# every folder a stage writes into (params.yaml's `paths:`), and DVC's record of the last run
OUTPUT_DIRS = ("data/prepared", "models", "metrics", "plots", "reports", "dist")
STAGES = ("prepare", "train_teacher", "distill", "prune", "quantize", "export", "validate",
          "benchmark")  # fmt: skip


def outputs(root: Path) -> dict[str, bytes]:
    """Every file in the output folders (hidden temp files included: none may be left behind)
    and dvc.lock, by path relative to the project."""
    files = {
        str(path.relative_to(root)): path.read_bytes()
        for folder in OUTPUT_DIRS
        for path in sorted((root / folder).rglob("*"))
        if path.is_file()
    }
    return files | {"dvc.lock": (root / "dvc.lock").read_bytes()}


def lock_output_hashes(root: Path, leave_out: tuple[str, ...]) -> dict[str, str]:
    """Path -> the MD5 dvc.lock records for every output of every stage but `leave_out`'s."""
    stages = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    return {out["path"]: out.get("md5", "") for name, stage in stages.items()
            if name not in leave_out for out in stage.get("outs", [])}  # fmt: skip


def visible(files: dict[str, bytes]) -> dict[str, bytes]:
    """The outputs themselves, without hidden temp files (`.name.XXXX`) of a killed writer."""
    return {k: v for k, v in files.items() if not Path(k).name.startswith(".")}


def set_params(project: Path, **sections: dict) -> None:
    """Merge `sections` into the project's own params.yaml (key by key)."""
    path = project / "params.yaml"
    raw = yaml.safe_load(path.read_text())
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
