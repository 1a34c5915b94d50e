"""statsbot_nb.local: the notebook's models() table and LocalModel, on real models trained in tmp folders."""

from __future__ import annotations

import json
import math
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from statsbot_nb import local
from statsbot_nb.context import JobContext, JobSettings
from statsbot_nb.errors import AccessDenied, JobError, StatsbotError
from statsbot_nb.handlers.predict import predict as predict_job
from statsbot_nb.handlers.train import train
from statsbot_nb.ml import store
from statsbot_nb.ml.plots import PLOT_KINDS, PlotError

FEATURES = ["x1", "x2", "city"]
OLD_ID = "model_random_forest_classification_20240101_101010"
BARE_ID = "model_bare"


def make_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {"x1": rng.normal(size=n), "x2": rng.normal(size=n), "city": rng.choice(["paris", "rome", "oslo"], size=n)}
    )
    frame["y"] = (
        3 * frame["x1"] + frame["x2"] + np.where(frame["city"] == "rome", 2.0, 0.0) + rng.normal(scale=0.3, size=n)
    )
    score = frame["x1"] + frame["x2"]
    frame["label"] = np.where(score > 0, "yes", "no")
    frame["grade"] = np.select([score < -0.6, score < 0.6], ["low", "mid"], "high")
    return frame


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Train a regressor, a binary and a 3-class classifier once; tests copy the resulting store."""
    root = tmp_path_factory.mktemp("template")
    data = root / "data"
    data.mkdir()
    make_frame().to_csv(data / "train.csv", index=False)
    ctx = JobContext(JobSettings(home=root / "statsbot", allowed_dirs=(data,), cwd=data))
    ids = {}
    for key, model_type, target, task, name in [
        ("regression", "random_forest", "y", "regression", "Price forest"),
        ("binary", "logistic", "label", "classification", None),
        ("multiclass", "random_forest", "grade", "classification", "Grades"),
    ]:
        params = {
            "file_path": str(data / "train.csv"),
            "target_column": target,
            "feature_columns": FEATURES,
            "model_type": model_type,
            "task_type": task,
            "custom_name": name,
            "hyperparameters": {"n_estimators": 25} if model_type == "random_forest" else None,
        }
        ids[key] = train(params, ctx)["model_id"]
    shutil.rmtree(data)  # what the models show from here on comes from the store alone
    return {"models": root / "statsbot" / "models", "ids": ids, "data": data}


def write_older_worker_model(models: Path) -> None:
    """What today's headless worker saves: a bare pickled estimator and a short metadata.json."""
    from sklearn.linear_model import LogisticRegression

    frame = make_frame(80)
    estimator = LogisticRegression().fit(frame[["x1", "x2"]], frame["label"])
    folder = models / OLD_ID
    folder.mkdir(parents=True)
    (folder / "model.pkl").write_bytes(pickle.dumps(estimator))
    (folder / "metadata.json").write_text(
        json.dumps(
            {
                "model_id": OLD_ID,
                "model_type": "random_forest",
                "task_type": "classification",
                "target_column": "label",
                "feature_columns": ["x1", "x2"],
                "metrics": {"accuracy": 0.91},
                "created_at": "2024-01-01T10:10:10",
            }
        )
    )
    bare = models / BARE_ID
    bare.mkdir()
    (bare / "metadata.json").write_text("{}")


class Env:
    def __init__(self, home: Path, statsbot: Path, data: Path, outside: Path, ids: dict[str, str]) -> None:
        self.home, self.statsbot, self.data, self.outside, self.ids = home, statsbot, data, outside, ids
        self.models = statsbot / "models"


@pytest.fixture
def env(template: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    home = tmp_path / "user"
    data = home / "data"
    data.mkdir(parents=True)
    statsbot = home / ".statsbot"
    shutil.copytree(template["models"], statsbot / "models")
    write_older_worker_model(statsbot / "models")
    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("STATSBOT_HOME", str(statsbot))
    monkeypatch.delenv("STATSBOT_ALLOWED_DIRS", raising=False)
    monkeypatch.chdir(data)
    return Env(home, statsbot, data, outside, template["ids"])


# -- models() ------------------------------------------------------------------------------------------


def test_models_lists_the_store_newest_first_with_missing_fields(env: Env) -> None:
    table = local.models()
    assert (
        list(table.columns)
        == list(local.MODEL_COLUMNS)
        == [
            "model_id",
            "display_name",
            "model_type",
            "task_type",
            "target_column",
            "n_features",
            "headline_metric",
            "score",
            "created_at",
        ]
    )
    assert len(table) == 5
    trained = set(env.ids.values())
    assert set(table["model_id"][:3]) == trained
    assert table["created_at"].iloc[:3].is_monotonic_decreasing
    assert table["model_id"].iloc[3] == OLD_ID
    rows = table.set_index("model_id")
    assert rows.loc[env.ids["regression"], "headline_metric"] == "r2"
    assert rows.loc[env.ids["regression"], "display_name"] == "Price forest"
    assert rows.loc[env.ids["binary"], "headline_metric"] == "accuracy"
    assert 0.8 < rows.loc[env.ids["binary"], "score"] <= 1.0
    assert rows.loc[env.ids["multiclass"], "n_features"] == 3
    old = rows.loc[OLD_ID]
    assert old["score"] == 0.91 and old["n_features"] == 2 and old["display_name"] == OLD_ID
    bare = rows.loc[BARE_ID]
    assert bare["display_name"] == BARE_ID
    for column in ("model_type", "task_type", "target_column", "n_features", "headline_metric", "score", "created_at"):
        assert pd.isna(bare[column]), column
    assert str(table["n_features"].dtype) == "Int64" and table["score"].dtype == "float64"


def test_models_of_an_empty_or_missing_store(tmp_path: Path) -> None:
    table = local.models(tmp_path / "nowhere")
    assert table.empty and list(table.columns) == list(local.MODEL_COLUMNS)
    (tmp_path / "empty" / "models").mkdir(parents=True)
    assert local.models(tmp_path / "empty").empty


def test_models_takes_an_explicit_home(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATSBOT_HOME", str(env.outside))
    assert local.models().empty
    assert len(local.models(env.statsbot)) == 5
    assert local.model(env.ids["binary"], home=env.statsbot).model_id == env.ids["binary"]


# -- model() -------------------------------------------------------------------------------------------


def test_model_by_id_and_by_display_name(env: Env) -> None:
    by_id = local.model(env.ids["multiclass"])
    by_name = local.model("Grades")
    assert by_id.model_id == by_name.model_id == env.ids["multiclass"]
    assert by_name.display_name == "Grades"


def test_an_id_wins_over_a_display_name(env: Env) -> None:
    local.model(env.ids["binary"]).rename(env.ids["regression"])
    assert local.model(env.ids["regression"]).model_id == env.ids["regression"]


def test_shared_display_names_are_ambiguous(env: Env) -> None:
    local.model(env.ids["binary"]).rename("Grades")
    with pytest.raises(local.AmbiguousModel) as info:
        local.model("Grades")
    message = str(info.value)
    assert message.startswith("2 models are named 'Grades' (")
    assert env.ids["binary"] in message and env.ids["multiclass"] in message
    assert isinstance(info.value, KeyError) and isinstance(info.value, StatsbotError)


def test_a_missing_model_lists_close_matches(env: Env) -> None:
    with pytest.raises(local.ModelNotFound) as info:
        local.model("Price forst")
    assert isinstance(info.value, KeyError) and isinstance(info.value, StatsbotError)
    message = str(info.value)
    assert "There is no model with the id or name 'Price forst'" in message
    assert "Did you mean 'Price forest'?" in message
    assert not message.startswith("'")  # a sentence, not KeyError's quoted repr
    with pytest.raises(local.ModelNotFound, match="Did you mean 'Grades'"):
        local.model("grades")
    with pytest.raises(local.ModelNotFound, match="as text"):
        local.model("")


def test_a_model_lookup_in_an_empty_store(tmp_path: Path) -> None:
    with pytest.raises(local.ModelNotFound, match="which is empty"):
        local.model("anything", home=tmp_path)


# -- LocalModel ----------------------------------------------------------------------------------------


def test_properties_of_a_trained_classifier(env: Env) -> None:
    m = local.model(env.ids["binary"])
    assert m.task_type == "classification" and m.model_type == "logistic" and m.target_column == "label"
    assert m.feature_columns == FEATURES
    assert {"accuracy", "precision", "recall", "f1", "roc_auc"} <= set(m.metrics)
    assert m.display_name == "Logistic (3 features)"
    assert m.metadata["model_id"] == m.model_id
    m.metadata["display_name"] = "changed"  # a copy: the model is unchanged
    assert m.display_name == "Logistic (3 features)"
    arte = m.artefacts
    assert arte is not None and list(arte["class_labels"]) == ["no", "yes"]
    assert arte["proba"].shape == (len(arte["y_true"]), 2)
    kinds = m.plot_kinds
    assert all(why is None for kind, why in kinds.items() if kind != "learning_curve")
    assert str(kinds["learning_curve"]).startswith("logistic does not learn in rounds or epochs")


@pytest.mark.parametrize("key", ["regression", "binary", "multiclass"])
def test_every_plot_kind_renders_from_a_trained_model(env: Env, key: str) -> None:
    """Every kind but the learning curve (these models do not learn in rounds: test_curves.py draws it)."""
    m = local.model(env.ids[key])
    kinds = PLOT_KINDS[str(m.task_type)]
    assert list(m.plot_kinds) == kinds
    assert "does not learn in rounds" in str(m.plot_kinds["learning_curve"])
    with pytest.raises(PlotError, match=r"The learning curve of .* is not available\. .* does not learn in rounds"):
        m.plot("learning_curve")
    for kind in [k for k in kinds if k != "learning_curve"]:
        fig = m.plot(kind)
        assert isinstance(fig, Figure) and fig.axes
        path = env.data / f"{key}_{kind}.png"
        fig.savefig(path)
        assert path.read_bytes().startswith(b"\x89PNG")
        assert m.display_name in fig.get_suptitle()
    default = m.plot().axes[0].get_title()
    assert default == ("Predicted vs actual" if key == "regression" else "Confusion matrix")


def test_plots_work_after_the_training_data_is_gone(env: Env, template: dict[str, Any]) -> None:
    assert not template["data"].exists()
    m = local.model(env.ids["binary"])
    drawable = [kind for kind, why in m.plot_kinds.items() if why is None]
    assert len(drawable) == len(m.plot_kinds) - 1  # all but the learning curve of a logistic model
    for kind in drawable:
        assert isinstance(m.plot(kind), Figure)


def test_an_older_worker_model_shows_its_metadata_and_explains_plots(env: Env) -> None:
    m = local.model(OLD_ID)
    assert m.display_name == OLD_ID and m.metrics == {"accuracy": 0.91} and m.artefacts is None
    assert m.feature_columns == ["x1", "x2"] and m.created_at == "2024-01-01T10:10:10"
    assert all(why and "older worker" in why for why in m.plot_kinds.values())
    with pytest.raises(PlotError, match="older worker"):
        m.plot()
    with pytest.raises(PlotError, match="older worker"):
        m.plot("roc")
    text = repr(m)
    assert OLD_ID in text and "accuracy 0.910" in text and "plots: none" in text
    card = m._repr_html_()
    assert "No held-out predictions were saved" in card
    assert f"statsbot-worker trust-model {OLD_ID}" in card
    with pytest.raises(JobError, match=rf"without a checksum.*trust-model {OLD_ID}"):
        m.predict(make_frame(5))
    bare = local.model(BARE_ID)
    assert bare.task_type is None and bare.feature_columns == [] and "unknown model type" in repr(bare)
    assert "Not available" in bare._repr_html_()


def test_an_older_worker_model_predicts_once_trusted(env: Env) -> None:
    store.trust_model(env.models, OLD_ID)
    out = local.model(OLD_ID).predict(make_frame(20))
    assert set(out["prediction"]) <= {"yes", "no"}
    assert np.allclose(out["proba_no"] + out["proba_yes"], 1.0)


def test_repr_is_a_few_readable_lines(env: Env) -> None:
    text = repr(local.model(env.ids["regression"]))
    lines = text.splitlines()
    assert 2 <= len(lines) <= 4
    assert lines[0].startswith("<LocalModel 'Price forest' (model_random_forest_regression_")
    assert "random_forest regression · target 'y' · 3 feature(s) · R² 0." in lines[1]
    assert "plots: predicted_vs_actual, residuals, feature_importance" in lines[2]


def test_html_card_shows_everything_and_escapes_it(env: Env) -> None:
    m = local.model(env.ids["multiclass"]).rename("<script>alert('x')</script> & co")
    card = m._repr_html_()
    assert "<script>" not in card
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in card
    for text in (
        m.model_id,
        "classification",
        "random_forest",
        "<code>grade</code>",
        "<code>city</code>",
        "Metrics",
        "accuracy",
        "Preprocessing",
        "one-hot",
        "300 rows: 240 to train, 60 held out",
        "Created",
        ".plot(&#x27;roc&#x27;)",
        "Most important",
    ):
        assert text in card, text
    assert "trust-model" not in card


# -- predict -------------------------------------------------------------------------------------------


def test_predict_on_a_dataframe_matches_the_predict_job(env: Env) -> None:
    rows = make_frame(40, seed=3)
    rows.loc[3, "x2"] = np.nan
    before = rows.copy()
    for key in ("regression", "binary", "multiclass"):
        m = local.model(env.ids[key])
        out = m.predict(rows)
        pd.testing.assert_frame_equal(rows, before)  # the user's frame is untouched
        assert list(out.columns[: len(rows.columns)]) == list(rows.columns)
        assert out.index.equals(rows.index) and len(out) == 40
        rows.to_csv(env.data / f"{key}.csv", index=False)
        job = predict_job(
            {"model_id": m.model_id, "file_path": str(env.data / f"{key}.csv")},
            JobContext(JobSettings(home=env.statsbot, cwd=env.data)),
        )
        written = pd.read_csv(job["output_file"])
        if key == "regression":
            assert np.allclose(out["prediction"].astype(float), written["prediction"])
        else:
            assert list(out["prediction"].astype(str)) == list(written["prediction"].astype(str))
            probas = [c for c in out.columns if str(c).startswith("proba_")]
            assert probas and np.allclose(out[probas].sum(axis=1), 1.0)
            assert np.allclose(out[probas].to_numpy(float), written[probas].to_numpy(float))
    assert set(local.model("Grades").predict(rows)["prediction"]) <= {"low", "mid", "high"}


def test_predict_names_missing_columns(env: Env) -> None:
    with pytest.raises(JobError, match=r"The DataFrame lacks the column\(s\) 'city' that model"):
        local.model(env.ids["binary"]).predict(make_frame(5).drop(columns=["city"]))
    with pytest.raises(JobError, match="has no rows"):
        local.model(env.ids["binary"]).predict(make_frame(5).iloc[:0])
    with pytest.raises(JobError, match="takes a pandas DataFrame or the path"):
        local.model(env.ids["binary"]).predict([1, 2, 3])  # type: ignore[arg-type]


def test_predict_on_an_allowed_file_and_write_the_output(env: Env) -> None:
    make_frame(25, seed=5).to_csv(env.data / "new.csv", index=False)
    m = local.model(env.ids["binary"])
    out = m.predict("new.csv", output=env.data / "scored.parquet")
    assert len(out) == 25 and list(out.index) == list(range(25))
    written = pd.read_parquet(env.data / "scored.parquet")
    assert list(written["prediction"]) == list(out["prediction"])
    assert list(m.predict(str(env.data / "new.csv"))["prediction"]) == list(out["prediction"])


def test_predict_refuses_files_outside_the_allowed_folders(env: Env) -> None:
    make_frame(10).to_csv(env.outside / "new.csv", index=False)
    m = local.model(env.ids["regression"])
    with pytest.raises(AccessDenied, match="outside the folders this worker may use"):
        m.predict(env.outside / "new.csv")
    with pytest.raises(AccessDenied, match="outside the folders"):
        m.predict(make_frame(5), output=env.outside / "out.csv")
    assert not (env.outside / "out.csv").exists()
    assert len(m.predict(env.outside / "new.csv", allowed_dirs=[env.outside])) == 10
    make_frame(10).to_csv(env.statsbot / "inside.csv", index=False)
    with pytest.raises(AccessDenied, match="inside the StatsBot home"):
        m.predict(env.statsbot / "inside.csv")


def test_predict_refuses_a_tampered_model(env: Env) -> None:
    m = local.model(env.ids["regression"])
    (env.models / m.model_id / "model.pkl").write_bytes(pickle.dumps({"not": "a model"}))
    with pytest.raises(JobError, match="checksum mismatch"):
        m.predict(make_frame(5))


# -- rename and delete ---------------------------------------------------------------------------------


def test_rename_uses_the_store_rules(env: Env) -> None:
    m = local.model(env.ids["binary"])
    assert m.rename("  Churn v2  ") is m
    assert m.display_name == "Churn v2"
    meta = json.loads((env.models / m.model_id / "metadata.json").read_text())
    assert meta["custom_name"] == meta["display_name"] == "Churn v2"
    assert meta["model_sha256"]  # the rest of the metadata is kept
    assert local.models().set_index("model_id").loc[m.model_id, "display_name"] == "Churn v2"
    assert local.model("Churn v2").model_id == m.model_id
    for bad, pattern in [("", "non-empty"), ("a\nb", "control characters"), ("x" * 101, "at most 100")]:
        with pytest.raises(JobError, match=pattern):
            m.rename(bad)
    assert local.model(OLD_ID).rename("Legacy").display_name == "Legacy"


def test_delete_removes_the_model_and_the_object_says_so(env: Env) -> None:
    m = local.model(env.ids["regression"])
    m.delete()
    assert m.deleted and not (env.models / m.model_id).exists()
    assert m.model_id not in set(local.models()["model_id"])
    assert "DELETED" in repr(m) and "deleted" in m._repr_html_()
    for action in (lambda: m.delete(), lambda: m.rename("x"), lambda: m.predict(make_frame(3))):
        with pytest.raises(JobError, match="was deleted"):
            action()
    assert m.artefacts is None
    with pytest.raises(local.ModelNotFound):
        local.model(m.model_id)
    assert not [p for p in env.models.iterdir() if p.name.startswith(".trash")]


def test_importing_local_is_cheap() -> None:
    code = (
        "import sys, statsbot_nb.local\n"
        "print([m for m in ('pandas', 'matplotlib', 'sklearn', 'IPython', 'ipywidgets') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_headline_score_is_nan_not_an_error_for_broken_metrics(env: Env) -> None:
    folder = env.models / "model_broken"
    folder.mkdir()
    (folder / "metadata.json").write_text(
        json.dumps({"task_type": "regression", "metrics": {"r2": "high"}, "feature_columns": "x1", "created_at": 5})
    )
    row = local.models().set_index("model_id").loc["model_broken"]
    assert row["headline_metric"] == "r2" and math.isnan(row["score"]) and pd.isna(row["n_features"])
    assert row["created_at"] == "5"
    assert "r2" in local.model("model_broken")._repr_html_()


def test_compare_draws_one_metric_across_a_task(env: Env) -> None:
    from statsbot_nb.local import compare

    fig = compare("accuracy", task="classification")
    assert fig.axes and "accuracy" in fig.axes[0].get_title().lower()
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "Grades" in " ".join(labels) and len(labels) == 3  # two trained here, one older worker's
    with pytest.raises(StatsbotError):
        compare("accuracy", task="regression")
