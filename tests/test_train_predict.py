"""The train and predict handlers (statsbot_nb.handlers.train, .predict) on real CSV/Parquet files."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from typing import Any

import extras
import numpy as np
import pandas as pd
import pytest
from jobenv import JobEnv, job_env

from statsbot_nb.context import JobContext
from statsbot_nb.errors import AccessDenied, JobError
from statsbot_nb.handlers.predict import predict
from statsbot_nb.handlers.train import train
from statsbot_nb.ml import store

FEATURES = ["x1", "x2", "city"]

REGRESSION_TYPES = [
    "linear",
    "ridge",
    "lasso",
    "elasticnet",
    "polynomial",
    "decision_tree",
    "random_forest",
    "extra_trees",
    "gradient_boosting",
    "svm",
    "mlp",
    "mlp_regression",
]
CLASSIFICATION_TYPES = [
    ("logistic", "label"),
    ("naive_bayes", "label"),
    ("decision_tree", "grade"),
    ("random_forest", "grade"),
    ("extra_trees", "label"),
    ("gradient_boosting", "grade"),
    ("svm", "label"),
    ("mlp", "grade"),
    ("mlp_classification", "label"),
]
# skipped (and listed at the end of the run) without the [boost] extra
BOOST_REGRESSION = [extras.param("xgboost_regression"), extras.param("lightgbm_regression")]
BOOST_CLASSIFICATION = [
    extras.param("xgboost_binary_classification", "label"),
    extras.param("xgboost_multiclass", "grade"),
    extras.param("lightgbm_binary_classification", "label"),
    extras.param("lightgbm_multiclass", "grade"),
]


Env = JobEnv


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    return job_env(tmp_path, monkeypatch)


def make_frame(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """An easy problem with a category column, missing values and text labels."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    city = rng.choice(["paris", "rome", "oslo"], size=n)
    y = 3 * x1 + 2 * x2 + np.where(city == "rome", 2.0, 0.0) + rng.normal(scale=0.3, size=n)
    score = x1 + x2
    frame = pd.DataFrame(
        {
            "x1": x1,
            "x2": x2,
            "city": city.astype(object),
            "y": y,
            "label": np.where(score > 0, "yes", "no"),
            "grade": np.select([score < -0.6, score < 0.6], ["low", "mid"], "high"),
        }
    )
    frame.loc[rng.choice(n, 12, replace=False), "x2"] = np.nan
    frame.loc[rng.choice(n, 12, replace=False), "city"] = None
    return frame


def write(frame: pd.DataFrame, folder: Path, name: str, fmt: str) -> Path:
    path = folder / f"{name}.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def train_params(path: Path, model_type: str, target: str, task: str, **extra: Any) -> dict[str, Any]:
    params = {
        "file_path": str(path),
        "target_column": target,
        "feature_columns": FEATURES,
        "model_type": model_type,
        "task_type": task,
        "hyperparameters": None,
        "test_size": 0.2,
        "custom_name": None,
    }
    params.update(extra)
    return params


def new_rows() -> pd.DataFrame:
    """Rows to predict on, including a category never seen in training and a missing value."""
    frame = make_frame(30, seed=7).drop(columns=["y", "label", "grade"])
    frame.loc[0, "city"] = "tokyo"
    frame.loc[1, "x1"] = np.nan
    return frame


def check_prediction_file(env: Env, model_id: str, fmt: str, labels: set[str] | None) -> None:
    source = write(new_rows(), env.data, "new", fmt)
    data = predict({"model_id": model_id, "file_path": str(source), "feature_columns": FEATURES}, env.ctx)
    out = Path(data["output_file"])
    meta = json.loads((env.settings.models_dir / model_id / "metadata.json").read_text())
    kind, target = meta["model_type"].upper().replace("_", ""), meta["target_column"].upper()
    assert out.parent == env.data and out.name.startswith(f"predictions_{kind}_{target}_"), out
    written = pd.read_csv(out)
    assert len(written) == 30 == data["predictions_count"] == data["dataframe_rows"]
    assert list(written.columns[:3]) == FEATURES
    assert written["prediction"].notna().all()
    # on the wire: up to ten numbers, and no row of the user's table (sharing is off)
    sample = data["predictions_sample"]
    assert len(sample) == 10 and all(isinstance(v, float) for v in sample), sample
    assert data["dataframe_sample"] is None
    json.dumps(data, allow_nan=False)
    if labels is not None:
        assert set(written["prediction"].astype(str)) <= labels  # the file keeps the user's labels
        ordered = sorted(labels)
        proba = written[[f"proba_{label}" for label in ordered]]
        assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-4)
        if len(ordered) == 2:  # the positive class's probability, as today's worker sends it
            assert np.allclose(sample, proba[f"proba_{ordered[1]}"].iloc[:10].round(8), atol=1e-8)
        else:  # text labels: the predicted class's position in the sorted labels
            assert sample == [float(ordered.index(v)) for v in written["prediction"].astype(str).iloc[:10]]
    else:
        assert pd.api.types.is_float_dtype(written["prediction"])
        assert np.allclose(sample, written["prediction"].iloc[:10])


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("model_type", REGRESSION_TYPES + BOOST_REGRESSION)
def test_every_regression_type_trains_and_predicts(env: Env, model_type: str, fmt: str) -> None:
    path = write(make_frame(), env.data, "train", fmt)
    data = train(train_params(path, model_type, "y", "regression"), env.ctx)
    metrics = data["metrics"]
    assert set(metrics) == {"r2", "mse", "rmse", "mae"}
    assert metrics["r2"] > 0.5, metrics
    assert math.isclose(metrics["rmse"] ** 2, metrics["mse"], rel_tol=1e-9)
    stats = data["dataset_stats"]
    assert (stats["n_rows"], stats["n_train"] + stats["n_test"], stats["n_features"]) == (240, 240, 3)
    assert set(stats["quartiles"]) >= {"q1", "median", "q3"}
    assert data["model_info"]["task_type"] == "regression"
    assert data["model_id"].startswith(f"model_{model_type}_regression_")
    assert data["training_time"] >= 0
    check_prediction_file(env, data["model_id"], fmt, None)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize(("model_type", "target"), CLASSIFICATION_TYPES + BOOST_CLASSIFICATION)
def test_every_classification_type_trains_and_predicts(env: Env, model_type: str, target: str, fmt: str) -> None:
    path = write(make_frame(), env.data, "train", fmt)
    data = train(train_params(path, model_type, target, "classification"), env.ctx)
    metrics = data["metrics"]
    assert metrics["accuracy"] > 0.7, metrics
    for key in ("precision", "recall", "f1", "roc_auc", "auc_pr", "brier_score", "log_loss"):
        assert isinstance(metrics[key], float), (key, metrics)
    assert metrics["roc_auc"] > 0.8 and 0 <= metrics["brier_score"] <= 1
    labels = {"yes", "no"} if target == "label" else {"low", "mid", "high"}
    assert set(data["dataset_stats"]["class_distribution"]) == labels
    check_prediction_file(env, data["model_id"], fmt, labels)


@pytest.mark.parametrize(
    ("model_type", "target", "expected"),
    [
        ("mlp_regression", "y", "regression"),
        ("mlp_classification", "label", "classification"),
        ("mlp", "y", "regression"),
        ("mlp", "label", "classification"),
    ],
)
def test_neural_network_task_is_resolved(env: Env, model_type: str, target: str, expected: str) -> None:
    path = write(make_frame(), env.data, "train", "csv")
    data = train(train_params(path, model_type, target, "neural_network", hyperparameters={"max_iter": 60}), env.ctx)
    assert data["model_info"]["task_type"] == expected


def test_progress_moves_during_a_forest_fit(env: Env) -> None:
    path = write(make_frame(), env.data, "train", "csv")
    train(train_params(path, "random_forest", "y", "regression", hyperparameters={"n_estimators": 100}), env.ctx)
    growing = [(p, m) for p, m, s in env.events if s == "fitting" and m.startswith("Growing trees")]
    assert len(growing) >= 10
    assert growing[-1][1] == "Growing trees 100/100"
    percents = [p for p, _ in growing]
    assert percents == sorted(percents) and percents[0] < 30 < 70 < percents[-1]
    stages = [s for _, _, s in env.events]
    assert stages.index("loading") < stages.index("fitting") < stages.index("evaluating") < stages.index("saving")
    assert env.events[-1][0] == 100


@pytest.mark.parametrize(
    "model_type",
    [extras.param("xgboost_regression"), extras.param("lightgbm_regression"), "gradient_boosting", "mlp_regression"],
)
def test_progress_is_reported_from_inside_boosting_and_epochs(env: Env, model_type: str) -> None:
    path = write(make_frame(), env.data, "train", "csv")
    train(train_params(path, model_type, "y", "regression"), env.ctx)
    inside = [m for _, m, s in env.events if s == "fitting" and (m.startswith(("Boosting", "Epoch")))]
    assert len(inside) >= 20


def test_metadata_artefacts_and_headless_compatibility(env: Env) -> None:
    path = write(make_frame(), env.data, "train", "csv")
    data = train(
        train_params(
            path,
            "random_forest",
            "label",
            "classification",
            custom_name="Churn v1",
            hyperparameters={"n_estimators": 30},
        ),
        env.ctx,
    )
    folder = env.settings.models_dir / data["model_id"]
    meta = json.loads((folder / "metadata.json").read_text())
    for key in (
        "model_id",
        "model_type",
        "task_type",
        "target_column",
        "feature_columns",
        "metrics",
        "created_at",
        "custom_name",
        "display_name",
        "model_sha256",
        "encoders_sha256",
        "dataset_stats",
        "model_info",
        "training_time",
        "hyperparameters",
        "preprocessing",
        "feature_importances",
        "class_labels",
        "worker_version",
        "format_version",
    ):
        assert key in meta, key
    assert meta["display_name"] == data["display_name"] == "Churn v1"
    assert meta["class_labels"] == ["no", "yes"] and meta["positive_class"] == "yes"
    assert meta["hyperparameters"]["n_estimators"] == 30
    assert set(meta["feature_importances"]) == set(FEATURES)
    assert any("one-hot" in line for line in meta["preprocessing"]["description"])
    arte = store.load_artefacts(env.settings.models_dir, data["model_id"])
    assert len(arte["y_true"]) == len(arte["y_pred"]) == data["dataset_stats"]["n_test"]
    assert arte["proba"].shape == (data["dataset_stats"]["n_test"], 2)
    assert list(arte["class_labels"]) == ["no", "yes"]
    # What today's headless worker does: pickle.load, apply feature encoders, predict on raw columns.
    raw = (folder / "model.pkl").read_bytes()
    assert b"statsbot_nb" not in raw
    model = pickle.loads(raw)
    encoders = pickle.loads((folder / "encoders.pkl").read_bytes())
    assert set(encoders) == {"label"}
    rows = new_rows()
    assert model.predict_proba(rows[FEATURES]).shape == (30, 2)
    assert set(encoders["label"].inverse_transform(model.predict(rows[FEATURES]))) <= {"yes", "no"}
    assert store.list_models(env.settings.models_dir)[0]["display_name"] == "Churn v1"


@pytest.mark.parametrize(
    "model_type", [extras.param("xgboost_multiclass"), extras.param("lightgbm_multiclass"), "mlp", "svm"]
)
def test_saved_pickles_hold_no_statsbot_objects(env: Env, model_type: str) -> None:
    path = write(make_frame(), env.data, "train", "csv")
    data = train(train_params(path, model_type, "grade", "classification"), env.ctx)
    assert b"statsbot_nb" not in (env.settings.models_dir / data["model_id"] / "model.pkl").read_bytes()


def test_missing_targets_are_dropped_and_reported(env: Env) -> None:
    frame = make_frame()
    frame.loc[[3, 4, 5], "y"] = np.nan
    path = write(frame, env.data, "train", "csv")
    data = train(train_params(path, "linear", "y", "regression"), env.ctx)
    assert data["dataset_stats"]["dropped_rows"] == 3
    assert data["dataset_stats"]["n_rows"] == 237


def test_singleton_class_falls_back_to_a_plain_split_with_a_note(env: Env) -> None:
    frame = make_frame()
    frame.loc[0, "label"] = "maybe"
    path = write(frame, env.data, "train", "csv")
    data = train(train_params(path, "logistic", "label", "classification"), env.ctx)
    assert any("not stratified" in note for note in data["notes"])
    meta = json.loads((env.settings.models_dir / data["model_id"] / "metadata.json").read_text())
    assert meta["class_labels"] == ["maybe", "no", "yes"]


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"test_size": 0}, "test_size must be a fraction"),
        ({"test_size": 1.5}, "test_size must be a fraction"),
        ({"test_size": "abc"}, "test_size must be a fraction"),
        ({"test_size": True}, "test_size must be a fraction"),
        ({"feature_columns": []}, "feature_columns must be a non-empty list"),
        ({"feature_columns": ["x1", 3]}, "feature_columns must contain only column names"),
        ({"feature_columns": ["x1", "y"]}, "target_column 'y' is also listed in feature_columns"),
        ({"target_column": ""}, "target_column is missing"),
        ({"file_path": None}, "file_path is missing"),
        ({"task_type": "clustering"}, "task_type 'clustering' must be"),
        ({"model_type": "rocket"}, "model_type 'rocket' is not a model"),
        ({"hyperparameters": [1]}, "hyperparameters must be an object"),
        ({"hyperparameters": {"n_trees": 3}}, "Unknown hyperparameter 'n_trees' .* valid names are: .*n_estimators"),
        ({"custom_name": "x" * 101}, "custom_name is 101 characters"),
        ({"model_type": "logistic"}, "cannot be used for regression; valid types for regression are: linear"),
        ({"feature_columns": ["x1", "nope"]}, "has no column 'nope'; its columns are"),
    ],
)
def test_bad_train_params_are_sentences(env: Env, change: dict[str, Any], pattern: str) -> None:
    path = write(make_frame(), env.data, "train", "csv")
    params = train_params(path, "random_forest", "y", "regression")
    params.update(change)
    with pytest.raises(JobError, match=pattern):
        train(params, env.ctx)
    assert store.list_models(env.settings.models_dir) == []


def test_text_target_for_regression_is_a_sentence(env: Env) -> None:
    path = write(make_frame(), env.data, "train", "csv")
    with pytest.raises(JobError, match=r"'label' has values that are not numbers .* choose classification"):
        train(train_params(path, "linear", "label", "regression"), env.ctx)


@pytest.mark.extra("xgboost")
def test_library_fit_errors_become_sentences(env: Env) -> None:
    path = write(make_frame(), env.data, "train", "csv")
    with pytest.raises(JobError, match=r"xgboost_regression could not be trained with these settings") as err:
        train(
            train_params(path, "xgboost_regression", "y", "regression", hyperparameters={"learning_rate": -1}), env.ctx
        )
    assert "Traceback" not in str(err.value) and "\n" not in str(err.value)


def test_files_outside_allowed_folders_are_refused(env: Env, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    path = write(make_frame(), elsewhere, "train", "csv")
    with pytest.raises(AccessDenied):
        train(train_params(path, "linear", "y", "regression"), env.ctx)


@pytest.fixture
def trained(env: Env) -> str:
    path = write(make_frame(), env.data, "train", "csv")
    return train(train_params(path, "decision_tree", "label", "classification"), env.ctx)["model_id"]


def test_predict_missing_columns_are_listed(env: Env, trained: str) -> None:
    source = write(new_rows().drop(columns=["x2", "city"]), env.data, "partial", "csv")
    with pytest.raises(JobError, match=r"lacks the column\(s\) 'x2', 'city' that model"):
        predict({"model_id": trained, "file_path": str(source)}, env.ctx)
    assert not list(env.data.glob("predictions_*"))


def test_predict_uses_the_models_own_features_and_notes_it(env: Env, trained: str) -> None:
    source = write(new_rows().assign(extra=1), env.data, "new", "csv")
    data = predict({"model_id": trained, "file_path": str(source), "feature_columns": ["x1"]}, env.ctx)
    assert any("model's own feature columns" in n for n in data["notes"])
    assert data["dataframe_columns"] == [*FEATURES, "extra"]  # the input's columns, as today's worker sends


def test_dataframe_sample_shares_input_values_only_when_allowed(env: Env, trained: str) -> None:
    rows = new_rows()
    source = write(rows, env.data, "new", "csv")
    private = predict({"model_id": trained, "file_path": str(source)}, env.ctx)
    assert private["dataframe_sample"] is None
    shared = predict({"model_id": trained, "file_path": str(source)}, env.ctx_sharing())
    sent = np.array([np.nan if r["x1"] is None else r["x1"] for r in shared["dataframe_sample"]])
    assert np.allclose(sent, rows["x1"].iloc[:10].to_numpy(), equal_nan=True)
    assert set(shared["dataframe_sample"][0]) == set(FEATURES)  # the input rows, as today's worker sends


def test_predict_never_overwrites_a_file(env: Env, trained: str) -> None:
    source = write(new_rows(), env.data, "new", "csv")
    ctx = JobContext(env.settings, job_id="job_0123456789ab")
    first = Path(predict({"model_id": trained, "file_path": str(source)}, ctx)["output_file"])
    assert first.name == "predictions_DECISIONTREE_LABEL_job_0123456789ab.csv"
    first.write_text("the user's own edits\n")
    second = Path(predict({"model_id": trained, "file_path": str(source)}, ctx)["output_file"])
    assert second.name == "predictions_DECISIONTREE_LABEL_job_0123456789ab_2.csv"
    assert first.read_text() == "the user's own edits\n" and len(pd.read_csv(second)) == 30


@pytest.mark.parametrize("bad_id", ["../x", "/etc", "a/b", "..", "", None])
def test_predict_refuses_model_ids_outside_the_store(env: Env, trained: str, bad_id: object) -> None:
    source = write(new_rows(), env.data, "new", "csv")
    with pytest.raises(JobError, match=r"not a valid model id|inside the model store"):
        predict({"model_id": bad_id, "file_path": str(source)}, env.ctx)


def test_predict_refuses_a_tampered_model(env: Env, trained: str) -> None:
    pkl = env.settings.models_dir / trained / "model.pkl"
    pkl.write_bytes(pkl.read_bytes() + b"\x00")
    source = write(new_rows(), env.data, "new", "csv")
    with pytest.raises(JobError, match=r"checksum mismatch.*statsbot-worker trust-model"):
        predict({"model_id": trained, "file_path": str(source)}, env.ctx)


def test_predict_on_large_input_goes_in_chunks(env: Env, trained: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from statsbot_nb.ml import predict as predict_module

    monkeypatch.setattr(predict_module, "CHUNK_ROWS", 7)
    source = write(new_rows(), env.data, "new", "parquet")
    data = predict({"model_id": trained, "file_path": str(source)}, env.ctx)
    written = pd.read_csv(data["output_file"])
    assert len(written) == 30 and list(written.columns).count("prediction") == 1
    assert len([m for _, m, s in env.events if s == "predicting" and m.startswith("Predicted")]) >= 4


def test_model_from_an_older_worker_predicts_after_trust(env: Env) -> None:
    """Today's workers save a bare estimator plus ``{feature: LabelEncoder}``; we use them once trusted."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.preprocessing import LabelEncoder

    frame = make_frame().dropna()
    city = LabelEncoder().fit(frame["city"].astype(str))
    X = frame[FEATURES].assign(city=city.transform(frame["city"].astype(str)))
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, frame["label"])
    models = env.settings.models_dir
    folder = models / "model_random_forest_classification_20250101_101010"
    folder.mkdir(parents=True)
    (folder / "model.pkl").write_bytes(pickle.dumps(model))
    (folder / "encoders.pkl").write_bytes(pickle.dumps({"city": city}))
    (folder / "metadata.json").write_text(
        json.dumps(
            {
                "model_id": folder.name,
                "model_type": "random_forest",
                "task_type": "classification",
                "target_column": "label",
                "feature_columns": FEATURES,
                "metrics": {},
                "created_at": "2025-01-01T10:10:10",
                "custom_name": None,
                "display_name": "Old",
            }
        )
    )
    rows = new_rows().dropna()
    rows = rows[rows["city"] != "tokyo"]
    source = write(rows, env.data, "new", "csv")
    with pytest.raises(JobError, match=rf"without a checksum.*statsbot-worker trust-model {folder.name}"):
        predict({"model_id": folder.name, "file_path": str(source)}, env.ctx)
    store.trust_model(models, folder.name)
    data = predict({"model_id": folder.name, "file_path": str(source)}, env.ctx)
    written = pd.read_csv(data["output_file"])
    assert len(written) == len(rows) and set(written["prediction"]) <= {"yes", "no"}
    assert np.allclose(written["proba_no"] + written["proba_yes"], 1.0)
