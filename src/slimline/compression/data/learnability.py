"""A cheap learnability probe: do the labels say anything about the features?

Two quick classifiers (k nearest neighbours and logistic regression) fit on a capped sample of
the prepared train split and are scored on the held-out val and test splits. Labels independent
of the features give any classifier at most the majority-class rate, so each probe's accuracy
is tested one-sided against that rate (binomial, alpha split between the probes). If neither
beats it, the data is refused before anything is trained. When the held-out split is so small
that even a perfect score would not be significant the verdict is `inconclusive`, not a refusal.

The probes need their samples in memory, so they never see more than MAX_TRAIN train and
MAX_HELD_OUT val + test samples, drawn without replacement with a generator seeded by
params.seed; only the samples drawn are read (a split's x may be rows read on demand, as for a
streamed image folder). `stratified=True` (streamed sources) draws each class in its share of
the split, and the report then says so under `sample`; otherwise the draw is uniform.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from slimline.compression.data.dataset import DataError

ALPHA = 0.01
MAX_TRAIN = 2000  # train samples the probes fit on
MAX_HELD_OUT = 2000  # val + test samples they are scored on
MAX_FEATURES = 256  # logistic regression sees a random projection of wider inputs
NEIGHBOURS = 5

# x: an array, or anything that reads rows by slice or sorted index array (data.StandardRows)
Parts = dict[str, tuple[Any, np.ndarray]]
STRATIFIED = "stratified by label, seeded with params.seed"


def _choose(y: np.ndarray, cap: int, rng: np.random.Generator, stratified: bool) -> np.ndarray:
    """`cap` of the len(y) > cap samples, sorted."""
    if not stratified:
        return np.sort(rng.choice(len(y), cap, replace=False))
    labels, counts = np.unique(y, return_counts=True)
    quota = counts * cap / len(y)
    take = np.floor(quota).astype(np.int64)
    by_remainder = np.argsort(-(quota - take), kind="stable")
    take[by_remainder[: cap - int(take.sum())]] += 1  # largest remainders round up
    picks = [
        rng.choice(np.flatnonzero(y == k), n, replace=False)
        for k, n in zip(labels, take, strict=True)
    ]
    return np.sort(np.concatenate(picks))


def _flat(x: np.ndarray) -> np.ndarray:
    return np.asarray(x).reshape(len(x), -1).astype(np.float32, copy=False)


def _sample(x: Any, y: np.ndarray, cap: int, rng: np.random.Generator, stratified: bool):
    if len(y) <= cap:
        return _flat(x[:]), y
    keep = _choose(y, cap, rng, stratified)
    return _flat(x[keep]), y[keep]


def _held_out(parts: Parts, cap: int, rng: np.random.Generator, stratified: bool):
    """A sample of val and test together, reading only the rows drawn."""
    (x_val, y_val), (x_test, y_test) = parts["val"], parts["test"]
    y = np.concatenate([y_val, y_test])
    if len(y) <= cap:
        return _flat(np.concatenate([x_val[:], x_test[:]])), y
    keep = _choose(y, cap, rng, stratified)
    cut = int(np.searchsorted(keep, len(y_val)))
    x = np.concatenate([x_val[keep[:cut]], x_test[keep[cut:] - len(y_val)]])
    return _flat(x), y[keep]


def _accuracies(x_tr, y_tr, x_ho, y_ho, rng: np.random.Generator) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=min(NEIGHBOURS, len(y_tr)), algorithm="brute")
    out = {"knn": float((knn.fit(x_tr, y_tr).predict(x_ho) == y_ho).mean())}
    if x_tr.shape[1] > MAX_FEATURES:
        proj = rng.normal(size=(x_tr.shape[1], MAX_FEATURES)).astype(np.float32)
        proj /= np.sqrt(x_tr.shape[1])
        x_tr, x_ho = x_tr @ proj, x_ho @ proj
    logistic = LogisticRegression(max_iter=200, tol=1e-3)
    out["logistic"] = float((logistic.fit(x_tr, y_tr).predict(x_ho) == y_ho).mean())
    return out


def probe(
    parts: Parts, num_classes: int, where: str, seed: int = 0, stratified: bool = False
) -> dict:
    """The probe's figures for reports/data_validation.json; DataError when nothing is learnt."""
    import warnings

    from scipy.stats import binom
    from sklearn.exceptions import ConvergenceWarning

    rng = np.random.default_rng(seed)
    x_tr, y_tr = _sample(*parts["train"], MAX_TRAIN, rng, stratified)
    x_ho, y_ho = _held_out(parts, MAX_HELD_OUT, rng, stratified)
    sampled = len(y_tr) < len(parts["train"][1]) or len(y_ho) < sum(
        len(parts[s][1]) for s in ("val", "test")
    )
    n = len(y_ho)
    majority = float(np.bincount(y_ho, minlength=num_classes).max() / n)
    accuracies: dict[str, float] = {}
    if len(np.unique(y_tr)) > 1:  # a single train class is refused before; never crash here
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            accuracies = _accuracies(x_tr, y_tr, x_ho, y_ho, rng)
    alpha = ALPHA / 2  # Bonferroni over the two probes

    def p_value(acc: float) -> float:  # P(at least this many right | majority rate)
        return float(binom.sf(round(acc * n) - 1, n, majority))

    p_values = {k: p_value(a) for k, a in accuracies.items()}
    if p_value(1.0) >= alpha or not accuracies:
        verdict = "inconclusive"  # even a perfect score could be chance
    else:
        verdict = "learnable" if min(p_values.values()) < alpha else "not learnable"
    report = {
        "verdict": verdict,
        "held_out_samples": n,
        "train_samples": len(y_tr),
        "majority_accuracy": round(majority, 4),
        "accuracy": {k: round(a, 4) for k, a in accuracies.items()},
        "p_value": {k: float(f"{p:.3g}") for k, p in p_values.items()},
        "alpha": ALPHA,
    }
    if stratified and sampled:  # the uniform draw of in-memory sources stays as it was
        report["sample"] = {
            "method": STRATIFIED,
            "max_train": MAX_TRAIN,
            "max_held_out": MAX_HELD_OUT,
        }
    if verdict == "not learnable":
        best = max(accuracies, key=lambda k: accuracies[k])
        raise DataError(
            f"{where}: the labels look unrelated to the features: a {best} probe fit on train "
            f"scores {accuracies[best]:.3f} on {n} val/test samples against the majority-class "
            f"rate {majority:.3f} (one-sided binomial p = {p_values[best]:.3g}, expected below "
            f"{alpha:.3g}); check that x and y are aligned and the labels are the right column"
        )
    return report
