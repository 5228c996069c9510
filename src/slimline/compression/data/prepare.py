"""The prepare recipe: source -> dedupe -> stratified split -> standardize -> validate -> write.

Digits, npz and table sources are held in memory. An image folder is streamed, so that its
size is bounded by the disk rather than by memory: it is decoded once into a temporary file
beside the outputs (`decode_image_folder`), and every step after works from per-sample
bookkeeping (labels, a hash of each sample, GX summary rows) and blocks of rows read back: the
same checks, split, statistics and bytes as the in-memory recipe gives the same data, except
that the learnability probe draws its capped sample stratified by label (learnability.py).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from slimline.compression.data.dataset import SPLITS, Labels
from slimline.compression.data.degenerate import (
    check_classes,
    check_features_vary,
    check_samples_vary,
    check_split_counts,
    conflicting_labels,
    label_conflicts,
)
from slimline.compression.data.expectations import SampleSummaries, validate, validate_summaries
from slimline.compression.data.images import decode_image_folder
from slimline.compression.data.learnability import probe
from slimline.compression.data.normalize import StandardRows, pixel_statistics, standardize
from slimline.compression.data.prepare_text import prepare_text
from slimline.compression.data.report import data_report, digest_of, output_paths, split_entry
from slimline.compression.data.sources import load_source
from slimline.compression.data.split import (
    drop_duplicates,
    sample_groups,
    split,
    split_indices,
)
from slimline.compression.data.store import save_split
from slimline.core.atomic import atomic_paths
from slimline.core.params.layouts import resolve
from slimline.core.params.schema import Params


def describe_source(params: Params, root: Path) -> str:
    if params.data.source == "digits":
        return "scikit-learn digits"
    return str(resolve(params.data.path or "", root))


def prepare(params: Params, root: Path) -> dict:
    """Write the prepared splits and the validation report, all or nothing."""
    if params.data.source == "image-folder":
        return prepare_streamed(params, root)
    if params.data.source == "text":
        return prepare_text(params, root)
    return prepare_in_memory(params, root)


def prepare_in_memory(params: Params, root: Path) -> dict:
    """`prepare` with the whole source in memory (`load_source`)."""
    source = describe_source(params, root)
    # 1. load, keeping the hash of the data exactly as it came
    raw = load_source(params.data, root)
    sha256 = raw.sha256
    # 2. refuse data no classifier can learn from (degenerate.py), then drop exact duplicates
    #    so no sample can land in two splits
    where = source if params.data.source == "digits" else f"data.path: {source}"
    minimum = params.data.min_per_class
    check_features_vary(raw, where)
    conflicts = conflicting_labels(raw, where)
    ds, dropped = drop_duplicates(raw)
    del raw  # each copy of x goes once done with: the peak is a few x, not one per step
    check_classes(ds, where, minimum)
    # 3. split stratified by label, then standardize with train statistics only
    parts = split(ds, params.data, params.seed)
    check_split_counts(parts, ds, where, minimum)
    labels = Labels(ds.y, ds.class_names, ds.scale, ds.feature_names, ds.target)
    del ds  # its x lives on in the splits
    parts, mean, std = standardize(parts)
    # 4. validate; raises DataValidationError (fail closed) before anything is written
    num_classes = len(labels.class_names)
    entries = validate(parts, num_classes, minimum, source)
    # 5. the labels must say something about the features (learnability.py)
    learnability = probe(parts, num_classes, where, params.seed)
    splits = {name: split_entry(digest_of(x, y), y, num_classes) for name, (x, y) in parts.items()}
    report = data_report(source, sha256, labels, dropped, conflicts, learnability, splits, entries)
    with atomic_paths(output_paths(params, root)) as tmps:
        for tmp, name in zip(tmps, SPLITS, strict=False):
            save_split(tmp, *parts[name], labels, mean, std)
        tmps[-1].write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


def prepare_streamed(params: Params, root: Path) -> dict:
    """`prepare` for an image folder, never holding its pixels in memory (module docstring)."""
    source = describe_source(params, root)
    where, minimum = f"data.path: {source}", params.data.min_per_class
    scratch = root / params.paths.prepared
    # 1. decode every image once, batch by batch: a corrupt one stops here, naming it
    with decode_image_folder(resolve(params.data.path or "", root),
                                  params.data.image_size, scratch) as raw:  # fmt: skip
        # 2. the same refusals as in memory, from groups of identical samples (by hash)
        first, inverse = sample_groups(raw.keys)
        check_samples_vary(first, inverse, int(np.prod(raw.input_shape)), where)
        conflicts = label_conflicts(first, inverse, raw, where)
        keep = np.sort(first)  # the first of each group, as drop_duplicates keeps
        ds = Labels(raw.y[keep], raw.class_names, raw.scale)
        check_classes(ds, where, minimum)
        # 3. split the sample indices; statistics of the train rows only
        index = split_indices(ds, params.data, params.seed)
        ys = {name: ds.y[i] for name, i in index.items()}
        check_split_counts({name: (i, ys[name]) for name, i in index.items()}, ds, where, minimum)
        mean, std = pixel_statistics(raw, keep[index["train"]])
        xs = {name: StandardRows(raw, keep[i], mean, std) for name, i in index.items()}
        # 4. validate summaries made in one pass over every sample, before anything is written
        summaries, splits = _summarize(xs, ys, len(ds.class_names))
        entries = validate_summaries(summaries, len(ds.class_names), minimum, source)
        # 5. the probe, on a capped sample stratified by label
        parts = {name: (x, ys[name]) for name, x in xs.items()}
        learnability = probe(parts, len(ds.class_names), where, params.seed, stratified=True)
        dropped = len(raw.y) - len(keep)
        report = data_report(
            source, raw.sha256, ds, dropped, conflicts, learnability, splits, entries
        )
        with atomic_paths(output_paths(params, root)) as tmps:
            for tmp, name in zip(tmps, SPLITS, strict=False):
                save_split(tmp, xs[name], ys[name], raw, mean, std)
            tmps[-1].write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


def _summarize(xs: dict[str, StandardRows], ys: dict[str, np.ndarray], num_classes: int):
    """Each split's GX summary rows and report entry, from one pass over its rows."""
    summaries, splits = {}, {}
    for name, x in xs.items():
        summary, digest = SampleSummaries(x.dtype, x.shape[1:]), hashlib.sha256()
        for block in x.blocks():
            summary.add(block)
            digest.update(block.data)
        digest.update(ys[name].tobytes())
        summaries[name] = (summary, ys[name])
        splits[name] = split_entry(digest, ys[name], num_classes)
    return summaries, splits
