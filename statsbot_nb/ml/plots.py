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
  :data:`MAX_CLASS_CURVES` classes, the most frequent ones);
- either task: ``learning_curve``, the training and validation metric per round of a model that learns in
  rounds (from ``metadata["learning_curve"]``, :mod:`.plotcurve`).

Figures stay small and fast whatever the size of the held-out sample: scatter plots draw at most
``max_points`` rows (a seeded random subsample, so the same model always gives the same picture), while
histograms, confusion matrices and curves use every row (they cost a sort or a bincount, not a marker each).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .constants import CLASSIFICATION, REGRESSION
from .headline import METRIC_LABELS, headline_metric, headline_text
from .plotbase import (
    ALL_KINDS,
    DPI,
    FIGSIZE,
    GREY,
    KIND_TITLES,
    LOWER_IS_BETTER,
    MAX_BARS,
    MAX_CLASS_CURVES,
    MAX_COMPARED,
    PLOT_KINDS,
    PROBA_KINDS,
    PlotError,
    curve_classes,
    default_kind,
    figure_to_png,
    finite,
    held_out,
    importance_reason,
    model_name,
    new_figure,
    task_of,
)
from .plotcurve import curve_reason, learning_curve_plot
from .plotkinds import (
    calibration,
    confusion_matrix,
    feature_importance,
    middle,
    note,
    precision_recall,
    predicted_vs_actual,
    residuals,
    roc,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def available_kinds(metadata: Mapping[str, Any], artefacts: Mapping[str, Any] | None) -> dict[str, str | None]:
    """Every plot kind for this model's task, mapped to None (drawable) or the sentence saying why not."""
    task = task_of(metadata, artefacts)
    out: dict[str, str | None] = {}
    held, why = (
        held_out(metadata, artefacts, task)
        if task
        else (None, "The model's metadata does not say whether it is a regression or a classification model.")
    )
    for kind in PLOT_KINDS[task] if task else ALL_KINDS:
        if kind == "feature_importance":
            out[kind] = importance_reason(metadata)
        elif kind == "learning_curve":
            out[kind] = curve_reason(metadata)
        elif held is None:
            out[kind] = why
        elif kind in PROBA_KINDS and held.proba is None:
            out[kind] = "This model did not save class probabilities, so there is no curve to draw."
        elif kind in ("roc", "precision_recall") and not curve_classes(held)[0]:
            out[kind] = "The held-out rows hold a single class, so there is no curve to draw."
        else:
            out[kind] = None
    return out


def make_plot(
    kind: str | None, metadata: Mapping[str, Any], artefacts: Mapping[str, Any] | None, *, max_points: int = 5000
) -> Figure:
    """Draw one plot kind (None: the task's default, or the first drawable one) and return the Figure.

    Raises :class:`PlotError` naming the valid kinds for an unknown kind, and saying why for a kind this
    model cannot draw.
    """
    task = task_of(metadata, artefacts)
    kinds = available_kinds(metadata, artefacts)
    name = model_name(metadata)
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
        fig = feature_importance(metadata)
    elif kind == "learning_curve":
        fig = learning_curve_plot(metadata)
    else:
        held = held_out(metadata, artefacts, str(task))[0]
        assert held is not None  # available_kinds said it is drawable
        fig = _DRAW[kind](held, metadata, max_points)
    headline = headline_text(metadata, sep=" ", labelled=True)
    score = f" · {headline}" if headline else ""
    fig.suptitle(f"{name}{score}", fontsize=11, fontweight="bold")
    return fig


_DRAW = {
    "predicted_vs_actual": predicted_vs_actual,
    "residuals": residuals,
    "confusion_matrix": confusion_matrix,
    "roc": roc,
    "precision_recall": precision_recall,
    "calibration": calibration,
}


def _metric_of(row: Mapping[str, Any], metric: str) -> float | None:
    value = finite(row.get(metric))
    metrics = row.get("metrics")
    if value is None and isinstance(metrics, Mapping):
        value = finite(metrics.get(metric))
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
        middle(n) + (f" · {str(r.get('model_id'))[-15:]}" if n in twice else "")
        for n, (r, _) in zip(names, shown, strict=True)
    ]
    fig = new_figure(max(2.2, min(8.0, 1.2 + 0.3 * len(shown))))
    ax = fig.add_subplot()
    values = [v for _, v in shown]
    colours = ["C2" if i == 0 else "C0" for i in range(len(shown))]
    ax.barh(range(len(shown))[::-1], values, color=colours, alpha=0.85)
    ax.set_yticks(range(len(shown))[::-1], names, fontsize=8)
    span = max(abs(v) for v in values) or 1.0
    for y, v in zip(range(len(shown))[::-1], values, strict=True):
        ax.text(v, y, f" {v:.3f}" if v >= 0 else f"{v:.3f} ", va="center", ha="left" if v >= 0 else "right", fontsize=7)
    ax.set_xlim(min(0.0, min(values) * 1.2), max(0.0, max(values)) + 0.18 * span)
    ax.axvline(0, color=GREY, lw=0.8)
    ax.set(
        title=f"{label} across {len(shown)} model(s)",
        xlabel=label + (" (lower is better)" if lower else " (higher is better)"),
    )
    left_out = len(rows) - len(shown)
    if left_out:
        note(ax, f"{left_out} model(s) not shown (no {label}, or beyond the best {MAX_COMPARED})")
    return fig


__all__ = [
    "CLASSIFICATION",
    "DPI",
    "FIGSIZE",
    "KIND_TITLES",
    "MAX_BARS",
    "MAX_CLASS_CURVES",
    "METRIC_LABELS",
    "PLOT_KINDS",
    "REGRESSION",
    "PlotError",
    "available_kinds",
    "comparison_plot",
    "default_kind",
    "figure_to_png",
    "headline_metric",
    "make_plot",
    "task_of",
]
