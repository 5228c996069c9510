"""The prepare recipe: source -> dedupe -> stratified split -> standardize -> validate -> write."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from slimline.compression import data
from slimline.compression.degenerate import (
    check_classes,
    check_features_vary,
    check_split_counts,
    conflicting_labels,
)
from slimline.compression.learnability import probe
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
    # 2. refuse data no classifier can learn from (degenerate.py), then drop exact duplicates
    #    so no sample can land in two splits
    where = source if params.data.source == "digits" else f"data.path: {source}"
    minimum = params.data.min_per_class
    check_features_vary(raw, where)
    conflicts = conflicting_labels(raw, where)
    ds, dropped = data.drop_duplicates(raw)
    check_classes(ds, where, minimum)
    # 3. split stratified by label, then standardize with train statistics only
    split = data.split(ds, params.data, params.seed)
    check_split_counts(split, ds, where, minimum)
    parts, mean, std = data.standardize(split)
    # 4. validate; raises DataValidationError (fail closed) before anything is written
    entries = validate(parts, len(ds.class_names), minimum, source)
    # 5. the labels must say something about the features (learnability.py)
    learnability = probe(parts, len(ds.class_names), where, params.seed)
    report = {
        "success": True,
        "source": source,
        "sha256": raw.sha256,
        "class_names": ds.class_names,
        "duplicates_dropped": dropped,
        "conflicting_labels": conflicts,
        "learnability": learnability,
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
