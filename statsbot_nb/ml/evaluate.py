"""Scoring a fitted model on held-out rows: metrics, plot artefacts and feature importances.

Metric keys are the ones today's bot reads (PROTOCOL.md): regression ``r2, mse, rmse, mae``;
classification ``accuracy, precision, recall, f1`` (binary: the positive class, i.e. the second label in
sorted order such as 1, "yes" or True; multiclass: weighted by support) and, when the model gives
probabilities, ``roc_auc`` (multiclass: one-vs-rest weighted by support), ``auc_pr`` (average precision;
multiclass: weighted by support), ``brier_score`` (multiclass: scikit-learn's multiclass Brier score over the
one-hot labels, halved so it lies in [0, 1] like the binary one) and ``log_loss``. A metric that cannot be
computed on these rows (for example ROC AUC with a single class in the test set) is ``None``.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import numpy as np

log = logging.getLogger("statsbot_nb.train")

ARTEFACT_ROWS = 5000
IMPORTANCE_ROWS = 1000
IMPORTANCE_MAX_FEATURES = 60


def _num(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float | None]:
    """``r2, mse, rmse, mae`` of a regressor on held-out rows."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    mse = mean_squared_error(y_true, y_pred)
    r2 = r2_score(y_true, y_pred) if len(y_true) > 1 else None
    return {
        "r2": _num(r2),
        "mse": _num(mse),
        "rmse": _num(math.sqrt(mse)),
        "mae": _num(mean_absolute_error(y_true, y_pred)),
    }


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None, n_classes: int
) -> dict[str, float | None]:
    """Label and probability metrics of a classifier; labels are encoded 0..n_classes-1."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    binary = n_classes == 2
    kwargs: dict[str, Any] = {"zero_division": 0}
    if binary:
        kwargs.update(average="binary", pos_label=1)
    else:
        kwargs.update(average="weighted", labels=list(range(n_classes)))
    # One call for all three: precision_score, recall_score and f1_score each build the same confusion
    # matrix again (two thirds of the metrics' time on a small table).
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, **kwargs)
    metrics: dict[str, float | None] = {
        "accuracy": _num(accuracy_score(y_true, y_pred)),
        "precision": _num(precision),
        "recall": _num(recall),
        "f1": _num(f1),
    }
    if proba is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            metrics.update(_probability_metrics(y_true, proba, n_classes))
    return metrics


def _probability_metrics(y_true: np.ndarray, proba: np.ndarray, n_classes: int) -> dict[str, float | None]:
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    labels = list(range(n_classes))
    proba = np.clip(proba, 0.0, 1.0)
    out: dict[str, float | None] = {"roc_auc": None, "auc_pr": None, "brier_score": None, "log_loss": None}
    if n_classes == 2:
        positive = (y_true == 1).astype(int)
        if 0 < positive.sum() < len(positive):
            out["roc_auc"] = _num(roc_auc_score(positive, proba[:, 1]))
            out["auc_pr"] = _num(average_precision_score(positive, proba[:, 1]))
        out["brier_score"] = _num(brier_score_loss(positive, proba[:, 1], pos_label=1))
    else:
        aucs, aps, weights = [], [], []
        for k in labels:
            positive = (y_true == k).astype(int)
            support = int(positive.sum())
            if 0 < support < len(positive):
                aucs.append(roc_auc_score(positive, proba[:, k]))
                aps.append(average_precision_score(positive, proba[:, k]))
                weights.append(support)
        if weights:
            out["roc_auc"] = _num(np.average(aucs, weights=weights))
            out["auc_pr"] = _num(np.average(aps, weights=weights))
        # by hand: scikit-learn's own halves it or not depending on its version (1.9 does not)
        onehot = np.eye(n_classes)[y_true]
        out["brier_score"] = _num(((proba - onehot) ** 2).sum(axis=1).mean() / 2)
    try:
        out["log_loss"] = _num(log_loss(y_true, proba, labels=labels))
    except ValueError:
        log.debug("log_loss not computable", exc_info=True)
    return out


def predict_proba_or_none(estimator: Any, X: np.ndarray) -> np.ndarray | None:
    """Class probabilities when the model can give them, else None."""
    if not hasattr(estimator, "predict_proba"):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            proba = np.asarray(estimator.predict_proba(X), dtype="float64")
    except (AttributeError, ValueError, NotImplementedError):
        return None
    return proba if proba.ndim == 2 else None


def artefacts(
    y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray | None, labels: list[Any] | None
) -> dict[str, np.ndarray]:
    """A bounded sample (≤ :data:`ARTEFACT_ROWS`) of held-out truth, prediction and probabilities.

    Arrays only (``allow_pickle=False`` readable): ``y_true``, ``y_pred`` (encoded class indices for a
    classifier, floats for a regressor), ``proba`` (n x k, classifiers with probabilities) and
    ``class_labels`` (the user's labels as text).
    """
    n = len(y_true)
    index = np.arange(n)
    if n > ARTEFACT_ROWS:
        index = np.sort(np.random.default_rng(0).choice(n, ARTEFACT_ROWS, replace=False))
    out: dict[str, np.ndarray] = {"y_true": np.asarray(y_true)[index], "y_pred": np.asarray(y_pred)[index]}
    if proba is not None:
        out["proba"] = np.asarray(proba, dtype="float32")[index]
    if labels is not None:
        out["class_labels"] = np.array([str(label) for label in labels], dtype=str)
    return out


def feature_importances(
    model: Any, Xt_test: np.ndarray, y_test: np.ndarray, sources: list[str], features: list[str], scoring: str
) -> tuple[dict[str, float], str]:
    """Importance per input column, normalised to sum to 1, and how it was measured.

    ``Xt_test`` is the *preprocessed* held-out matrix and ``sources`` names the input column of each of its
    columns (one-hot columns sum back to their source). Tree models use their own impurity/gain importances
    (``"model"``); linear models the size of each coefficient times its column's spread (``"coefficients"``,
    the standardised coefficient: free, where permutation importance cost more than the fit itself on
    200,000 rows); every other model permutation importance on at most :data:`IMPORTANCE_ROWS` held-out rows,
    permuting the preprocessed columns of one input column together (``"permutation"``), which skips the
    preprocessing that calling the whole pipeline 60 times would repeat.
    """
    native = getattr(model, "feature_importances_", None)
    if native is not None and len(native) == len(sources):
        return _by_source(np.abs(np.asarray(native, dtype="float64")), sources, features), "model"
    coef = getattr(model, "coef_", None)
    if coef is not None:
        weights = np.abs(np.asarray(coef, dtype="float64"))
        weights = weights.reshape(-1, weights.shape[-1]).mean(axis=0) if weights.ndim > 1 else weights
        if len(weights) == len(sources) and len(y_test):
            spread = np.asarray(Xt_test, dtype="float64").std(axis=0)
            return _by_source(weights * spread, sources, features), "coefficients"
    if len(features) > IMPORTANCE_MAX_FEATURES or len(y_test) < 5:
        return {}, "none"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            drops = _permutation_drops(model, np.asarray(Xt_test), np.asarray(y_test), sources, features, scoring)
    except (ValueError, TypeError, IndexError):
        log.debug("permutation importance failed", exc_info=True)
        return {}, "none"
    return _normalise({f: max(0.0, v) for f, v in drops.items()}), "permutation"


def _by_source(values: np.ndarray, sources: list[str], features: list[str]) -> dict[str, float]:
    """Per-output-column values summed back to the input column each came from, then normalised."""
    totals = dict.fromkeys(features, 0.0)
    for source, value in zip(sources, values, strict=True):
        if source in totals and math.isfinite(value):
            totals[source] += abs(float(value))
    return _normalise(totals)


def _permutation_drops(
    model: Any, X: np.ndarray, y: np.ndarray, sources: list[str], features: list[str], scoring: str, repeats: int = 3
) -> dict[str, float]:
    """Mean drop of the score (accuracy or R²) when one input column's preprocessed columns are shuffled."""
    from sklearn.metrics import accuracy_score, r2_score

    rng = np.random.default_rng(0)
    if len(y) > IMPORTANCE_ROWS:
        rows = np.sort(rng.choice(len(y), IMPORTANCE_ROWS, replace=False))
        X, y = X[rows], y[rows]
    X = np.array(X, dtype="float64", copy=True)

    def score(matrix: np.ndarray) -> float:
        pred = np.asarray(model.predict(matrix))
        if scoring == "accuracy":
            return float(accuracy_score(y, pred.astype("int64").ravel()))
        return float(r2_score(y, pred.astype("float64").ravel()))

    baseline = score(X)
    columns = {f: [i for i, s in enumerate(sources) if s == f] for f in features}
    drops: dict[str, float] = {}
    for feature, cols in columns.items():
        if not cols:
            drops[feature] = 0.0
            continue
        saved = X[:, cols].copy()
        total = 0.0
        for _ in range(repeats):
            X[:, cols] = saved[rng.permutation(len(y))]
            total += baseline - score(X)
        X[:, cols] = saved
        drops[feature] = total / repeats
    return drops


def _normalise(values: dict[str, float]) -> dict[str, float]:
    total = sum(values.values())
    if total <= 0 or not math.isfinite(total):
        return {k: 0.0 for k in values}
    ranked = sorted(values.items(), key=lambda kv: kv[1], reverse=True)
    return {k: round(v / total, 6) for k, v in ranked}
