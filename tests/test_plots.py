"""statsbot_nb.ml.plots: every kind draws from stored artefacts alone, fast, and explains what it cannot draw."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import numpy as np
import pytest
from matplotlib.figure import Figure

from statsbot_nb.errors import JobError
from statsbot_nb.ml import plots
from statsbot_nb.ml.curves import learning_curve
from statsbot_nb.ml.plots import PLOT_KINDS, PlotError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def boosting_curve(metric: str, rounds: int = 120, seed: int = 0) -> dict[str, Any]:
    """A stored learning curve as a boosted model's training writes it: training keeps falling, validation
    bottoms out and rises again."""
    rng = np.random.default_rng(seed)
    r = np.arange(1, rounds + 1)
    training = 1.0 / np.sqrt(r) + rng.normal(0, 0.003, rounds)
    validation = 1.0 / np.sqrt(r) + r / (4 * rounds) + rng.normal(0, 0.003, rounds)
    curve = learning_curve({"training": {metric: training.tolist()}, "validation": {metric: validation.tolist()}})
    assert curve is not None
    return {**curve, "note": "training: all 1,600 training rows; validation: all 400 held-out test rows"}


def regression_case(n: int = 2000, seed: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    rng = np.random.default_rng(seed)
    y_true = rng.normal(50, 10, size=n)
    y_pred = y_true + rng.normal(0, 4, size=n)
    meta = {
        "model_id": "model_x",
        "display_name": "House prices",
        "task_type": "regression",
        "target_column": "price",
        "format_version": 1,
        "metrics": {"r2": 0.8412, "rmse": 4.0},
        "feature_importances": {f"feature_{i}": float(v) for i, v in enumerate(rng.random(25))},
        "feature_importance_method": "model",
        "model_type": "xgboost_regression",
        "learning_curve": boosting_curve("rmse", seed=seed),
    }
    return meta, {"y_true": y_true, "y_pred": y_pred}


def classification_case(n: int = 2000, k: int = 2, seed: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, size=n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y_true] += 1.5
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = ["no", "yes"] if k == 2 else [f"species {i}" for i in range(k)]
    meta = {
        "model_id": "model_c",
        "display_name": "Churn",
        "task_type": "classification",
        "target_column": "churned",
        "format_version": 1,
        "metrics": {"accuracy": 0.7731},
        "feature_importances": {"tenure": 0.6, "plan": 0.3, "age": 0.1},
        "feature_importance_method": "permutation",
        "class_labels": labels,
        "model_type": "lightgbm_binary_classification" if k == 2 else "lightgbm_multiclass",
        "learning_curve": boosting_curve("binary_logloss" if k == 2 else "multi_logloss", seed=seed),
    }
    arte = {
        "y_true": y_true,
        "y_pred": proba.argmax(axis=1),
        "proba": proba.astype("float32"),
        "class_labels": np.array(labels, dtype=str),
    }
    return meta, arte


CASES = {
    "regression": regression_case,
    "binary": lambda n=2000: classification_case(n, 2),
    "multiclass": lambda n=2000: classification_case(n, 3),
}
ALL = [
    (case, kind) for case in CASES for kind in PLOT_KINDS["regression" if case == "regression" else "classification"]
]


def assert_renders(fig: Figure) -> bytes:
    assert isinstance(fig, Figure)
    assert fig.axes, "the figure has no axes"
    png = plots.figure_to_png(fig)
    assert png.startswith(PNG_MAGIC)
    return png


@pytest.mark.parametrize(("case", "kind"), ALL)
def test_every_kind_renders_with_title_and_labels(case: str, kind: str) -> None:
    meta, arte = CASES[case]()
    fig = plots.make_plot(kind, meta, arte)
    png = assert_renders(fig)
    assert len(png) < 200_000
    title = fig.get_suptitle()
    assert meta["display_name"] in title
    assert ("R² 0.841" if case == "regression" else "accuracy 0.773") in title
    assert fig.get_size_inches().tolist() == [6.0, 4.0] or kind in ("feature_importance", "confusion_matrix")
    assert fig.dpi == 100
    assert fig.axes[0].get_title()
    assert any(ax.get_xlabel() for ax in fig.axes) and any(ax.get_ylabel() for ax in fig.axes)


def test_figures_show_themselves_as_png_in_jupyter() -> None:
    meta, arte = regression_case()
    fig = plots.make_plot(None, meta, arte)
    assert fig._repr_png_().startswith(PNG_MAGIC)


def test_classifier_axes_use_the_class_labels() -> None:
    meta, arte = classification_case(k=3)
    fig = plots.make_plot("confusion_matrix", meta, arte)
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == ["species 0", "species 1", "species 2"]
    assert fig.axes[0].get_ylabel() == "Actual churned"
    legend = [t.get_text() for t in plots.make_plot("roc", meta, arte).axes[0].get_legend().get_texts()]
    assert any(t.startswith("species 1 (AUC") for t in legend)


def test_curves_report_the_same_areas_as_scikit_learn() -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    meta, arte = classification_case(n=3000, k=2)
    positive, score = arte["y_true"] == 1, arte["proba"][:, 1]
    roc_text = plots.make_plot("roc", meta, arte).axes[0].get_legend().get_texts()[0].get_text()
    pr_text = plots.make_plot("precision_recall", meta, arte).axes[0].get_legend().get_texts()[0].get_text()
    assert f"AUC {roc_auc_score(positive, score):.3f}" in roc_text
    assert f"AP {average_precision_score(positive, score):.3f}" in pr_text


def test_defaults_are_the_most_telling_kind() -> None:
    assert plots.default_kind("regression") == "predicted_vs_actual"
    assert plots.default_kind("classification") == "confusion_matrix"
    meta, arte = classification_case()
    assert plots.make_plot(None, meta, arte).axes[0].get_title() == "Confusion matrix"
    meta, arte = regression_case()
    assert plots.make_plot(None, meta, arte).axes[0].get_title() == "Predicted vs actual"
    # Without artefacts the default falls back to what can still be drawn.
    assert plots.make_plot(None, meta, {}).axes[0].get_title() == "Feature importance"


def test_older_worker_model_explains_every_missing_plot() -> None:
    meta = {
        "model_id": "model_old",
        "model_type": "random_forest",
        "task_type": "classification",
        "target_column": "label",
        "feature_columns": ["a"],
        "metrics": {},
        "created_at": "2025-01-01",
    }
    kinds = plots.available_kinds(meta, None)
    assert list(kinds) == PLOT_KINDS["classification"]
    assert all(why and "older worker" in why for why in kinds.values())
    with pytest.raises(PlotError, match=r"No plot can be drawn for model_old: .*older worker"):
        plots.make_plot(None, meta, {})
    with pytest.raises(PlotError, match=r"The roc curve of model_old is not available\. No held-out"):
        plots.make_plot("roc", meta, None)


def test_unavailable_kinds_say_why() -> None:
    meta, arte = classification_case()
    no_proba = {k: v for k, v in arte.items() if k != "proba"}
    kinds = plots.available_kinds(meta, no_proba)
    assert kinds["confusion_matrix"] is None
    for kind in ("roc", "precision_recall", "calibration"):
        assert kinds[kind] == "This model did not save class probabilities, so there is no curve to draw."
    single = dict(arte, y_true=np.zeros_like(arte["y_true"]))
    assert "single class" in str(plots.available_kinds(meta, single)["roc"])
    meta_none = dict(meta, feature_importances={}, feature_importance_method="none")
    assert "permutation importance was skipped" in str(plots.available_kinds(meta_none, arte)["feature_importance"])
    for damaged in (
        dict(arte, y_pred=arte["y_pred"][:10]),
        dict(arte, y_pred=arte["y_pred"] + 5),
        dict(arte, y_true=np.full(len(arte["y_true"]), "yes")),
    ):
        assert "incomplete or damaged" in str(plots.available_kinds(meta, damaged)["confusion_matrix"])
    unknown = {"model_id": "m", "feature_importances": {"a": 1.0}}
    kinds = plots.available_kinds(unknown, None)
    assert kinds["feature_importance"] is None and "does not say whether" in str(kinds["roc"])


def test_unknown_and_unavailable_kinds_are_sentences() -> None:
    meta, arte = regression_case()
    with pytest.raises(PlotError) as info:
        plots.make_plot("roc", meta, arte)
    assert str(info.value) == (
        "'roc' is not a plot kind for a regression model; choose one of: "
        "predicted_vs_actual, residuals, feature_importance, learning_curve."
    )
    assert isinstance(info.value, ValueError) and isinstance(info.value, JobError)
    meta_c, arte_c = classification_case()
    with pytest.raises(PlotError, match="did not save class probabilities"):
        plots.make_plot("calibration", meta_c, {k: v for k, v in arte_c.items() if k != "proba"})


def test_multiclass_curves_are_capped_at_the_most_frequent_classes() -> None:
    meta, arte = classification_case(n=6000, k=15)
    for kind in ("roc", "precision_recall"):
        ax = plots.make_plot(kind, meta, arte).axes[0]
        legend = ax.get_legend()
        curves = [t.get_text() for t in legend.get_texts() if "(A" in t.get_text()]
        assert len(curves) == plots.MAX_CLASS_CURVES
        assert "10 most frequent of 15 classes" in legend.get_title().get_text()


def test_scatter_plots_subsample_deterministically() -> None:
    meta, arte = regression_case(n=100_000)
    first = plots.make_plot("predicted_vs_actual", meta, arte, max_points=3000)
    second = plots.make_plot("predicted_vs_actual", meta, arte, max_points=3000)
    a = first.axes[0].collections[0].get_offsets()
    assert len(a) == 3000
    assert np.array_equal(a, second.axes[0].collections[0].get_offsets())
    notes = [t.get_text() for t in first.axes[0].texts]
    assert any("3,000 of 100,000 held-out rows shown" in n for n in notes)


def test_feature_importance_shows_the_top_features() -> None:
    meta, _ = regression_case()
    ax = plots.make_plot("feature_importance", meta, None).axes[0]
    assert len(ax.patches) == plots.MAX_BARS
    assert any("top 20 of 25 features" in t.get_text() for t in ax.texts)


def test_headline_metric() -> None:
    assert plots.headline_metric({"task_type": "regression", "metrics": {"r2": 0.5}}) == ("r2", 0.5)
    assert plots.headline_metric({"task_type": "classification", "metrics": {}}) == ("accuracy", None)
    assert plots.headline_metric({"metrics": {"accuracy": 0.9}}) == ("accuracy", 0.9)
    assert plots.headline_metric({"metrics": {"r2": float("nan")}}) == (None, None)
    assert plots.headline_metric({"metrics": "broken"}) == (None, None)


def top_to_bottom(ax: Any) -> list[str]:
    labels = sorted(ax.get_yticklabels(), key=lambda t: t.get_position()[1], reverse=True)
    return [t.get_text() for t in labels]


def test_comparison_plot_orders_best_first() -> None:
    rows = [
        {"model_id": "a", "display_name": "Forest", "metrics": {"rmse": 3.0}},
        {"model_id": "b", "display_name": "Linear", "metrics": {"rmse": 5.0}},
        {"model_id": "c", "display_name": "Boost", "rmse": 2.0},
        {"model_id": "d", "display_name": "Old", "metrics": {}},
    ]
    fig = plots.comparison_plot(rows, "rmse")
    assert_renders(fig)
    ax = fig.axes[0]
    assert top_to_bottom(ax) == ["Boost", "Forest", "Linear"]
    assert "lower is better" in ax.get_xlabel()
    assert any("1 model(s) not shown" in t.get_text() for t in ax.texts)
    twins = [
        {"model_id": "model_z_1", "display_name": "Forest", "metrics": {"r2": 0.9}},
        {**rows[0], "metrics": {"r2": 0.7}},
    ]
    fig = plots.comparison_plot([*rows[:2], *twins], "r2")
    names = top_to_bottom(fig.axes[0])
    assert names[0].startswith("Forest · ") and names[0] != names[1]
    with pytest.raises(PlotError, match="None of these 1 model"):
        plots.comparison_plot([rows[3]], "rmse")


def test_plots_never_import_pyplot() -> None:
    code = (
        "import sys, numpy as np\n"
        "from statsbot_nb.ml import plots\n"
        "meta = {'task_type': 'regression', 'display_name': 'm', 'feature_importances': {'a': 1.0},\n"
        "        'learning_curve': {'rounds': [1, 2], 'training': {'rmse': [2.0, 1.0]}}}\n"
        "arte = {'y_true': np.arange(50.0), 'y_pred': np.arange(50.0)}\n"
        "for kind in plots.PLOT_KINDS['regression']:\n"
        "    plots.figure_to_png(plots.make_plot(kind, meta, arte))\n"
        "plots.figure_to_png(plots.comparison_plot([{'display_name': 'm', 'r2': 1.0}], 'r2'))\n"
        "print('matplotlib.pyplot' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_importing_plots_is_cheap() -> None:
    code = "import sys, statsbot_nb.ml.plots\nprint('matplotlib' in sys.modules, 'sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


BIG_CASES = {
    "regression": lambda: regression_case(n=100_000),
    "binary": lambda: classification_case(n=100_000, k=2),
    "multiclass-12": lambda: classification_case(n=100_000, k=12),
}
BIG = [
    (case, kind)
    for case in BIG_CASES
    for kind in PLOT_KINDS["regression" if case == "regression" else "classification"]
]


@pytest.fixture(scope="module")
def big_cases() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    return {name: build() for name, build in BIG_CASES.items()}


@pytest.mark.parametrize(("case", "kind"), BIG)
def test_100k_held_out_rows_render_fast(big_cases: dict[str, Any], case: str, kind: str) -> None:
    meta, arte = big_cases[case]
    small_meta, small_arte = CASES["regression" if case == "regression" else "binary"](200)
    plots.figure_to_png(plots.make_plot(kind, small_meta, small_arte))  # warm up imports and caches
    started = time.perf_counter()
    png = assert_renders(plots.make_plot(kind, meta, arte))
    elapsed = time.perf_counter() - started
    print(f"\n100k rows {case:13s} {kind:20s} {elapsed * 1000:6.0f} ms  {len(png) / 1024:5.1f} KB")
    assert elapsed < 3.0, f"{kind} took {elapsed:.2f} s for 100k rows"
    assert len(png) < 200_000
