"""Learning curves: stored with a model bounded and saying which rounds they hold; recorded by real training
of every model type that learns in rounds (installed here), without changing the model; sent from a job in
throttled chunks; drawn as a plot kind and as the panel's small chart."""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from pathlib import Path
from typing import Any

import extras
import numpy as np
import pandas as pd
import pytest

from statsbot_nb.context import JobContext, JobSettings
from statsbot_nb.ml import estimators
from statsbot_nb.ml.curves import (
    CURVE_ROWS,
    LIVE_POINTS,
    MAX_POINTS,
    CurveRecorder,
    LiveCurve,
    higher_is_better,
    learning_curve,
)
from statsbot_nb.ml.fitting import fit_with_progress
from statsbot_nb.ml.plots import available_kinds, figure_to_png, make_plot
from statsbot_nb.ml.train import TrainOptions, train_model
from statsbot_nb.ui.curvechart import curve_svg


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


def test_a_recorder_keeps_every_round_with_gaps_and_passes_each_on() -> None:
    seen: list[tuple[int, int | None, dict[str, float], dict[str, float]]] = []
    recorder = CurveRecorder(lambda r, t, tr, va: seen.append((r, t, dict(tr), dict(va))), note="rows")
    recorder.add(1, 10, {"rmse": 3.0}, {"rmse": 3.5})
    recorder.add(2, 10, {"rmse": 2.0}, {})  # validation measured every other round
    recorder.add(3, 10, {"rmse": 1.5}, {"rmse": float("inf")})
    assert [s[0] for s in seen] == [1, 2, 3] and seen[1] == (2, 10, {"rmse": 2.0}, {})
    history = recorder.history()
    assert history["training"]["rmse"] == [3.0, 2.0, 1.5]
    assert history["validation"]["rmse"][0] == 3.5 and all(math.isnan(v) for v in history["validation"]["rmse"][1:])
    assert recorder.curve() == {
        "rounds": [1, 2, 3],
        "training": {"rmse": [3.0, 2.0, 1.5]},
        "validation": {"rmse": [3.5, None, None]},
        "note": "rows",
    }


def test_a_live_curve_stays_bounded_evenly_spread_and_ends_at_the_newest_round() -> None:
    live = LiveCurve()
    for start in range(1, 100_001, 1000):
        rounds = list(range(start, start + 1000))
        live.add(
            {
                "rounds": rounds,
                "total": 100_000,
                "training": {"logloss": [1 / r for r in rounds]},
                "validation": {"logloss": [None if r % 7 else 2 / r for r in rounds]},
            }
        )
    points = live.series()
    assert len(points) <= LIVE_POINTS + 1 and live.total == 100_000 and live.metric == "logloss"
    assert points[0][0] == 1 and points[-1][0] == 100_000  # the first and the newest round
    gaps = {b[0] - a[0] for a, b in itertools.pairwise(points[:-1])}
    assert gaps == {live.stride}  # evenly spread
    assert all(tr == 1 / r for r, tr, _ in points)
    assert live.version == 100


@pytest.mark.parametrize(
    ("metric", "higher"),
    [
        *[("logloss", False), ("rmse", False), ("MultiClass", False), ("mape", False), ("multi_error", False)],
        *[("auc", True), ("AUC", True), ("ndcg@5", True), ("accuracy", True), ("val_accuracy", True), ("R2", True)],
        *[("average_precision", True), ("map@3", True)],
    ],
)
def test_which_way_is_better(metric: str, higher: bool) -> None:
    assert higher_is_better(metric) is higher


def frame(n: int = 600, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.choice(["x", "y", "z"], n)})
    out["cls"] = np.where(out.a + 0.5 * out.b + rng.normal(scale=0.5, size=n) > 0, "yes", "no")
    out["val"] = 2 * out.a - out.b + rng.normal(size=n)
    cut = out.a + rng.normal(scale=0.3, size=n)
    out["multi"] = np.select([cut < -0.5, cut < 0.5], ["lo", "mid"], "hi")
    return out


#: (model type, target, hyperparameters, the metric its curve is measured in)
ROUND_CASES = [
    ("xgboost_binary_classification", "cls", {"n_estimators": 40}, "logloss"),
    ("xgboost_regression", "val", {"n_estimators": 40}, "rmse"),
    ("lightgbm_multiclass", "multi", {"n_estimators": 40}, "multi_logloss"),
    ("lightgbm_regression", "val", {"n_estimators": 40}, "l2"),
    ("catboost_binary_classification", "cls", {"iterations": 40}, "Logloss"),
    ("catboost_regression", "val", {"iterations": 40}, "RMSE"),
    ("gradient_boosting", "cls", {"n_estimators": 40}, "log_loss"),
    ("gradient_boosting", "val", {"n_estimators": 40}, "rmse"),
    ("mlp_classification", "multi", {"max_iter": 15}, "log_loss"),
    ("mlp_regression", "val", {"max_iter": 15}, "rmse"),
    ("keras_binary_classification", "cls", {"epochs": 4}, "loss"),
    ("keras_regression", "val", {"epochs": 4, "validation_split": 0.25}, "loss"),
]


def test_a_real_training_of_every_round_model_stores_its_curve(tmp_path: Path) -> None:
    data = frame()
    for model_type, target, hyper, metric in extras.installed_cases(ROUND_CASES, lambda case: case[0]):
        sent: list[tuple[Any, ...]] = []
        options = TrainOptions(target, ["a", "b", "c"], model_type, None, hyper)
        model = train_model(data, options, tmp_path, lambda *a: None, "t.csv", curve=lambda *p, out=sent: out.append(p))
        meta = json.loads((tmp_path / model.model_id / "metadata.json").read_text())
        curve = meta["learning_curve"]
        rounds = int(hyper.get("n_estimators") or hyper.get("iterations") or hyper.get("max_iter") or hyper["epochs"])
        case = f"{model_type} on {target}"
        if model_type.startswith("mlp"):  # it may converge before max_iter
            assert 3 <= len(curve["rounds"]) <= rounds, case
        else:
            assert curve["rounds"] == list(range(1, rounds + 1)), case
        for name in ("training", "validation"):
            values = curve[name][metric]
            assert len(values) == len(curve["rounds"]) and all(v is not None and math.isfinite(v) for v in values), case
        training = curve["training"][metric]
        assert training[-1] < training[0], f"{case}: the training {metric} did not fall: {training}"
        # What the job's chart received is what the model keeps.
        assert [p[0] for p in sent] == curve["rounds"], case
        assert [p[2][metric] for p in sent] == pytest.approx(training, rel=1e-12), case
        assert [p[3][metric] for p in sent] == pytest.approx(curve["validation"][metric], rel=1e-12), case
        if "validation_split" in hyper:
            assert "training rows validation_split set aside" in curve["note"], case
        else:
            assert re.search(r"validation: all 120 held-out (test )?rows", curve["note"]), case
        # The pickle holds no object of ours (no callback, no monitor); a Keras model pickles as our wrapper.
        raw = (tmp_path / model.model_id / "model.pkl").read_bytes()
        ours = set(re.findall(rb"statsbot_nb[\w.]*", raw))
        assert ours <= ({b"statsbot_nb.ml.kerasnet"} if model_type.startswith("keras") else set()), (case, ours)
        # The model card draws it.
        assert available_kinds(meta, None)["learning_curve"] is None, case
        fig = make_plot("learning_curve", meta, None)
        assert figure_to_png(fig).startswith(b"\x89PNG")
        ax = fig.axes[0]
        label = {"rmse": "RMSE", "log_loss": "log loss"}.get(metric, metric)  # METRIC_LABELS' names
        assert ax.get_title() == "Learning curve" and ax.get_ylabel() == f"{label} (lower is better)"
        assert [line.get_label() for line in ax.get_lines()] == ["training", "validation (held out)"]
        assert ax.get_xlabel() == ("Epoch" if model_type.startswith(("mlp", "keras")) else "Round")


@pytest.mark.parametrize(
    ("model_type", "hyper"),
    [
        extras.param("xgboost_binary_classification", {"n_estimators": 30}),
        extras.param("lightgbm_binary_classification", {"n_estimators": 30}),
        extras.param("catboost_binary_classification", {"iterations": 30}),
        extras.param("catboost_binary_classification", {"iterations": 30, "od_pval": 0.5}),
        extras.param("gradient_boosting", {"n_estimators": 30, "subsample": 0.7}),
        extras.param("mlp_classification", {"max_iter": 10}),
        extras.param("keras_binary_classification", {"epochs": 3}),
    ],
)
def test_recording_a_curve_never_changes_the_model(model_type: str, hyper: dict[str, Any]) -> None:
    """The held-out rows only measure: the model fitted while recording predicts exactly as one fitted
    without (CatBoost would otherwise keep its best round on them, or stop early with od_pval)."""
    rng = np.random.default_rng(3)
    X, X_held = rng.normal(size=(400, 4)), rng.normal(size=(100, 4))
    y, y_held = (X[:, 0] + X[:, 1] > 0).astype(int), (X_held[:, 0] + X_held[:, 1] > 0).astype(int)
    probabilities = []
    for record in (False, True):
        plan = estimators.build_estimator(model_type, "classification", hyper)
        recorder = CurveRecorder()
        model = fit_with_progress(
            plan,
            X,
            y,
            lambda *a: None,
            validation=(X_held, y_held) if record else None,
            recorder=recorder if record else None,
        )
        probabilities.append(np.asarray(model.predict_proba(X_held)))
    assert np.array_equal(probabilities[0], probabilities[1])
    curve = recorder.curve()
    assert curve is not None and len(curve["rounds"]) >= 3
    if "od_pval" in hyper:  # no held-out rows for an overfitting detector to stop on; the note says why
        assert "validation" not in curve and "overfitting detector (od_pval)" in curve["note"]
    else:
        assert set(curve) == {"rounds", "training", "validation", "note"}


def test_large_tables_score_a_sample_of_each_set_and_say_so(tmp_path: Path) -> None:
    data = frame(n=8000)
    options = TrainOptions("cls", ["a", "b"], "gradient_boosting", None, {"n_estimators": 3, "max_depth": 2})
    model = train_model(data, options, tmp_path, lambda *a: None, "t.csv")
    curve = json.loads((tmp_path / model.model_id / "metadata.json").read_text())["learning_curve"]
    assert CURVE_ROWS == 5000
    assert curve["note"] == (
        "training: a sample of 5,000 of the 6,400 training rows; validation: all 1,600 held-out test rows"
    )


def test_models_without_a_curve_say_why(tmp_path: Path) -> None:
    data = frame()
    for model_type, hyper, expected in [
        ("random_forest", {"n_estimators": 5}, "random_forest does not learn in rounds or epochs"),
        ("mlp", {"solver": "lbfgs", "max_iter": 20}, "fitted in one call (solver 'lbfgs' or early_stopping)"),
    ]:
        model = train_model(data, TrainOptions("cls", ["a", "b"], model_type, None, hyper), tmp_path, print, "t.csv")
        meta = json.loads((tmp_path / model.model_id / "metadata.json").read_text())
        assert "learning_curve" not in meta
        assert expected in str(available_kinds(meta, None)["learning_curve"])
    damaged = {"task_type": "regression", "format_version": 1, "learning_curve": {"rounds": [1, 2], "training": {}}}
    assert "incomplete or damaged" in str(available_kinds(damaged, None)["learning_curve"])
    trained_before = {"task_type": "regression", "format_version": 1, "model_type": "xgboost_regression"}
    assert "trained before this worker recorded them" in str(available_kinds(trained_before, None)["learning_curve"])


def test_a_job_sends_its_curve_in_chunks_a_few_times_a_second() -> None:
    chunks: list[tuple[float, dict[str, Any]]] = []
    progress: list[float] = []
    ctx = JobContext(
        JobSettings(home=Path("/nonexistent")),
        lambda p, m, s: progress.append(time.monotonic()),
        curve_sink=lambda chunk: chunks.append((time.monotonic(), chunk)),
    )
    started, r = time.monotonic(), 0
    while time.monotonic() - started < 1.0:
        r += 1
        ctx.curve_point(r, None, {"logloss": np.float64(1 / r)}, {"logloss": 2 / r} if r % 2 else {"auc": 0.5})
        ctx.progress(50, f"round {r}", "fitting")
        time.sleep(0.0005)
    ctx.flush_curve()
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(chunks[:-1])]
    assert len(chunks) <= 7 and min(gaps) >= 0.19, gaps  # progress every 0.2 s flushes; otherwise every 0.25 s
    rounds = [x for _, chunk in chunks for x in chunk["rounds"]]
    assert rounds == list(range(1, r + 1))  # every round, once, in order
    assert all(set(chunk) == {"rounds", "total", "training", "validation"} for _, chunk in chunks)

    def column(name: str, metric: str) -> list[float | None]:
        return [
            v
            for _, chunk in chunks
            for v in chunk[name].get(metric, [None] * len(chunk["rounds"]))  # a chunk of even rounds only has auc
        ]

    assert column("training", "logloss") == [1 / x for x in range(1, r + 1)]
    assert column("validation", "logloss") == [2 / x if x % 2 else None for x in range(1, r + 1)]
    assert column("validation", "auc") == [None if x % 2 else 0.5 for x in range(1, r + 1)]
    assert all(type(v) is float for v in column("training", "logloss"))  # no numpy scalars cross the pipe
    assert json.dumps([chunk for _, chunk in chunks])  # plain JSON values
    # No chunk is sent without a sink, and nothing is sent at all without rounds.
    quiet = JobContext(JobSettings(home=Path("/nonexistent")))
    quiet.curve_point(1, 1, {"a": 1.0}, {})
    quiet.flush_curve()


def test_the_panel_chart_draws_both_lines_escapes_names_and_is_quick() -> None:
    assert curve_svg(None) == "" and curve_svg(LiveCurve()) == ""
    live = LiveCurve()
    for start in range(1, 2001, 50):
        rounds = list(range(start, start + 50))
        live.add(
            {
                "rounds": rounds,
                "total": 3000,
                "training": {"<b>loss</b>": [1 / math.sqrt(r) for r in rounds]},
                "validation": {"<b>loss</b>": [1 / math.sqrt(r) + r / 4000 for r in rounds]},
            }
        )
    svg = curve_svg(live)
    assert svg.count("<polyline") == 2 and "<b>" not in svg and "&lt;b&gt;loss&lt;/b&gt;" in svg
    assert "after round 2000 of 3000" in svg and "best validation" in svg
    assert "var(--jp-brand-color1" in svg and "var(--jp-ui-font-color1" in svg  # theme colours, with fallbacks
    xs = [float(p.split(",")[0]) for p in re.search(r'points="([^"]+)"', svg).group(1).split()]  # type: ignore[union-attr]
    assert xs == sorted(xs) and xs[-1] < 168 * 2000 / 3000 + 3  # 2000 of 3000 rounds: two thirds across
    started = time.process_time()
    for _ in range(200):
        curve_svg(live)
    per_draw = (time.process_time() - started) / 200
    assert per_draw < 0.005, f"{per_draw * 1000:.2f} ms per chart"  # measured ~0.2 ms; no stall of the loop
