"""The prepare recipe: source -> dedupe -> stratified split -> standardize -> validate -> write."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from slimline.compression import data
from slimline.compression.validation import validate
from slimline.core.atomic import atomic_paths
from slimline.core.params import Params, resolve


def describe_source(params: Params, root: Path) -> str:
    if params.data.source == "digits":
        return "scikit-learn digits"
    return str(resolve(params.data.path or "", root))


def prepare(params: Params, root: Path) -> dict:
    """Write the prepared splits and the validation report, all or nothing."""
    source = describe_source(params, root)
    # 1. load, keeping the hash of the data exactly as it came
    raw = data.load_source(params.data, root)
    # 2. drop exact duplicates so no sample can land in two splits
    ds, dropped = data.drop_duplicates(raw)
    # 3. split stratified by label, then standardize with train statistics only
    parts, mean, std = data.standardize(data.split(ds, params.data, params.seed))
    # 4. validate; raises DataValidationError (fail closed) before anything is written
    entries = validate(parts, len(ds.class_names), params.data.min_per_class, source)
    report = {
        "success": True,
        "source": source,
        "sha256": raw.sha256,
        "class_names": ds.class_names,
        "duplicates_dropped": dropped,
        "splits": {
            name: {
                "samples": len(y),
                "sha256": hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest(),
                "class_counts": [int((y == k).sum()) for k in range(len(ds.class_names))],
            }
            for name, (x, y) in parts.items()
        },
        "expectations": entries,
    }
    prepared = root / params.paths.prepared
    targets = [prepared / f"{name}.npz" for name in data.SPLITS] + [root / params.paths.data_report]
    with atomic_paths(targets) as tmps:
        for tmp, name in zip(tmps, data.SPLITS, strict=False):
            data.save_split(tmp, *parts[name], ds, mean, std)
        tmps[-1].write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report
