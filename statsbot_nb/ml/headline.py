"""The metric a model is judged by (its *headline*), and how it is written for people.

Pure and numpy-free: the dispatch table, the panel (on the event loop) and the plots all call it on
metadata, ``list_models`` entries and train results alike (anything with ``metrics`` and ``task_type``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

from .constants import CLASSIFICATION, REGRESSION

#: The metric a model is judged by, per task (the bot shows the same two).
HEADLINE_METRIC: dict[str, str] = {REGRESSION: "r2", CLASSIFICATION: "accuracy"}

#: How a metric's name is shown in figures and notebook summaries.
METRIC_LABELS: dict[str, str] = {
    "r2": "R²",
    "mse": "MSE",
    "rmse": "RMSE",
    "mae": "MAE",
    "accuracy": "accuracy",
    "precision": "precision",
    "recall": "recall",
    "f1": "F1",
    "roc_auc": "ROC AUC",
    "auc_pr": "PR AUC",
    "brier_score": "Brier score",
    "log_loss": "log loss",
}


def headline_metric(metadata: Mapping[str, Any]) -> tuple[str | None, float | None]:
    """``(name, value)`` of the metric a model is judged by: r2 (regression) or accuracy (classification).

    The value is None when the metric was not recorded or is not a finite number; the name is None when
    the task is unknown too.
    """
    metrics = metadata.get("metrics")
    metrics = metrics if isinstance(metrics, Mapping) else {}
    task = metadata.get("task_type")
    names = [HEADLINE_METRIC[task]] if task in HEADLINE_METRIC else ["r2", "accuracy"]
    for name in names:
        value = metrics.get(name)
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value)):
            return name, float(value)
    return (names[0] if len(names) == 1 else None), None


def metric_label(name: str | None) -> str | None:
    """A metric's name as people read it (``r2`` -> ``R²``); unknown names are shown as they are."""
    return METRIC_LABELS.get(name or "", name)


def headline_text(metadata: Mapping[str, Any], sep: str = "=", labelled: bool = False) -> str:
    """The headline as text, ``r2=0.912`` (``sep`` between name and value; ``labelled`` gives ``R²``).

    Empty when the model has no usable headline metric, so callers choose their own placeholder.
    """
    name, value = headline_metric(metadata)
    if value is None:
        return ""
    return f"{metric_label(name) if labelled else name}{sep}{value:.3f}"
