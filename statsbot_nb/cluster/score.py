"""Scoring a classifier's held-out rows on the cluster: sums per partition, metrics from the sums here.

The label metrics (accuracy, precision, recall, f1) come exactly from the summed confusion matrix, with
the same averaging as :func:`statsbot_nb.ml.evaluate.classification_metrics` (binary: the second class;
multiclass: weighted by support). ``log_loss`` and ``brier_score`` are exact sums too. ROC AUC and the
average precision need every probability at once, so they come from the hash sample of held-out rows
(every held-out row when the table has at most :data:`statsbot_nb.cluster.prep.SAMPLE_ROWS` rows).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..ml import evaluate
from .prep import Layout, class_values, coerce, label_codes, transform

_EPS = float(np.finfo(np.float64).eps)  # what scikit-learn clips float64 probabilities to


def class_sums(part: pd.DataFrame, layout: Layout, model: Any, pre: Any, start: int = 0) -> dict[str, Any]:
    """One partition's confusion matrix, log-loss and Brier sums, and its sampled held-out rows."""
    classes = layout.classes or ()
    k = len(classes)
    X, target, held_out, sampled = coerce(part, layout, start)
    y = label_codes(class_values(target[held_out], layout), classes)
    Xt = transform(pre, X[held_out])
    if len(y):
        pred = np.asarray(model.predict(Xt)).astype("int64").ravel()
        proba = evaluate.predict_proba_or_none(model, Xt)
    else:
        pred, proba = np.zeros(0, dtype="int64"), np.zeros((0, k))
    confusion = np.zeros((k, k), dtype="int64")
    np.add.at(confusion, (y, pred), 1)
    out: dict[str, Any] = {"n": len(y), "confusion": confusion, "proba": proba is not None}
    keep = sampled[held_out]
    out.update(y_sample=y[keep], pred_sample=pred[keep], X_sample=Xt[keep])
    if proba is not None:
        clipped = np.clip(proba, 0.0, 1.0)
        onehot = np.eye(k)[y]
        out["log_loss"] = float(-np.log(np.clip(clipped[np.arange(len(y)), y], _EPS, 1.0)).sum()) if len(y) else 0.0
        brier = ((clipped[:, 1] - (y == 1)) ** 2).sum() if k == 2 else ((clipped - onehot) ** 2).sum() / 2
        out["brier"] = float(brier)
        out["proba_sample"] = clipped[keep]
    return out


def class_metrics(parts: list[dict[str, Any]], n_classes: int) -> dict[str, float | None]:
    """The classification metrics of every partition's sums (see the module docstring)."""
    confusion = sum(p["confusion"] for p in parts)
    n = int(confusion.sum())
    truth, predicted, hits = confusion.sum(axis=1), confusion.sum(axis=0), np.diag(confusion)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, hits / predicted, 0.0)
        recall = np.where(truth > 0, hits / truth, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    if n_classes == 2:
        p, r, f = precision[1], recall[1], f1[1]
    else:
        weights = truth / n if n else np.zeros(n_classes)
        p, r, f = (precision * weights).sum(), (recall * weights).sum(), (f1 * weights).sum()
    metrics: dict[str, float | None] = {
        "accuracy": float(hits.sum() / n) if n else None,
        "precision": float(p),
        "recall": float(r),
        "f1": float(f),
    }
    if all(part["proba"] for part in parts):
        y = np.concatenate([part["y_sample"] for part in parts])
        proba = np.concatenate([part["proba_sample"] for part in parts])
        sampled = evaluate.classification_metrics(y, y, proba, n_classes)  # for the ranking metrics only
        metrics["roc_auc"], metrics["auc_pr"] = sampled.get("roc_auc"), sampled.get("auc_pr")
        metrics["brier_score"] = float(sum(part["brier"] for part in parts) / n) if n else None
        metrics["log_loss"] = float(sum(part["log_loss"] for part in parts) / n) if n else None
    return metrics


__all__ = ["class_metrics", "class_sums"]
