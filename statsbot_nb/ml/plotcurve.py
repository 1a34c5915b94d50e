"""The ``learning_curve`` plot kind: a model's training and validation metric per round, as it was trained.

Drawn from ``metadata["learning_curve"]`` (see :mod:`statsbot_nb.ml.curves`), so it works long after the
training data is gone. A model without a curve gets a sentence saying why: it does not learn in rounds, it
was fitted in one call, or it was trained before curves were recorded.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .curves import higher_is_better, learns_in_rounds
from .headline import METRIC_LABELS
from .plotbase import GREY, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

EPOCH_TYPES = ("mlp", "mlp_regression", "mlp_classification")


@dataclass(frozen=True)
class StoredCurve:
    """A validated stored curve: the rounds, and per set the values of the metric drawn (NaN for none)."""

    rounds: np.ndarray
    metric: str
    training: np.ndarray | None
    validation: np.ndarray | None
    others: list[str]
    note: str


def stored_curve(metadata: Mapping[str, Any]) -> StoredCurve | None:
    """The model's curve ready to draw, or None when there is none or it is damaged."""
    raw = metadata.get("learning_curve")
    if not isinstance(raw, Mapping):
        return None
    try:
        rounds = np.asarray(raw.get("rounds"), dtype="int64").ravel()
        sets = {name: raw.get(name) for name in ("training", "validation")}
        sets = {name: metrics for name, metrics in sets.items() if isinstance(metrics, Mapping) and metrics}
        if len(rounds) == 0 or not sets or np.any(np.diff(rounds) <= 0):
            return None
        names = [str(m) for metrics in sets.values() for m in metrics]
        both = [m for m in names if all(m in metrics for metrics in sets.values())]
        metric = (both or names)[0]
        values: dict[str, np.ndarray | None] = {}
        for name in ("training", "validation"):
            series = sets.get(name, {}).get(metric)
            if series is None:
                values[name] = None
                continue
            array = np.asarray([math.nan if v is None else float(v) for v in series], dtype="float64")
            if array.shape != rounds.shape:
                return None
            values[name] = array if np.isfinite(array).any() else None
    except (TypeError, ValueError):
        return None
    if values["training"] is None and values["validation"] is None:
        return None
    others = sorted(set(names) - {metric})
    note = raw.get("note")
    return StoredCurve(
        rounds, metric, values["training"], values["validation"], others, str(note) if isinstance(note, str) else ""
    )


def curve_reason(metadata: Mapping[str, Any]) -> str | None:
    """None when the model's learning curve can be drawn, else the sentence saying why not."""
    if stored_curve(metadata) is not None:
        return None
    if metadata.get("learning_curve") is not None:
        return "The learning curve saved with this model is incomplete or damaged."
    model_type = metadata.get("model_type")
    if not isinstance(metadata.get("format_version"), int):
        return "No learning curve was saved with this model (it was trained by an older worker)."
    if not learns_in_rounds(model_type):
        return (
            f"{model_type or 'This model'} does not learn in rounds or epochs, so it has no learning curve "
            "(xgboost_*, lightgbm_*, catboost_*, gradient_boosting, mlp and keras_* models have one)."
        )
    hyper = metadata.get("hyperparameters")
    hyper = hyper if isinstance(hyper, Mapping) else {}
    if model_type in EPOCH_TYPES and (hyper.get("solver") == "lbfgs" or hyper.get("early_stopping")):
        return (
            "This network was fitted in one call (solver 'lbfgs' or early_stopping), not epoch by epoch, so no "
            "learning curve was recorded; the adam or sgd solver without early_stopping records one."
        )
    return (
        "No learning curve was saved with this model (it was trained before this worker recorded them, or "
        "on a cluster that did not send one); train it again to get one."
    )


def learning_curve_plot(metadata: Mapping[str, Any]) -> Figure:
    """Training and validation metric per round (or epoch), the best validation round marked."""
    from matplotlib.ticker import MaxNLocator

    curve = stored_curve(metadata)
    assert curve is not None  # plot_kinds said it can be drawn
    step = (
        "Epoch"
        if metadata.get("model_type") in EPOCH_TYPES or str(metadata.get("model_type")).startswith("keras_")
        else "Round"
    )
    label = METRIC_LABELS.get(curve.metric, curve.metric)
    higher = higher_is_better(curve.metric)
    fig = new_figure()
    ax = fig.add_subplot()
    x = curve.rounds
    if curve.training is not None:
        ax.plot(x, curve.training, color="C0", lw=1.6, label="training")
    if curve.validation is not None:
        ax.plot(x, curve.validation, color="C1", lw=1.6, label="validation (held out)")
        finite = np.where(np.isfinite(curve.validation))[0]
        best = finite[np.argmax(curve.validation[finite]) if higher else np.argmin(curve.validation[finite])]
        value = float(curve.validation[best])
        ax.scatter([x[best]], [value], color="C1", zorder=3, s=28)
        right = x[best] > (x[0] + x[-1]) / 2  # the label goes inwards, so it is never cut at an edge
        ax.annotate(
            f"best {value:.4g} at {step.lower()} {int(x[best])}",
            (x[best], value),
            textcoords="offset points",
            xytext=(-6 if right else 6, 8 if higher else -12),
            ha="right" if right else "left",
            fontsize=8,
            color="C1",
        )
    ax.set(
        title="Learning curve",
        xlabel=step + (f" (every ~{_stride(x)}th of {int(x[-1]):,} shown)" if _stride(x) > 1 else ""),
        ylabel=f"{label} ({'higher' if higher else 'lower'} is better)",
    )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.margins(y=0.12)  # room for the best round's label above or below the lines
    ax.grid(alpha=0.25)
    ax.legend(loc="best", fontsize=8, frameon=False)
    lines = [curve.note] if curve.note else []
    if curve.others:
        lines.append("also recorded: " + ", ".join(curve.others[:4]))
    if lines:  # below the axes, in the space constrained layout keeps for it
        fig.supxlabel(textwrap.fill("; ".join(lines), 110), fontsize=7, color=GREY)
    return fig


def _stride(rounds: np.ndarray) -> int:
    """The rounds between two drawn points, when the stored curve was thinned (1 when every round is there)."""
    if len(rounds) < 2 or len(rounds) == int(rounds[-1] - rounds[0] + 1):
        return 1
    return max(1, round(float(np.median(np.diff(rounds)))))
