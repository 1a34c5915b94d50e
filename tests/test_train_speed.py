"""What made training fast must not change what it computes: the median imputer's shortcut gives
scikit-learn's own statistics, importances without permutation rank the features the same way, forests are
grown in batches that use every thread they were given, and library versions are found without scanning
every installed package. (The speed itself is measured by ``benchmarks/run.py``.)"""

from __future__ import annotations

import importlib.metadata
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from jobenv import JobEnv, job_env
from sklearn.impute import SimpleImputer

from statsbot_nb.handlers.train import train
from statsbot_nb.ml import estimators
from statsbot_nb.ml.preprocess import fast_median_imputation


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> JobEnv:
    return job_env(tmp_path, monkeypatch)


values = st.one_of(
    st.just(np.nan),
    st.floats(allow_nan=False, allow_infinity=False, width=64, min_value=-1e300, max_value=1e300),
    st.sampled_from([0.0, 1.0, -1.0, 2.5]),  # ties
)


@settings(max_examples=300, deadline=None)
@given(
    X=arrays(np.float64, st.tuples(st.integers(1, 40), st.integers(1, 5)), elements=values),
    keep_empty=st.booleans(),
    indicator=st.booleans(),
)
def test_fast_median_gives_scikit_learns_statistics(X: np.ndarray, keep_empty: bool, indicator: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's "Skipping features without any observed values"
        slow = SimpleImputer(strategy="median", keep_empty_features=keep_empty, add_indicator=indicator).fit(X)
        with fast_median_imputation():
            fast = SimpleImputer(strategy="median", keep_empty_features=keep_empty, add_indicator=indicator).fit(X)
        assert np.array_equal(slow.statistics_, fast.statistics_, equal_nan=True)
        assert np.array_equal(slow.transform(X), fast.transform(X), equal_nan=True)


def test_the_shortcut_is_undone_and_leaves_other_strategies_alone() -> None:
    original = SimpleImputer.__dict__["_dense_fit"]
    X = np.array([[1.0, np.nan], [3.0, 4.0], [np.nan, 4.0]])
    with pytest.raises(RuntimeError), fast_median_imputation():
        assert SimpleImputer.__dict__["_dense_fit"] is not original
        mean = SimpleImputer(strategy="mean").fit(X)
        frequent = SimpleImputer(strategy="most_frequent").fit(X)
        raise RuntimeError("a fit that fails")
    assert SimpleImputer.__dict__["_dense_fit"] is original
    assert np.allclose(mean.statistics_, [2.0, 4.0]) and np.allclose(frequent.statistics_, [1.0, 4.0])


def _table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """``strong`` decides the label, ``weak`` a little, ``noise`` not at all; ``town`` a little."""
    rng = np.random.default_rng(seed)
    strong, weak, noise = rng.normal(size=(3, n))
    town = rng.choice(["a", "b", "c"], size=n)
    score = 3 * strong + 0.5 * weak + np.where(town == "a", 0.4, 0.0) + rng.normal(scale=0.3, size=n)
    return pd.DataFrame(
        {"strong": strong, "weak": weak, "noise": noise, "town": town, "label": np.where(score > 0, "y", "n")}
    )


def _train(env: JobEnv, model_type: str, **hyper: Any) -> dict[str, Any]:
    path = env.data / "t.csv"
    if not path.exists():
        _table().to_csv(path, index=False)
    params = {
        "file_path": str(path),
        "target_column": "label",
        "feature_columns": ["strong", "weak", "noise", "town"],
        "model_type": model_type,
        "task_type": "classification",
        "hyperparameters": hyper or None,
    }
    data = train(params, env.ctx)
    folder = env.settings.home / "models" / data["model_id"]
    return json.loads((folder / "metadata.json").read_text())


@pytest.mark.parametrize(
    ("model_type", "method"),
    [("logistic", "coefficients"), ("svm", "permutation"), ("random_forest", "model")],
)
def test_importances_rank_the_features(env: JobEnv, model_type: str, method: str) -> None:
    meta = _train(env, model_type)
    importances = meta["feature_importances"]
    assert meta["feature_importance_method"] == method
    assert set(importances) == {"strong", "weak", "noise", "town"}  # one-hot columns summed back to "town"
    assert abs(sum(importances.values()) - 1) < 1e-3
    assert importances["strong"] > 0.5
    assert importances["strong"] > importances["weak"] > importances["noise"] - 0.02


def test_a_forest_grows_in_batches_that_use_every_thread(env: JobEnv) -> None:
    _train(env, "random_forest", n_estimators=10, n_jobs=2)
    grown = [m for _, m, s in env.events if s == "fitting" and m.startswith("Growing trees")]
    assert grown == ["Growing trees 0/10", *(f"Growing trees {k}/10" for k in (2, 4, 6, 8, 10))]


def test_a_forest_of_one_thread_still_reports_about_ten_batches(env: JobEnv) -> None:
    _train(env, "random_forest", n_estimators=30, n_jobs=1)
    grown = [m for _, m, s in env.events if s == "fitting" and m.startswith("Growing trees")]
    assert grown[1:] == [f"Growing trees {k}/30" for k in range(3, 31, 3)]


def test_library_versions_need_no_scan_of_every_package(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_scan() -> dict[str, list[str]]:
        raise AssertionError("packages_distributions() scans every installed package (0.3 s)")

    monkeypatch.setattr(importlib.metadata, "packages_distributions", no_scan)
    found = estimators.installed_libraries.__wrapped__()
    assert found["scikit-learn"] == importlib.metadata.version("scikit-learn")
    for name, module in (("xgboost", "xgboost"), ("tensorflow", "tensorflow")):
        if found[name] is not None:  # installed under its own name or the -cpu build
            assert found[name] != "unknown", module


@settings(max_examples=200, deadline=None)
@given(data=st.data(), k=st.integers(2, 5))
def test_one_call_gives_the_three_label_metrics_scikit_learn_gives(data: st.DataObject, k: int) -> None:
    from sklearn.metrics import f1_score, precision_score, recall_score

    from statsbot_nb.ml.evaluate import classification_metrics

    n = data.draw(st.integers(1, 40))
    y_true = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    y_pred = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    kwargs: dict[str, Any] = {"zero_division": 0}
    kwargs.update(
        {"average": "binary", "pos_label": 1} if k == 2 else {"average": "weighted", "labels": list(range(k))}
    )
    got = classification_metrics(y_true, y_pred, None, k)
    assert got["precision"] == pytest.approx(precision_score(y_true, y_pred, **kwargs), abs=1e-12)
    assert got["recall"] == pytest.approx(recall_score(y_true, y_pred, **kwargs), abs=1e-12)
    assert got["f1"] == pytest.approx(f1_score(y_true, y_pred, **kwargs), abs=1e-12)


def test_the_forkserver_preload_warms_what_jobs_use() -> None:
    import subprocess
    import sys

    code = (
        "import sys, statsbot_nb.ml.warm as w; print(all(m in sys.modules for m in w.MODULES if m not in w.preload()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "True"
    from statsbot_nb.runner import PRELOAD

    assert "statsbot_nb.ml.warm" in PRELOAD


def test_a_few_rows_are_predicted_on_one_thread_and_the_setting_is_restored() -> None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from statsbot_nb.ml.predict import FEW_ROWS, _one_thread_for_few_rows

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 3)), rng.integers(0, 2, 200)
    model = Pipeline([("s", StandardScaler()), ("m", RandomForestClassifier(n_estimators=8, n_jobs=2))]).fit(X, y)
    expected = model.predict_proba(X[:5])
    with _one_thread_for_few_rows(model, 5):
        assert model.steps[-1][1].n_jobs == 1
        assert np.array_equal(model.predict_proba(X[:5]), expected)
    assert model.steps[-1][1].n_jobs == 2
    with _one_thread_for_few_rows(model, FEW_ROWS):
        assert model.steps[-1][1].n_jobs == 2  # many rows: the threads pay off


@pytest.mark.parametrize("model_type", ["logistic", "random_forest", "svm", "gradient_boosting"])
def test_predictions_preprocess_once_and_equal_the_pipelines_own(env: JobEnv, model_type: str) -> None:
    """The predictor runs the pipeline's preprocessing once for both the labels and the probabilities;
    the answers must be exactly what the stored ``Pipeline.predict`` and ``predict_proba`` give."""
    from statsbot_nb.ml.predict import PREDICTION_COLUMN, load_predictor

    meta = _train(env, model_type)
    predictor = load_predictor(env.settings.home / "models", meta["model_id"])
    frame = _table(60, seed=3).drop(columns=["label"])
    out = predictor.predict(frame)
    pipeline = predictor.model
    X = predictor._features(frame)
    labels = predictor.label_encoder.inverse_transform(pipeline.predict(X).astype("int64"))
    assert list(out[PREDICTION_COLUMN]) == list(labels)
    proba = pipeline.predict_proba(X)
    assert np.array_equal(out[[f"proba_{label}" for label in predictor.labels]].to_numpy(), proba)
