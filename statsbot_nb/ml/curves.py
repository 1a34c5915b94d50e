"""Learning curves: a model's training and validation metric per boosting round (or epoch), kept bounded.

A curve is stored in the model's metadata as ``{"rounds": [1, 2, ...], "training": {"logloss": [...]},
"validation": {"logloss": [...]}}``. A fit of many rounds is thinned to at most :data:`MAX_POINTS`
evenly spaced rounds (always keeping the first and the last), so a 100,000-round model's metadata stays
small; the rounds list says which rounds the values belong to.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

MAX_POINTS = 500


def learning_curve(history: Mapping[str, Mapping[str, Sequence[float]]]) -> dict[str, Any] | None:
    """The stored curve of a library's per-round history (``{set: {metric: [values]}}``); None when empty."""
    lengths = [len(values) for metrics in history.values() for values in metrics.values()]
    if not lengths or max(lengths) == 0:
        return None
    n = max(lengths)
    if n <= MAX_POINTS:
        keep = list(range(n))
    else:
        step = (n - 1) / (MAX_POINTS - 1)
        keep = sorted({round(i * step) for i in range(MAX_POINTS)})
    curve: dict[str, Any] = {"rounds": [i + 1 for i in keep]}
    for name, metrics in history.items():
        curve[str(name)] = {
            str(metric): [_finite(values[i]) if i < len(values) else None for i in keep]
            for metric, values in metrics.items()
        }
    return curve


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


__all__ = ["MAX_POINTS", "learning_curve"]
