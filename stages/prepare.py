"""DVC stage prepare: load the source, split, standardize, validate with GX, write splits."""

from pathlib import Path

from slimline.compression.data.prepare import prepare
from slimline.core.params.schema import Params
from slimline.core.stage import run_stage


def main(params: Params, root: Path) -> str:
    report = prepare(params, root)
    sizes = ", ".join(f"{k} {v['samples']}" for k, v in report["splits"].items())
    checks = len(report["expectations"])
    return f"{report['source']}: {sizes}; {checks} expectations passed"


if __name__ == "__main__":
    run_stage("prepare", main)
