"""Every job today's server sends, through the ``statsbot-worker`` console script and a strict stand-in for
today's server, in a temporary home, on real CSV and Parquet files."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import extras
import numpy as np
import pandas as pd
import pytest
from legacy_server import LegacyServer

SCRIPT = shutil.which("statsbot-worker") or ""

REGRESSION_TYPES = [
    "linear",
    "ridge",
    "lasso",
    "elasticnet",
    "polynomial",
    "decision_tree",
    "random_forest",
    "gradient_boosting",
    "svm",
    "mlp_regression",
    "xgboost_regression",
    "lightgbm_regression",
    "catboost_regression",
    "keras_regression",
]
CLASSIFICATION_TYPES = [
    "logistic",
    "naive_bayes",
    "decision_tree",
    "random_forest",
    "gradient_boosting",
    "svm",
    "mlp_classification",
    "xgboost_classification",
    "lightgbm_classification",
    "catboost_classification",
    "keras_classification",
]


def make_tables(folder: Path, n: int = 400, seed: int = 0) -> dict[str, Path]:
    """A regression and a classification table with a categorical column, missing values, text labels."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    city = rng.choice(["Paris", "Rome", "Oslo"], size=n)
    bump = pd.Series(city).map({"Paris": 2.0, "Rome": -1.0, "Oslo": 0.0}).to_numpy()
    price = 3 * x1 - 2 * x2 + bump + rng.normal(scale=0.3, size=n)
    label = np.where(x1 + 0.5 * bump + rng.normal(scale=0.3, size=n) > 0.3, "yes", "no")
    frame = pd.DataFrame({"x1": x1, "x2": x2, "city": city, "price": price, "label": label})
    frame.loc[rng.choice(n, 25, replace=False), "x2"] = np.nan
    frame.loc[rng.choice(n, 25, replace=False), "city"] = None
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"csv": folder / "houses.csv", "parquet": folder / "houses.parquet"}
    frame.to_csv(paths["csv"], index=False)
    frame.to_parquet(paths["parquet"], index=False)
    new = frame.drop(columns=["price", "label"]).head(50).copy()
    new.loc[0, "city"] = "Lisbon"  # a category never seen in training
    paths["new"] = folder / "new_houses.csv"
    new.to_csv(paths["new"], index=False)
    return paths


@pytest.fixture
async def cli_worker(legacy: LegacyServer, home: Path) -> AsyncIterator[LegacyServer]:
    """The console script connected to the strict stand-in, in a temporary HOME."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(STATSBOT_HOME=str(home), HOME=str(home.parent), PYTHONUNBUFFERED="1")
    proc = await asyncio.create_subprocess_exec(
        SCRIPT,
        "--token",
        legacy.token,
        "--ws-url",
        legacy.url,
        "--max-jobs",
        "2",
        env=env,
        cwd=str(home.parent),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    await legacy.wait_worker(timeout=30)
    yield legacy
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert "Traceback" not in out.decode() + err.decode()
    assert legacy.violations == []


async def run(server: LegacyServer, action: str, params: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    return await server.wait_result(await server.send_job(action, params), timeout)


def train_params(path: Path, target: str, model_type: str, task: str, **extra: Any) -> dict[str, Any]:
    return {
        "file_path": str(path),
        "target_column": target,
        "feature_columns": ["x1", "x2", "city"],
        "model_type": model_type,
        "task_type": task,
        "hyperparameters": None,
        "test_size": 0.25,
        "custom_name": None,
        **extra,
    }


async def test_every_model_type_trains_and_predicts(cli_worker: LegacyServer, home: Path):
    data = make_tables(home.parent / "data")
    ids: dict[str, str] = {}
    cases = [(m, "regression", "price") for m in REGRESSION_TYPES]
    cases += [(m, "classification", "label") for m in CLASSIFICATION_TYPES]
    cases = extras.installed_cases(cases, lambda case: case[0])  # the others are listed at the end of the run
    for i, (model_type, task, target) in enumerate(cases):
        source = data["csv"] if i % 2 == 0 else data["parquet"]
        result = await run(cli_worker, "train", train_params(source, target, model_type, task))
        assert result["success"], f"{model_type}/{task}: {result.get('error')}"
        out = result["data"]
        metrics = out["metrics"]
        if task == "regression":
            assert {"r2", "mse", "rmse", "mae"} <= set(metrics)
            assert metrics["r2"] > 0.5, (model_type, metrics)
        else:
            assert {"accuracy", "precision", "recall", "f1", "roc_auc", "auc_pr", "brier_score", "log_loss"} <= set(
                metrics
            ), (model_type, metrics)
            assert metrics["accuracy"] > 0.7, (model_type, metrics)
            classes = out["dataset_stats"]["class_distribution"]
            assert set(classes) == {"yes", "no"} and sum(c["count"] for c in classes.values()) == 400
        assert out["model_info"]["feature_columns"] == ["x1", "x2", "city"]
        assert out["dataset_stats"]["n_rows"] == 400 and out["training_time"] >= 0
        assert (home / "models" / out["model_id"] / "metadata.json").is_file()
        ids[f"{model_type}/{task}"] = out["model_id"]
    assert len(set(ids.values())) == len(cases), "model ids must be unique even within one second"

    # predict with a classifier: the file keeps the user's labels, the wire carries P(yes); unseen category
    pred = await run(
        cli_worker,
        "predict",
        {"model_id": ids["random_forest/classification"], "file_path": str(data["new"]), "feature_columns": ["x1"]},
    )
    assert pred["success"], pred.get("error")
    body = pred["data"]
    assert body["predictions_count"] == 50 and body["dataframe_rows"] == 50
    assert len(body["predictions_sample"]) == 10 and all(0 <= p <= 1 for p in body["predictions_sample"])
    written = pd.read_csv(body["output_file"])
    assert len(written) == 50 and {"x1", "x2", "city", "prediction"} <= set(written.columns)
    assert set(written["prediction"]) <= {"yes", "no"}
    assert np.allclose(written["proba_yes"].iloc[:10].round(8), body["predictions_sample"])
    assert Path(body["output_file"]).parent == data["new"].parent
    regressor = ids.get("xgboost_regression/regression", ids["random_forest/regression"])  # xgboost: [boost]
    reg = await run(cli_worker, "predict", {"model_id": regressor, "file_path": str(data["new"])})
    assert reg["success"] and isinstance(reg["data"]["predictions_sample"][0], float)

    # list, rename, delete
    listed = (await run(cli_worker, "list_models", {}))["data"]["models"]
    assert len(listed) == len(cases)
    assert {m["model_id"] for m in listed} == set(ids.values())
    assert [m["created_at"] for m in listed] == sorted((m["created_at"] for m in listed), reverse=True)
    target = ids["ridge/regression"]
    renamed = await run(cli_worker, "set_model_name", {"model_id": target, "custom_name": "My ridge"})
    assert renamed["data"] == {"model_id": target, "custom_name": "My ridge"}
    meta = json.loads((home / "models" / target / "metadata.json").read_text())
    assert meta["custom_name"] == meta["display_name"] == "My ridge"
    deleted = await run(cli_worker, "delete_model", {"model_id": target})
    assert deleted["data"] == {"deleted": target}
    assert not (home / "models" / target).exists()


async def test_bad_hyperparameters_and_params_are_sentences(cli_worker: LegacyServer, home: Path):
    data = make_tables(home.parent / "data")
    bad = await run(
        cli_worker,
        "train",
        train_params(data["csv"], "price", "random_forest", "regression", hyperparameters={"n_trees": 5}),
    )
    assert not bad["success"] and "n_trees" in bad["error"] and "n_estimators" in bad["error"]
    dup = await run(
        cli_worker,
        "train",
        train_params(
            data["csv"], "price", "random_forest", "regression", hyperparameters={"random_state": 3, "n_estimators": 20}
        ),
    )
    assert dup["success"], dup.get("error")
    missing = await run(cli_worker, "train", {**train_params(data["csv"], "nope", "ridge", "regression")})
    assert not missing["success"] and "nope" in missing["error"]


async def test_file_info_and_join(cli_worker: LegacyServer, home: Path):
    folder = home.parent / "data"
    make_tables(folder)
    left = pd.DataFrame({"id": [1, 2, 3, 4], "age": [25, 35, 45, 55]})
    right = pd.DataFrame({"id": [2, 3, 4, 5], "city": ["Paris", "Rome", "Oslo", "Lima"]})
    left.to_csv(folder / "people.csv", index=False)
    right.to_parquet(folder / "cities.parquet", index=False)
    info = await run(cli_worker, "file_info", {"file_path": str(folder / "people.csv")})
    assert info["data"]["exists"] is True and info["data"]["size_bytes"] > 0
    joined = await run(
        cli_worker,
        "join",
        {
            "operation": "inner_join",
            "file_paths": [str(folder / "people.csv"), str(folder / "cities.parquet")],
            "key_columns": ["id"],
            "output_path": str(folder / "joined.csv"),
            "filters": ["age > 35"],
        },
    )
    assert joined["success"], joined.get("error")
    assert joined["data"]["row_count"] == 2 and joined["data"]["operation"] == "inner_join"
    assert pd.read_csv(folder / "joined.csv")["id"].tolist() == [3, 4]
    saved = await run(
        cli_worker,
        "save_file",
        {"file_path": str(folder / "saved.csv"), "dataframe": [{"a": 1, "b": "x"}, {"a": 2, "b": None}]},
    )
    assert saved["data"]["rows"] == 2 and (folder / "saved.csv").is_file()
