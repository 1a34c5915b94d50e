"""Learning curves stored with a model stay bounded and say which rounds they hold."""

from __future__ import annotations

import itertools
import math

from statsbot_nb.ml.curves import MAX_POINTS, learning_curve


def test_a_short_curve_is_kept_whole() -> None:
    curve = learning_curve({"training": {"rmse": [3.0, 2.0, 1.5]}, "validation": {"rmse": [3.1, 2.2, float("nan")]}})
    assert curve == {
        "rounds": [1, 2, 3],
        "training": {"rmse": [3.0, 2.0, 1.5]},
        "validation": {"rmse": [3.1, 2.2, None]},  # JSON has no NaN
    }


def test_a_long_curve_is_thinned_evenly_keeping_the_first_and_last_round() -> None:
    n = 100_000
    values = [1 / (i + 1) for i in range(n)]
    curve = learning_curve({"validation": {"logloss": values}})
    assert curve is not None
    rounds = curve["rounds"]
    assert len(rounds) == MAX_POINTS and rounds[0] == 1 and rounds[-1] == n
    assert rounds == sorted(set(rounds))
    gaps = {b - a for a, b in itertools.pairwise(rounds)}
    assert max(gaps) - min(gaps) <= 1
    assert all(math.isclose(v, 1 / r) for v, r in zip(curve["validation"]["logloss"], rounds, strict=True))


def test_no_rounds_is_no_curve() -> None:
    assert learning_curve({}) is None
    assert learning_curve({"validation": {"rmse": []}}) is None
