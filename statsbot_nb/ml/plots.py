"""Pictures of a trained model, drawn from what the store kept at training time.

Every plot is built from ``metadata.json`` (metrics, feature importances, class labels) and
``artefacts.npz`` (a held-out sample: ``y_true``, ``y_pred``, ``proba``, ``class_labels``; see
:func:`statsbot_nb.ml.evaluate.artefacts`), so it works long after the training data is gone. Figures are
plain :class:`matplotlib.figure.Figure` objects made without pyplot (pyplot's global figure registry leaks
memory in a long-lived kernel); they show themselves in Jupyter as PNG and save with ``fig.savefig``.

Kinds (:data:`PLOT_KINDS`); the first of each list is the default, the most telling picture for the task:

- regression: ``predicted_vs_actual``, ``residuals``, ``feature_importance``;
- classification: ``confusion_matrix``, ``roc``, ``precision_recall``, ``calibration``,
  ``feature_importance`` (ROC and precision-recall are one-vs-rest per class for multiclass models, at most
  :data:`MAX_CLASS_CURVES` classes, the most frequent ones).

Figures stay small and fast whatever the size of the held-out sample: scatter plots draw at most
``max_points`` rows (a seeded random subsample, so the same model always gives the same picture), while
histograms, confusion matrices and curves use every row (they cost a sort or a bincount, not a marker each).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import JobError
from .constants import CLASSIFICATION, PLOT_SAMPLE_SEED, REGRESSION
from .headline import METRIC_LABELS, headline_metric, headline_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PLOT_KINDS: dict[str, list[str]] = {
    REGRESSION: ["predicted_vs_actual", "residuals", "feature_importance"],
    CLASSIFICATION: ["confusion_matrix", "roc", "precision_recall", "calibration", "feature_importance"],
}
KIND_TITLES = {
    "predicted_vs_actual": "Predicted vs actual",
    "residuals": "Residuals",
    "feature_importance": "Feature importance",
    "confusion_matrix": "Confusion matrix",
    "roc": "ROC curve",
    "precision_recall": "Precision-recall curve",
    "calibration": "Calibration",
}
LOWER_IS_BETTER = frozenset({"mse", "rmse", "mae", "brier_score", "log_loss"})
FIGSIZE = (6.0, 4.0)
DPI = 100
MAX_CLASS_CURVES = 10
MAX_BARS = 20
MAX_COMPARED = 25
_MAX_UNLABELLED_CLASSES = 1000
_PROBA_KINDS = frozenset({"roc", "precision_recall", "calibration"})
_ALL_KINDS = list(dict.fromkeys(PLOT_KINDS[REGRESSION] + PLOT_KINDS[CLASSIFICATION]))
_GREY = "0.45"


class PlotError(JobError, ValueError):
    """A plot kind that does not exist for this model, or cannot be drawn from what was saved."""


@functools.cache
def _figure_class() -> type[Figure]:
    """The Figure subclass plots return, made on first use so importing this module stays cheap."""
    from matplotlib.figure import Figure

    class ModelFigure(Figure):
        """A Figure that shows itself as PNG in Jupyter even when pyplot was never imported."""

        def _repr_png_(self) -> bytes:
            return figure_to_png(self)

    return ModelFigure


def _figure(height: float = FIGSIZE[1]) -> Figure:
    return _figure_class()(figsize=(FIGSIZE[0], height), dpi=DPI, layout="constrained")


def figure_to_png(fig: Figure, dpi: float | None = None) -> bytes:
    """The PNG bytes of ``fig`` (the Agg canvas is attached by matplotlib; no pyplot needed)."""
    buffer = BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi or DPI)
    return buffer.getvalue()


# -- what can be drawn --------------------------------------------------------------------------------


def _finite(value: Any) -> float | None:
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
class _HeldOut:
    """The validated held-out sample: finite values, class indices inside the label list."""

    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray | None
    labels: list[str]


def _held_out(
    metadata: Mapping[str, Any], artefacts: Mapping[str, Any] | None, task: str
) -> tuple[_HeldOut | None, str]:
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
            return _HeldOut(y_true[keep], y_pred[keep], None, []), ""
        y_true, y_pred = y_true.astype("int64"), y_pred.astype("int64")
    except (KeyError, TypeError, ValueError):
        return None, "The held-out predictions saved with this model are incomplete or damaged."
    raw_labels = artefacts.get("class_labels")
    if raw_labels is None:
        raw_labels = metadata.get("class_labels")
    labels = [str(v) for v in np.asarray(raw_labels).ravel()] if raw_labels is not None else []
    top = int(max(y_true.max(), y_pred.max()))
    if min(y_true.min(), y_pred.min()) < 0 or top >= (len(labels) or _MAX_UNLABELLED_CLASSES):
        return None, "The held-out predictions saved with this model are incomplete or damaged."
    labels = labels or [str(i) for i in range(top + 1)]
    proba = artefacts.get("proba")
    if proba is not None:
        proba = np.asarray(proba, dtype="float64")
        if proba.shape != (len(y_true), len(labels)) or not np.isfinite(proba).all():
            proba = None
    return _HeldOut(y_true, y_pred, proba, labels), ""


def _importances(metadata: Mapping[str, Any]) -> dict[str, float]:
    raw = metadata.get("feature_importances")
    if not isinstance(raw, Mapping):
        return {}
    values = {str(k): v for k, v in ((k, _finite(v)) for k, v in raw.items()) if v is not None}
    return values if any(v > 0 for v in values.values()) else {}


def _importance_reason(metadata: Mapping[str, Any]) -> str | None:
    if _importances(metadata):
        return None
    if metadata.get("feature_importance_method") == "none":
        return (
            "This model has no built-in feature importances, and permutation importance was skipped "
            "(too many features or too few held-out rows)."
        )
    if not isinstance(metadata.get("format_version"), int):
        return "No feature importances were saved with this model (it was trained by an older worker)."
    return "No feature importances were saved with this model."


def _curve_classes(held: _HeldOut) -> tuple[list[int], int]:
    """Classes that get a one-vs-rest curve (the positive class of a binary model) and how many could."""
    counts = np.bincount(held.y_true, minlength=len(held.labels))
    usable = [c for c in range(len(held.labels)) if 0 < counts[c] < len(held.y_true)]
    if len(held.labels) == 2:
        return ([1] if 1 in usable else []), 1
    usable.sort(key=lambda c: (-counts[c], c))
    return sorted(usable[:MAX_CLASS_CURVES]), len(usable)


def available_kinds(metadata: Mapping[str, Any], artefacts: Mapping[str, Any] | None) -> dict[str, str | None]:
    """Every plot kind for this model's task, mapped to None (drawable) or the sentence saying why not."""
    task = task_of(metadata, artefacts)
    out: dict[str, str | None] = {}
    held, why = (
        _held_out(metadata, artefacts, task)
        if task
        else (None, "The model's metadata does not say whether it is a regression or a classification model.")
    )
    for kind in PLOT_KINDS[task] if task else _ALL_KINDS:
        if kind == "feature_importance":
            out[kind] = _importance_reason(metadata)
        elif held is None:
            out[kind] = why
        elif kind in _PROBA_KINDS and held.proba is None:
            out[kind] = "This model did not save class probabilities, so there is no curve to draw."
        elif kind in ("roc", "precision_recall") and not _curve_classes(held)[0]:
            out[kind] = "The held-out rows hold a single class, so there is no curve to draw."
        else:
            out[kind] = None
    return out


def _name(metadata: Mapping[str, Any]) -> str:
    name = str(metadata.get("display_name") or metadata.get("custom_name") or metadata.get("model_id") or "model")
    return name if len(name) <= 60 else name[:59] + "…"


def make_plot(
    kind: str | None, metadata: Mapping[str, Any], artefacts: Mapping[str, Any] | None, *, max_points: int = 5000
) -> Figure:
    """Draw one plot kind (None: the task's default, or the first drawable one) and return the Figure.

    Raises :class:`PlotError` naming the valid kinds for an unknown kind, and saying why for a kind this
    model cannot draw.
    """
    task = task_of(metadata, artefacts)
    kinds = available_kinds(metadata, artefacts)
    name = _name(metadata)
    if kind is None:
        drawable = [k for k, why in kinds.items() if why is None]
        if not drawable:
            reasons = sorted({why for why in kinds.values() if why})
            raise PlotError(f"No plot can be drawn for {name}: {' '.join(reasons)}")
        kind = default_kind(task) if default_kind(task) in drawable else drawable[0]
    if kind not in kinds:
        what = f"a {task} model" if task else "this model"
        raise PlotError(f"{kind!r} is not a plot kind for {what}; choose one of: {', '.join(kinds)}.")
    if kinds[kind]:
        raise PlotError(f"The {KIND_TITLES[kind].lower()} of {name} is not available. {kinds[kind]}")
    max_points = max(100, int(max_points))
    if kind == "feature_importance":
        fig = _feature_importance(metadata)
    else:
        held = _held_out(metadata, artefacts, str(task))[0]
        assert held is not None  # available_kinds said it is drawable
        fig = _DRAW[kind](held, metadata, max_points)
    headline = headline_text(metadata, sep=" ", labelled=True)
    score = f" · {headline}" if headline else ""
    fig.suptitle(f"{name}{score}", fontsize=11, fontweight="bold")
    return fig


# -- regression ---------------------------------------------------------------------------------------


def _subsample(n: int, max_points: int) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(PLOT_SAMPLE_SEED).choice(n, max_points, replace=False))


def _note(ax: Any, text: str, *, loc: str = "lower right") -> None:
    x, ha = (0.99, "right") if "right" in loc else (0.01, "left")
    y, va = (0.01, "bottom") if "lower" in loc else (0.99, "top")
    ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, fontsize=7, color=_GREY)


def _rows_note(shown: int, total: int) -> str:
    return f"{shown:,} of {total:,} held-out rows shown" if shown < total else f"{total:,} held-out rows"


def _scatter(ax: Any, x: np.ndarray, y: np.ndarray) -> None:
    small = len(x) <= 1000
    ax.scatter(x, y, s=12 if small else 5, alpha=0.6 if small else 0.3, color="C0", edgecolors="none")


def _target(metadata: Mapping[str, Any]) -> str:
    target = metadata.get("target_column")
    return str(target) if target else "target"


def _predicted_vs_actual(held: _HeldOut, metadata: Mapping[str, Any], max_points: int) -> Figure:
    fig = _figure()
    ax = fig.add_subplot()
    idx = _subsample(len(held.y_true), max_points)
    _scatter(ax, held.y_true[idx], held.y_pred[idx])
    lo = float(min(held.y_true.min(), held.y_pred.min()))
    hi = float(max(held.y_true.max(), held.y_pred.max()))
    pad = (hi - lo) * 0.03 or 1.0
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "--", color=_GREY, lw=1, label="perfect prediction")
    ax.set(
        xlim=(lo - pad, hi + pad),
        ylim=(lo - pad, hi + pad),
        title="Predicted vs actual",
        xlabel=f"Actual {_target(metadata)}",
        ylabel=f"Predicted {_target(metadata)}",
    )
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    err = held.y_true - held.y_pred
    rmse, mae = math.sqrt(float(np.mean(err**2))), float(np.mean(np.abs(err)))
    _note(ax, f"RMSE {rmse:.4g} · MAE {mae:.4g} · {_rows_note(len(idx), len(err))}")
    return fig


def _residuals(held: _HeldOut, metadata: Mapping[str, Any], max_points: int) -> Figure:
    fig = _figure()
    grid = fig.add_gridspec(1, 2, width_ratios=[4, 1])
    ax = fig.add_subplot(grid[0])
    side = fig.add_subplot(grid[1], sharey=ax)
    resid = held.y_true - held.y_pred
    idx = _subsample(len(resid), max_points)
    _scatter(ax, held.y_pred[idx], resid[idx])
    ax.axhline(0, color=_GREY, lw=1, ls="--")
    # Mean residual per predicted-value bin (every row): a curve away from 0 shows a systematic bias.
    n_bins = int(np.clip(len(resid) // 30, 4, 15))  # about 30+ rows a bin, so the curve is not noise
    edges = np.unique(np.quantile(held.y_pred, np.linspace(0, 1, n_bins + 1)))
    if len(edges) > 2:
        which = np.clip(np.searchsorted(edges, held.y_pred, side="right") - 1, 0, len(edges) - 2)
        counts = np.bincount(which, minlength=len(edges) - 1)
        ok = counts > 0
        means = np.bincount(which, weights=resid, minlength=len(edges) - 1)[ok] / counts[ok]
        centres = ((edges[:-1] + edges[1:]) / 2)[ok]
        ax.plot(centres, means, color="C3", lw=1.5, label="mean residual")
        ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.set(title="Residuals", xlabel=f"Predicted {_target(metadata)}", ylabel="Residual (actual − predicted)")
    _note(ax, _rows_note(len(idx), len(resid)))
    side.hist(resid, bins=int(np.clip(len(resid) // 5, 10, 40)), orientation="horizontal", color="C0", alpha=0.7)
    side.axhline(0, color=_GREY, lw=1, ls="--")
    side.tick_params(labelleft=False, labelsize=7)
    side.set_xlabel("rows", fontsize=8)
    return fig


# -- classification -----------------------------------------------------------------------------------


def _short(text: str, width: int = 16) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _middle(text: str, width: int = 36) -> str:
    """Shorten by cutting out the middle: model names often differ only at the end ("... (ridge)")."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[-(width - 1 - head) :]


def _confusion_matrix(held: _HeldOut, metadata: Mapping[str, Any], max_points: int) -> Figure:
    k = len(held.labels)
    counts = np.bincount(held.y_true * k + held.y_pred, minlength=k * k).reshape(k, k)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape, dtype="float64"), where=totals > 0)
    fig = _figure(4.0 if k <= 8 else 5.0)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02).set_label("share of the actual class", fontsize=8)
    if k <= 12:  # counts and shares while they fit, shares only up to 12 classes, colour alone beyond
        for i in range(k):
            for j in range(k):
                text = f"{counts[i, j]:,}\n{share[i, j]:.0%}" if k <= 6 else f"{share[i, j]:.0%}"
                ax.text(
                    j,
                    i,
                    text,
                    ha="center",
                    va="center",
                    fontsize=9 if k <= 4 else 7,
                    color="white" if share[i, j] > 0.55 else "black",
                )
    step = max(1, math.ceil(k / 25))
    ticks = list(range(0, k, step))
    names = [_short(held.labels[t]) for t in ticks]
    slanted = max(map(len, names)) > 4
    ax.set_xticks(ticks, names, rotation=30 if slanted else 0, ha="right" if slanted else "center", fontsize=8)
    ax.set_yticks(ticks, names, fontsize=8)
    ax.set(title="Confusion matrix", xlabel="Predicted class", ylabel=f"Actual {_target(metadata)}")
    return fig


def _curve_legend(ax: Any, loc: str, shown: int, usable: int, n: int) -> None:
    """The legend, titled with how many rows (and which classes) the curves come from."""
    extra = f"{shown} most frequent of {usable} classes, " if usable > shown else ""
    legend = ax.legend(
        loc=loc, fontsize=7 if shown > 4 else 8, frameon=False, title=f"{extra}{n:,} held-out rows", title_fontsize=7
    )
    legend.get_title().set_color(_GREY)


def _thin(x: np.ndarray, y: np.ndarray, limit: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """At most ``limit`` evenly spaced vertices of a curve (ends kept): a 600-pixel line looks the same."""
    if len(x) <= limit:
        return x, y
    keep = np.unique(np.linspace(0, len(x) - 1, limit).astype("int64"))
    return x[keep], y[keep]


def _roc(held: _HeldOut, metadata: Mapping[str, Any], max_points: int) -> Figure:
    from sklearn.metrics import auc as area
    from sklearn.metrics import roc_curve

    assert held.proba is not None
    fig = _figure()
    ax = fig.add_subplot()
    classes, usable = _curve_classes(held)
    for c in classes:
        positive = held.y_true == c
        fpr, tpr, _ = roc_curve(positive, held.proba[:, c])
        label = f"{_short(held.labels[c], 20)} (AUC {area(fpr, tpr):.3f})"
        ax.plot(*_thin(fpr, tpr), lw=1.5, label=("positive: " if len(held.labels) == 2 else "") + label)
    ax.plot([0, 1], [0, 1], "--", color=_GREY, lw=1, label="chance")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        title="ROC curve" + (" (one vs rest)" if len(held.labels) > 2 else ""),
        xlabel="False positive rate",
        ylabel="True positive rate",
    )
    _curve_legend(ax, "lower right", len(classes), usable, len(held.y_true))
    return fig


def _precision_recall(held: _HeldOut, metadata: Mapping[str, Any], max_points: int) -> Figure:
    from sklearn.metrics import precision_recall_curve

    assert held.proba is not None
    fig = _figure()
    ax = fig.add_subplot()
    classes, usable = _curve_classes(held)
    for c in classes:
        positive = held.y_true == c
        precision, recall, _ = precision_recall_curve(positive, held.proba[:, c])
        ap = -float(np.sum(np.diff(recall) * precision[:-1]))  # average precision, as scikit-learn defines it
        label = f"{_short(held.labels[c], 20)} (AP {ap:.3f})"
        ax.plot(
            *_thin(recall, precision),
            lw=1.5,
            drawstyle="steps-post",
            label=("positive: " if len(held.labels) == 2 else "") + label,
        )
    if len(held.labels) == 2:
        ax.axhline(float(np.mean(held.y_true == 1)), color=_GREY, lw=1, ls="--", label="chance (share of positives)")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.02),
        xlabel="Recall",
        ylabel="Precision",
        title="Precision-recall curve" + (" (one vs rest)" if len(held.labels) > 2 else ""),
    )
    _curve_legend(ax, "lower left", len(classes), usable, len(held.y_true))
    return fig


def _calibration(held: _HeldOut, metadata: Mapping[str, Any], max_points: int) -> Figure:
    from sklearn.calibration import calibration_curve

    assert held.proba is not None
    if len(held.labels) == 2:
        prob, hit = held.proba[:, 1], held.y_true == 1
        xlabel, ylabel = f"Predicted probability of {_short(held.labels[1], 24)!r}", "Observed share"
    else:  # top-label calibration: how often the predicted class is right, against its probability
        prob, hit = held.proba.max(axis=1), held.proba.argmax(axis=1) == held.y_true
        xlabel, ylabel = "Probability of the predicted class", "Observed share correct"
    prob = np.clip(prob, 0.0, 1.0)
    n_bins = int(np.clip(len(prob) // 25, 5, 10))  # fewer, steadier bins for a small held-out set
    observed, predicted = calibration_curve(hit, prob, n_bins=n_bins, strategy="uniform")
    # Rows per non-empty bin, binned as calibration_curve does, so a point's size shows how much it weighs.
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, n_bins + 1)[1:-1], prob), minlength=n_bins)
    counts = counts[counts > 0]
    fig = _figure()
    grid = fig.add_gridspec(2, 1, height_ratios=[3, 1])
    ax = fig.add_subplot(grid[0])
    below = fig.add_subplot(grid[1], sharex=ax)
    ax.plot([0, 1], [0, 1], "--", color=_GREY, lw=1, label="perfectly calibrated")
    ax.plot(predicted, observed, "-", color="C0", lw=1.5, label="this model")
    if len(counts) == len(predicted):
        ax.scatter(
            predicted,
            observed,
            s=12 + 140 * np.sqrt(counts / counts.max()),
            color="C0",
            zorder=3,
            edgecolors="white",
            linewidths=0.5,
        )
    ax.set(xlim=(0, 1), ylim=(0, 1.02), title="Calibration", ylabel=ylabel)
    ax.tick_params(labelbottom=False)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    _note(ax, f"{len(prob):,} held-out rows · {n_bins} bins, point size = rows in the bin")
    below.hist(prob, bins=20, range=(0, 1), color="C0", alpha=0.7)
    below.set_xlabel(xlabel)
    below.set_ylabel("rows", fontsize=8)
    below.tick_params(labelsize=7)
    return fig


# -- any task -----------------------------------------------------------------------------------------


def _feature_importance(metadata: Mapping[str, Any]) -> Figure:
    from matplotlib.ticker import PercentFormatter

    ranked = sorted(_importances(metadata).items(), key=lambda kv: kv[1], reverse=True)
    shown = ranked[:MAX_BARS]
    fig = _figure(max(2.5, min(FIGSIZE[1] + 1, 1.2 + 0.22 * len(shown))))
    ax = fig.add_subplot()
    total = sum(v for _, v in ranked) or 1.0
    values = [v / total for _, v in shown][::-1]
    ax.barh(range(len(shown)), values, color="C0", alpha=0.85)
    ax.set_yticks(range(len(shown)), [_short(k, 28) for k, _ in shown][::-1], fontsize=8)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.1%}", va="center", fontsize=7)
    ax.set_xlim(0, max(values) * 1.18)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    how = {"model": "the model's own measure", "permutation": "permutation on held-out rows"}.get(
        str(metadata.get("feature_importance_method")), ""
    )
    ax.set(
        title="Feature importance", ylabel="Feature", xlabel="Share of total importance" + (f" ({how})" if how else "")
    )
    if len(ranked) > len(shown):
        _note(ax, f"top {len(shown)} of {len(ranked)} features")
    return fig


_DRAW = {
    "predicted_vs_actual": _predicted_vs_actual,
    "residuals": _residuals,
    "confusion_matrix": _confusion_matrix,
    "roc": _roc,
    "precision_recall": _precision_recall,
    "calibration": _calibration,
}


def _metric_of(row: Mapping[str, Any], metric: str) -> float | None:
    value = _finite(row.get(metric))
    metrics = row.get("metrics")
    if value is None and isinstance(metrics, Mapping):
        value = _finite(metrics.get(metric))
    return value


def comparison_plot(rows: Sequence[Mapping[str, Any]], metric: str) -> Figure:
    """A horizontal bar chart of ``metric`` across models, best at the top (lower is better for errors).

    ``rows`` are model entries such as :func:`statsbot_nb.ml.store.list_models` gives (the value is read
    from ``row[metric]`` or ``row["metrics"][metric]``); models without the metric are left out and counted.
    """
    scored = [(row, v) for row in rows if (v := _metric_of(row, metric)) is not None]
    label = METRIC_LABELS.get(metric, metric)
    if not scored:
        raise PlotError(f"None of these {len(rows)} model(s) has a {label} score to compare.")
    lower = metric in LOWER_IS_BETTER
    scored.sort(key=lambda rv: rv[1], reverse=not lower)
    shown = scored[:MAX_COMPARED]
    names = [str(r.get("display_name") or r.get("model_id") or "?") for r, _ in shown]
    twice = {n for n in names if names.count(n) > 1}
    names = [
        _middle(n) + (f" · {str(r.get('model_id'))[-15:]}" if n in twice else "")
        for n, (r, _) in zip(names, shown, strict=True)
    ]
    fig = _figure(max(2.2, min(8.0, 1.2 + 0.3 * len(shown))))
    ax = fig.add_subplot()
    values = [v for _, v in shown]
    colours = ["C2" if i == 0 else "C0" for i in range(len(shown))]
    ax.barh(range(len(shown))[::-1], values, color=colours, alpha=0.85)
    ax.set_yticks(range(len(shown))[::-1], names, fontsize=8)
    span = max(abs(v) for v in values) or 1.0
    for y, v in zip(range(len(shown))[::-1], values, strict=True):
        ax.text(v, y, f" {v:.3f}" if v >= 0 else f"{v:.3f} ", va="center", ha="left" if v >= 0 else "right", fontsize=7)
    ax.set_xlim(min(0.0, min(values) * 1.2), max(0.0, max(values)) + 0.18 * span)
    ax.axvline(0, color=_GREY, lw=0.8)
    ax.set(
        title=f"{label} across {len(shown)} model(s)",
        xlabel=label + (" (lower is better)" if lower else " (higher is better)"),
    )
    left_out = len(rows) - len(shown)
    if left_out:
        _note(ax, f"{left_out} model(s) not shown (no {label}, or beyond the best {MAX_COMPARED})")
    return fig


__all__ = [
    "PLOT_KINDS",
    "PlotError",
    "available_kinds",
    "comparison_plot",
    "default_kind",
    "figure_to_png",
    "headline_metric",
    "make_plot",
    "task_of",
]
