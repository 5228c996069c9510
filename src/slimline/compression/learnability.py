"""A cheap learnability probe: do the labels say anything about the features?

Two quick classifiers (k nearest neighbours and logistic regression) fit on a capped sample of
the prepared train split and are scored on the held-out val and test splits. Labels independent
of the features give any classifier at most the majority-class rate, so each probe's accuracy
is tested one-sided against that rate (binomial, alpha split between the probes). If neither
beats it, the data is refused before anything is trained. When the held-out split is so small
that even a perfect score would not be significant the verdict is `inconclusive`, not a refusal.
"""

from __future__ import annotations

import numpy as np

from slimline.compression.data import DataError

ALPHA = 0.01
MAX_TRAIN = 2000  # train samples the probes fit on
MAX_HELD_OUT = 2000  # val + test samples they are scored on
MAX_FEATURES = 256  # logistic regression sees a random projection of wider inputs
NEIGHBOURS = 5

Parts = dict[str, tuple[np.ndarray, np.ndarray]]


def _sample(x: np.ndarray, y: np.ndarray, cap: int, rng: np.random.Generator):
    flat = x.reshape(len(x), -1).astype(np.float32)
    if len(flat) > cap:
        keep = np.sort(rng.choice(len(flat), cap, replace=False))
        flat, y = flat[keep], y[keep]
    return flat, y


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


def probe(parts: Parts, num_classes: int, where: str, seed: int = 0) -> dict:
    """The probe's figures for reports/data_validation.json; DataError when nothing is learnt."""
    import warnings

    from scipy.stats import binom
    from sklearn.exceptions import ConvergenceWarning

    rng = np.random.default_rng(seed)
    x_tr, y_tr = _sample(*parts["train"], MAX_TRAIN, rng)
    x_ho = np.concatenate([parts[s][0] for s in ("val", "test")])
    y_ho = np.concatenate([parts[s][1] for s in ("val", "test")])
    x_ho, y_ho = _sample(x_ho, y_ho, MAX_HELD_OUT, rng)
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
    if verdict == "not learnable":
        best = max(accuracies, key=lambda k: accuracies[k])
        raise DataError(
            f"{where}: the labels look unrelated to the features: a {best} probe fit on train "
            f"scores {accuracies[best]:.3f} on {n} val/test samples against the majority-class "
            f"rate {majority:.3f} (one-sided binomial p = {p_values[best]:.3g}, expected below "
            f"{alpha:.3g}); check that x and y are aligned and the labels are the right column"
        )
    return report
