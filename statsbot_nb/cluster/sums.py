"""Whole-table numbers from per-partition sums: centred moments, and the checks and target statistics built on them.

Moments are kept centred (count, mean, sum of squared deviations) and merged pairwise, so a column far
from zero (a target near 1e10, a timestamp) keeps its precision: the uncentred ``sum(x^2) - sum(x)^2 / n``
cancels to nothing there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import JobError

if TYPE_CHECKING:
    from .prep import Layout


def moments(values: np.ndarray) -> tuple[int, float, float]:
    """Count, mean and sum of squared deviations from the mean (centred, so a column far from zero keeps
    its precision when partitions are merged by :func:`merge_moments`)."""
    if not len(values):
        return 0, 0.0, 0.0
    with np.errstate(over="ignore", invalid="ignore"):  # numbers near 1e308: inf, refused by check_finite
        mean = float(values.mean())
        return len(values), mean, float(((values - mean) ** 2).sum())


def merge_moments(parts: list[tuple[int, float, float]]) -> tuple[int, float, float]:
    """The moments of the union of partitions (Chan, Golub and LeVeque's pairwise update)."""
    n, mean, m2 = 0, 0.0, 0.0
    for k, mean_k, m2_k in parts:
        if k == 0:
            continue
        delta = mean_k - mean
        total = n + k
        mean += delta * k / total
        m2 += m2_k + delta * delta * n * k / total
        n = total
    return n, mean, m2


def check_finite(stats: dict[str, Any], layout: Layout, regression: bool, scaled: bool) -> None:
    """Refuse, as the local trainer does, infinite numbers in a numeric feature or a regression target, and
    (for a model that scales its inputs) numbers so large that their squares overflow."""
    for col in layout.roles.numeric:
        s = stats[col]
        if s["inf"]:
            raise JobError(
                f"The feature column {col!r} holds infinite values ({s['inf']:,} row(s), such as 'inf'); "
                "replace them or leave the column out."
            )
        if scaled and not (np.isfinite(s["mean"]) and np.isfinite(s["m2"])):
            raise JobError(
                f"The feature column {col!r} holds numbers too large to scale (near 1e308, their squares overflow); "
                "rescale them, replace them or leave the column out."
            )
    if regression and stats.get("target", {}).get("inf"):
        raise JobError(
            f"The target column {layout.target!r} holds infinite values ({stats['target']['inf']:,} row(s), "
            "such as 'inf'); replace them or remove those rows."
        )


def target_quartiles(stats: dict[str, Any]) -> dict[str, float] | None:
    """The regression target's min, quartiles, max, mean and std over the whole table, as the local
    trainer reports them: min, max, mean and std exact, the quartiles from the hash sample of its rows
    (every row when the table has at most :data:`SAMPLE_ROWS`)."""
    from ..ml.train import dataset_stats

    target = stats["target"]
    n, mean, m2 = target["moments"]
    sample = target["sample"]
    quartiles = dataset_stats(sample, None, 0, 0, 0, 0).get("quartiles") if len(sample) and n else None
    if quartiles is None:
        return None
    exact = {"min": target["min"], "max": target["max"], "mean": mean, "std": float(np.sqrt(m2 / n))}
    return {**quartiles, **{k: v for k, v in exact.items() if np.isfinite(v)}}


__all__ = ["check_finite", "merge_moments", "moments", "target_quartiles"]
