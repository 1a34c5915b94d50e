"""Drawing each plot kind of a model from its held-out sample and metadata (see :mod:`statsbot_nb.ml.plots`).

Scatter plots draw at most ``max_points`` rows, a subsample seeded with
:data:`statsbot_nb.ml.constants.PLOT_SAMPLE_SEED` so the same model always gives the same picture.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .constants import PLOT_SAMPLE_SEED
from .plotbase import (
    FIGSIZE,
    GREY,
    MAX_BARS,
    HeldOut,
    curve_classes,
    importances_of,
    new_figure,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


# -- regression ---------------------------------------------------------------------------------------


def _subsample(n: int, max_points: int) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(PLOT_SAMPLE_SEED).choice(n, max_points, replace=False))


def note(ax: Any, text: str, *, loc: str = "lower right") -> None:
    x, ha = (0.99, "right") if "right" in loc else (0.01, "left")
    y, va = (0.01, "bottom") if "lower" in loc else (0.99, "top")
    ax.text(x, y, text, transform=ax.transAxes, ha=ha, va=va, fontsize=7, color=GREY)


def _rows_note(shown: int, total: int) -> str:
    return f"{shown:,} of {total:,} held-out rows shown" if shown < total else f"{total:,} held-out rows"


def _scatter(ax: Any, x: np.ndarray, y: np.ndarray) -> None:
    small = len(x) <= 1000
    ax.scatter(x, y, s=12 if small else 5, alpha=0.6 if small else 0.3, color="C0", edgecolors="none")


def _target(metadata: Mapping[str, Any]) -> str:
    target = metadata.get("target_column")
    return str(target) if target else "target"


def predicted_vs_actual(held: HeldOut, metadata: Mapping[str, Any], max_points: int) -> Figure:
    fig = new_figure()
    ax = fig.add_subplot()
    idx = _subsample(len(held.y_true), max_points)
    _scatter(ax, held.y_true[idx], held.y_pred[idx])
    lo = float(min(held.y_true.min(), held.y_pred.min()))
    hi = float(max(held.y_true.max(), held.y_pred.max()))
    pad = (hi - lo) * 0.03 or 1.0
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "--", color=GREY, lw=1, label="perfect prediction")
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
    note(ax, f"RMSE {rmse:.4g} · MAE {mae:.4g} · {_rows_note(len(idx), len(err))}")
    return fig


def residuals(held: HeldOut, metadata: Mapping[str, Any], max_points: int) -> Figure:
    fig = new_figure()
    grid = fig.add_gridspec(1, 2, width_ratios=[4, 1])
    ax = fig.add_subplot(grid[0])
    side = fig.add_subplot(grid[1], sharey=ax)
    resid = held.y_true - held.y_pred
    idx = _subsample(len(resid), max_points)
    _scatter(ax, held.y_pred[idx], resid[idx])
    ax.axhline(0, color=GREY, lw=1, ls="--")
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
    note(ax, _rows_note(len(idx), len(resid)))
    side.hist(resid, bins=int(np.clip(len(resid) // 5, 10, 40)), orientation="horizontal", color="C0", alpha=0.7)
    side.axhline(0, color=GREY, lw=1, ls="--")
    side.tick_params(labelleft=False, labelsize=7)
    side.set_xlabel("rows", fontsize=8)
    return fig


# -- classification -----------------------------------------------------------------------------------


def _short(text: str, width: int = 16) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def middle(text: str, width: int = 36) -> str:
    """Shorten by cutting out the middle: model names often differ only at the end ("... (ridge)")."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[-(width - 1 - head) :]


def confusion_matrix(held: HeldOut, metadata: Mapping[str, Any], max_points: int) -> Figure:
    k = len(held.labels)
    counts = np.bincount(held.y_true * k + held.y_pred, minlength=k * k).reshape(k, k)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape, dtype="float64"), where=totals > 0)
    fig = new_figure(4.0 if k <= 8 else 5.0)
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
    legend.get_title().set_color(GREY)


def _thin(x: np.ndarray, y: np.ndarray, limit: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """At most ``limit`` evenly spaced vertices of a curve (ends kept): a 600-pixel line looks the same."""
    if len(x) <= limit:
        return x, y
    keep = np.unique(np.linspace(0, len(x) - 1, limit).astype("int64"))
    return x[keep], y[keep]


def roc(held: HeldOut, metadata: Mapping[str, Any], max_points: int) -> Figure:
    from sklearn.metrics import auc as area
    from sklearn.metrics import roc_curve

    assert held.proba is not None
    fig = new_figure()
    ax = fig.add_subplot()
    classes, usable = curve_classes(held)
    for c in classes:
        positive = held.y_true == c
        fpr, tpr, _ = roc_curve(positive, held.proba[:, c])
        label = f"{_short(held.labels[c], 20)} (AUC {area(fpr, tpr):.3f})"
        ax.plot(*_thin(fpr, tpr), lw=1.5, label=("positive: " if len(held.labels) == 2 else "") + label)
    ax.plot([0, 1], [0, 1], "--", color=GREY, lw=1, label="chance")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        title="ROC curve" + (" (one vs rest)" if len(held.labels) > 2 else ""),
        xlabel="False positive rate",
        ylabel="True positive rate",
    )
    _curve_legend(ax, "lower right", len(classes), usable, len(held.y_true))
    return fig


def precision_recall(held: HeldOut, metadata: Mapping[str, Any], max_points: int) -> Figure:
    from sklearn.metrics import precision_recall_curve

    assert held.proba is not None
    fig = new_figure()
    ax = fig.add_subplot()
    classes, usable = curve_classes(held)
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
        ax.axhline(float(np.mean(held.y_true == 1)), color=GREY, lw=1, ls="--", label="chance (share of positives)")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.02),
        xlabel="Recall",
        ylabel="Precision",
        title="Precision-recall curve" + (" (one vs rest)" if len(held.labels) > 2 else ""),
    )
    _curve_legend(ax, "lower left", len(classes), usable, len(held.y_true))
    return fig


def calibration(held: HeldOut, metadata: Mapping[str, Any], max_points: int) -> Figure:
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
    fig = new_figure()
    grid = fig.add_gridspec(2, 1, height_ratios=[3, 1])
    ax = fig.add_subplot(grid[0])
    below = fig.add_subplot(grid[1], sharex=ax)
    ax.plot([0, 1], [0, 1], "--", color=GREY, lw=1, label="perfectly calibrated")
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
    note(ax, f"{len(prob):,} held-out rows · {n_bins} bins, point size = rows in the bin")
    below.hist(prob, bins=20, range=(0, 1), color="C0", alpha=0.7)
    below.set_xlabel(xlabel)
    below.set_ylabel("rows", fontsize=8)
    below.tick_params(labelsize=7)
    return fig


# -- any task -----------------------------------------------------------------------------------------


def feature_importance(metadata: Mapping[str, Any]) -> Figure:
    from matplotlib.ticker import PercentFormatter

    ranked = sorted(importances_of(metadata).items(), key=lambda kv: kv[1], reverse=True)
    shown = ranked[:MAX_BARS]
    fig = new_figure(max(2.5, min(FIGSIZE[1] + 1, 1.2 + 0.22 * len(shown))))
    ax = fig.add_subplot()
    total = sum(v for _, v in ranked) or 1.0
    values = [v / total for _, v in shown][::-1]
    ax.barh(range(len(shown)), values, color="C0", alpha=0.85)
    ax.set_yticks(range(len(shown)), [_short(k, 28) for k, _ in shown][::-1], fontsize=8)
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.1%}", va="center", fontsize=7)
    ax.set_xlim(0, max(values) * 1.18)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    how = {
        "model": "the model's own measure",
        "coefficients": "coefficient x spread",
        "permutation": "permutation on held-out rows",
    }.get(str(metadata.get("feature_importance_method")), "")
    ax.set(
        title="Feature importance", ylabel="Feature", xlabel="Share of total importance" + (f" ({how})" if how else "")
    )
    if len(ranked) > len(shown):
        note(ax, f"top {len(shown)} of {len(ranked)} features")
    return fig
