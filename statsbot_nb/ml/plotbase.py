"""What every plot of a model shares: the kinds, their titles, figures without pyplot, the held-out sample.

The bottom of the plotting modules (:mod:`statsbot_nb.ml.plots` chooses and draws, with the drawing of each
kind in :mod:`statsbot_nb.ml.plotkinds`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from io import BytesIO
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import JobError
from .constants import CLASSIFICATION, REGRESSION

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PLOT_KINDS: dict[str, list[str]] = {
    REGRESSION: ["predicted_vs_actual", "residuals", "feature_importance", "learning_curve"],
    CLASSIFICATION: [
        "confusion_matrix",
        "roc",
        "precision_recall",
        "calibration",
        "feature_importance",
        "learning_curve",
    ],
}
KIND_TITLES = {
    "predicted_vs_actual": "Predicted vs actual",
    "residuals": "Residuals",
    "feature_importance": "Feature importance",
    "confusion_matrix": "Confusion matrix",
    "roc": "ROC curve",
    "precision_recall": "Precision-recall curve",
    "calibration": "Calibration",
    "learning_curve": "Learning curve",
}
LOWER_IS_BETTER = frozenset({"mse", "rmse", "mae", "brier_score", "log_loss"})
FIGSIZE = (6.0, 4.0)
DPI = 100
MAX_CLASS_CURVES = 10
MAX_BARS = 20
MAX_COMPARED = 25
MAX_UNLABELLED_CLASSES = 1000
PROBA_KINDS = frozenset({"roc", "precision_recall", "calibration"})
ALL_KINDS = list(dict.fromkeys(PLOT_KINDS[REGRESSION] + PLOT_KINDS[CLASSIFICATION]))
GREY = "0.45"


class PlotError(JobError, ValueError):
    """A plot kind that does not exist for this model, or cannot be drawn from what was saved."""


@functools.cache
def figure_class() -> type[Figure]:
    """The Figure subclass plots return, made on first use so importing this module stays cheap."""
    from matplotlib.figure import Figure

    class ModelFigure(Figure):
        """A Figure that shows itself as PNG in Jupyter even when pyplot was never imported."""

        def _repr_png_(self) -> bytes:
            return figure_to_png(self)

    return ModelFigure


def new_figure(height: float = FIGSIZE[1]) -> Figure:
    return figure_class()(figsize=(FIGSIZE[0], height), dpi=DPI, layout="constrained")


def figure_to_png(fig: Figure, dpi: float | None = None) -> bytes:
    """The PNG bytes of ``fig`` (the Agg canvas is attached by matplotlib; no pyplot needed)."""
    buffer = BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi or DPI)
    return buffer.getvalue()


# -- what can be drawn --------------------------------------------------------------------------------


def finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def task_of(metadata: Mapping[str, Any], artefacts: Mapping[str, Any] | None) -> str | None:
    """The model's task from its metadata, else guessed from its artefacts; None when neither says."""
    task = metadata.get("task_type")
    if task in PLOT_KINDS:
        return str(task)
    if artefacts and "y_true" in artefacts:
        return CLASSIFICATION if "class_labels" in artefacts or "proba" in artefacts else REGRESSION
    return None


def default_kind(task: str | None) -> str:
    """The most telling plot for ``task``: predicted vs actual, or the confusion matrix."""
    return PLOT_KINDS.get(task or "", PLOT_KINDS[REGRESSION])[0]


@dataclass(frozen=True)
class HeldOut:
    """The validated held-out sample: finite values, class indices inside the label list."""

    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray | None
    labels: list[str]


def held_out(metadata: Mapping[str, Any], artefacts: Mapping[str, Any] | None, task: str) -> tuple[HeldOut | None, str]:
    """The held-out sample ready to draw, or None and the sentence saying why it cannot be used."""
    if not artefacts:
        old = not isinstance(metadata.get("format_version"), int)
        return None, (
            "No held-out predictions were saved with this model"
            + (" (it was trained by an older worker)" if old else "")
            + "; train it again with this worker to get this plot."
        )
    try:
        y_true = np.asarray(artefacts["y_true"]).ravel()
        y_pred = np.asarray(artefacts["y_pred"]).ravel()
        if len(y_true) != len(y_pred) or len(y_true) == 0:
            raise ValueError("lengths")
        if task == REGRESSION:
            y_true, y_pred = y_true.astype("float64"), y_pred.astype("float64")
            keep = np.isfinite(y_true) & np.isfinite(y_pred)
            if not keep.any():
                raise ValueError("no finite rows")
            return HeldOut(y_true[keep], y_pred[keep], None, []), ""
        y_true, y_pred = y_true.astype("int64"), y_pred.astype("int64")
    except (KeyError, TypeError, ValueError):
        return None, "The held-out predictions saved with this model are incomplete or damaged."
    raw_labels = artefacts.get("class_labels")
    if raw_labels is None:
        raw_labels = metadata.get("class_labels")
    labels = [str(v) for v in np.asarray(raw_labels).ravel()] if raw_labels is not None else []
    top = int(max(y_true.max(), y_pred.max()))
    if min(y_true.min(), y_pred.min()) < 0 or top >= (len(labels) or MAX_UNLABELLED_CLASSES):
        return None, "The held-out predictions saved with this model are incomplete or damaged."
    labels = labels or [str(i) for i in range(top + 1)]
    proba = artefacts.get("proba")
    if proba is not None:
        proba = np.asarray(proba, dtype="float64")
        if proba.shape != (len(y_true), len(labels)) or not np.isfinite(proba).all():
            proba = None
    return HeldOut(y_true, y_pred, proba, labels), ""


def importances_of(metadata: Mapping[str, Any]) -> dict[str, float]:
    raw = metadata.get("feature_importances")
    if not isinstance(raw, Mapping):
        return {}
    values = {str(k): v for k, v in ((k, finite(v)) for k, v in raw.items()) if v is not None}
    return values if any(v > 0 for v in values.values()) else {}


def importance_reason(metadata: Mapping[str, Any]) -> str | None:
    if importances_of(metadata):
        return None
    if metadata.get("feature_importance_method") == "none":
        return (
            "This model has no built-in feature importances, and permutation importance was skipped "
            "(too many features or too few held-out rows)."
        )
    if not isinstance(metadata.get("format_version"), int):
        return "No feature importances were saved with this model (it was trained by an older worker)."
    return "No feature importances were saved with this model."


def curve_classes(held: HeldOut) -> tuple[list[int], int]:
    """Classes that get a one-vs-rest curve (the positive class of a binary model) and how many could."""
    counts = np.bincount(held.y_true, minlength=len(held.labels))
    usable = [c for c in range(len(held.labels)) if 0 < counts[c] < len(held.y_true)]
    if len(held.labels) == 2:
        return ([1] if 1 in usable else []), 1
    usable.sort(key=lambda c: (-counts[c], c))
    return sorted(usable[:MAX_CLASS_CURVES]), len(usable)


def model_name(metadata: Mapping[str, Any]) -> str:
    name = str(metadata.get("display_name") or metadata.get("custom_name") or metadata.get("model_id") or "model")
    return name if len(name) <= 60 else name[:59] + "…"
