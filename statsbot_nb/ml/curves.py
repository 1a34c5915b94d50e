"""Learning curves: a model's training and validation metric per boosting round (or epoch), kept bounded.

A curve is stored in the model's metadata as ``{"rounds": [1, 2, ...], "training": {"logloss": [...]},
"validation": {"logloss": [...]}}`` (and, when it helps to read it, ``"note"``: which rows each line was
measured on). A fit of many rounds is thinned to at most :data:`MAX_POINTS` evenly spaced rounds (always
keeping the first and the last), so a 100,000-round model's metadata stays small; the rounds list says
which rounds the values belong to.

While a model trains, :class:`CurveRecorder` collects each round's values (and passes them on, so a
running job can show them), and :class:`LiveCurve` is what an observer of the job keeps: the newest points
of one metric, thinned as they come so a long fit costs a bounded amount of memory and drawing. Pure and
numpy-free: the worker's event loop imports this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

MAX_POINTS = 500
#: At most this many rows of each set (training, validation) are scored after every round: scoring is a
#: prediction per round, and on 200,000 rows XGBoost scoring all 40,000 held-out rows took 1.38 times as
#: long; a seeded sample of 5,000 rows kept it to 1.00-1.06 (README "Live learning curves" has the
#: figures); a log-loss measured on 5,000 rows has a standard error of about 0.01.
CURVE_ROWS = 5_000
#: Points a :class:`LiveCurve` keeps (every other one is dropped when it is full): about one per pixel of
#: the panel's 168-pixel chart, whose SVG is then built in about 0.2 ms.
LIVE_POINTS = 160
#: Model families that learn in rounds or epochs, so a curve can be recorded while they fit.
ROUND_PREFIXES = ("xgboost_", "lightgbm_", "catboost_", "keras_")
ROUND_TYPES = frozenset({"gradient_boosting", "mlp", "mlp_regression", "mlp_classification"})
#: Metric names (any case; ``ndcg@5`` counts as ``ndcg``) for which a higher value is better.
_HIGHER_BETTER = frozenset(
    {"auc", "aucpr", "prauc", "accuracy", "acc", "r2", "ndcg", "map", "precision", "recall", "f1", "totalf1", "mcc"}
)

#: ``point(round, total_rounds, training, validation)``: one round's metrics, ``{metric: value}`` per set.
CurvePoint = Callable[[int, "int | None", Mapping[str, float], Mapping[str, float]], None]


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


def learns_in_rounds(model_type: object) -> bool:
    """True for the model types that grow round by round or epoch by epoch (a curve can be recorded)."""
    return isinstance(model_type, str) and (model_type in ROUND_TYPES or model_type.startswith(ROUND_PREFIXES))


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` (a library's name for it) means a better model."""
    name = metric.lower().split("@")[0].split(":")[0].removeprefix("val_")
    return name in _HIGHER_BETTER or name.endswith(("_auc", "_accuracy", "average_precision"))


def rows_phrase(used: int, of: int | None) -> str:
    """``all 480`` or ``a sample of 5,000 of the 40,000``: how many rows a line was measured on."""
    return f"all {used:,}" if of is None or used >= of else f"a sample of {used:,} of the {of:,}"


class CurveRecorder:
    """Each round's training and validation metrics of one fit, kept whole (thinned only when stored), and
    passed on to ``sink`` as they come (a running job shows them)."""

    def __init__(self, sink: CurvePoint | None = None, note: str | None = None, held_total: int | None = None) -> None:
        self.sink = sink
        #: Which rows each line was measured on, in words (stored with the curve, shown under its plot).
        self.note = note
        #: How many held-out rows there were, when the validation rows are a sample of them.
        self.held_total = held_total
        self._values: dict[str, dict[str, list[float]]] = {"training": {}, "validation": {}}
        self.rounds = 0

    def add(
        self, round_: int, total: int | None, training: Mapping[str, float], validation: Mapping[str, float]
    ) -> None:
        """Record round ``round_`` (1-based) of ``total``; a set's metric missing in a round stays a gap."""
        for name, metrics in (("training", training), ("validation", validation)):
            for metric, value in metrics.items():
                values = self._values[name].setdefault(str(metric), [])
                if len(values) < round_:
                    values.extend([math.nan] * (round_ - len(values)))
                values[round_ - 1] = _finite_or_nan(value)
        self.rounds = max(self.rounds, round_)
        if self.sink is not None:
            self.sink(round_, total, training, validation)

    def history(self) -> dict[str, dict[str, list[float]]]:
        """``{set: {metric: [value per round]}}``, every list as long as the rounds (NaN where not measured)."""
        return {
            name: {m: v + [math.nan] * (self.rounds - len(v)) for m, v in metrics.items()}
            for name, metrics in self._values.items()
            if metrics
        }

    def curve(self) -> dict[str, Any] | None:
        """The curve to store with the model (see :func:`learning_curve`), with its note; None if empty."""
        curve = learning_curve(self.history())
        if curve is not None and self.note:
            curve["note"] = self.note
        return curve


class LiveCurve:
    """The curve of a running job as its chunks arrive: one metric (the first one seen), at most
    :data:`LIVE_POINTS` points evenly spread over the rounds so far (the stride doubles when full) plus the
    newest round. ``version`` counts the changes, so a chart redraws only when there is something new."""

    def __init__(self, limit: int = LIVE_POINTS) -> None:
        self.limit = max(4, limit)
        self.metric: str | None = None
        self.total: int | None = None
        self.points: list[tuple[int, float | None, float | None]] = []  # (round, training, validation)
        self.last: tuple[int, float | None, float | None] | None = None
        self.stride = 1
        self.version = 0

    def add(self, chunk: Mapping[str, Any]) -> None:
        """Take a chunk ``{"rounds": [...], "training": {m: [...]}, "validation": {m: [...]}, "total": n}``."""
        rounds = chunk.get("rounds") or []
        training = chunk.get("training") or {}
        validation = chunk.get("validation") or {}
        if self.metric is None:
            self.metric = next(iter(training), None) or next(iter(validation), None)
        if self.metric is None or not rounds:
            return
        total = chunk.get("total")
        if isinstance(total, int) and total > 0:
            self.total = total
        tr, va = training.get(self.metric) or [], validation.get(self.metric) or []
        for i, r in enumerate(rounds):
            point = (int(r), _at(tr, i), _at(va, i))
            self.last = point
            if (point[0] - 1) % self.stride == 0:
                self.points.append(point)
        while len(self.points) > self.limit:
            self.stride *= 2
            self.points = [p for p in self.points if (p[0] - 1) % self.stride == 0]
        self.version += 1

    def series(self) -> list[tuple[int, float | None, float | None]]:
        """The points to draw, oldest first, ending with the newest round."""
        if self.last is not None and (not self.points or self.points[-1][0] != self.last[0]):
            return [*self.points, self.last]
        return list(self.points)


def _at(values: Sequence[Any], i: int) -> float | None:
    return _finite(values[i]) if i < len(values) and values[i] is not None else None


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _finite_or_nan(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


__all__ = [
    "CURVE_ROWS",
    "LIVE_POINTS",
    "MAX_POINTS",
    "CurvePoint",
    "CurveRecorder",
    "LiveCurve",
    "higher_is_better",
    "learning_curve",
    "learns_in_rounds",
    "rows_phrase",
]
