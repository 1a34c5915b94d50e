"""The bot contract: our real worker, over a real socket from the strict stand-in for today's server, and a
*bot double* that reads each result exactly the way today's StatsBot bot reads it.

The bot (public repository ``gkratka/statistical-modeling-agent``) is the consumer of every result. Each
``bot_*`` function below performs the same reads, indexing and formatting as the bot's handler named in its
docstring (file and function), written in our own code: where the bot indexes a key or formats a value, so
do we, so a shape the bot cannot read fails here the way it fails for a user. The job queue of today's
server keeps ``data`` of a successful result as ``job.result`` and leaves it unset on failure
(``src/worker/job_queue.py`` ``JobQueue.handle_result``).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from legacy_server import LegacyServer

from statsbot_nb.context import JobSettings
from statsbot_nb.jobs import ACTIONS
from statsbot_nb.worker import Worker

#: The bot waits 60 s for ``save_file`` (prediction_handlers.py ``_save_file_via_worker``); we allow less.
ANSWER_TIMEOUT = 40.0


# --------------------------------------------------------------------------------------------------
# The bot double: the bot's reads, one function per handler
# --------------------------------------------------------------------------------------------------


def bot_escape(text: str) -> str:
    """``src/bot/utils/markdown_escape.py`` ``escape_markdown_v1``: string methods on the value (None fails)."""
    for ch in ("_", "*", "`", "["):
        text = text.replace(ch, "\\" + ch)
    return text


def bot_dataset_lines(dataset_stats: dict[str, Any]) -> list[str]:
    """The dataset block of ``ml_training_local_path.py`` ``_format_sklearn_metrics`` and of
    ``template_handlers.py`` ``handle_template_load_and_train`` / ``handle_template_selection``."""
    lines = [f"• Rows: {dataset_stats.get('n_rows', 'N/A')}"]
    if "class_distribution" in dataset_stats:
        dist = dataset_stats["class_distribution"]
        lines.append(
            "• Classes: " + ", ".join(f"Class {k}: {v['count']} ({v['pct']}%)" for k, v in sorted(dist.items()))
        )
    elif "quartiles" in dataset_stats:
        q = dataset_stats["quartiles"]
        lines.append(f"• Target: Q1={q['q1']:.2f}, Median={q['median']:.2f}, Q3={q['q3']:.2f}")
    return lines


def bot_guided_training(result: dict[str, Any], task_type: str) -> str:
    """``ml_training_local_path.py`` ``_execute_training_on_worker`` (the keys it copies out of
    ``job.result``), then ``_format_sklearn_metrics`` on them, then the naming step's
    ``pending_model_info`` read by ``ml_engine._generate_default_name`` (skip naming)."""
    copied = {
        "model_id": result.get("model_id"),
        "metrics": result.get("metrics", {}),
        "dataset_stats": result.get("dataset_stats", {}),
        "training_time": result.get("training_time", 0),
        "model_info": result.get("model_info", {}),
    }
    lines = ["📊 Dataset:", *bot_dataset_lines(copied["dataset_stats"]), ""]
    metrics = copied["metrics"]
    if task_type == "regression":
        for key in ("r2", "rmse", "mae", "mse"):
            value = metrics.get(key, "N/A")
            lines.append(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    else:
        for key in ("roc_auc", "auc_pr", "brier_score", "log_loss"):
            if metrics.get(key) is not None:
                lines.append(f"{key}: {metrics[key]:.4f}")
        for key in ("f1", "accuracy", "precision", "recall"):
            value = metrics.get(key, "N/A")
            lines.append(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    info = copied["model_info"]
    created = datetime.fromisoformat(info.get("created_at", "").replace("Z", "+00:00"))
    lines.append(
        f"{info.get('model_type', 'model')} - {info.get('task_type', 'unknown')} - {created.strftime('%b %d %Y')}"
    )
    return "\n".join(lines)


def bot_keras_training(result: dict[str, Any]) -> str:
    """``ml_training_local_path.py`` keras branch: ``_format_keras_metrics`` formats every known key it
    finds (a null value fails), then the naming step as above."""
    metrics = result.get("metrics", {})
    lines = []
    for key, fmt in (
        ("loss", ".4f"),
        ("accuracy", ".2%"),
        ("val_loss", ".4f"),
        ("val_accuracy", ".2%"),
        ("mse", ".4f"),
        ("rmse", ".4f"),
        ("mae", ".4f"),
        ("r2", ".4f"),
    ):
        if key in metrics:
            lines.append(f"{key}: {format(metrics[key], fmt)}")
    info = result.get("model_info", {})
    datetime.fromisoformat(info.get("created_at", "").replace("Z", "+00:00"))
    return "\n".join(lines) or "Training completed"


def bot_template_training(result: dict[str, Any]) -> str:
    """``template_handlers.py`` ``handle_template_load_and_train``: ``job.result or {}``, model type and
    task from ``model_info``, ``format_training_metrics`` (``src/bot/messages/training_messages.py``),
    the dataset block and ``training_time`` as ``:.2f``."""
    model_type = result.get("model_info", {}).get("model_type", "Unknown")
    task_type = result.get("model_info", {}).get("task_type", "classification")
    metric_lines = []
    for key, value in result.get("metrics", {}).items():
        if isinstance(value, float):
            metric_lines.append(f"• {key}: {value:.4f}")
        elif isinstance(value, (int, str)):
            metric_lines.append(f"• {key}: {value}")
    stats = result.get("dataset_stats", {})
    stats_text = "\n".join(bot_dataset_lines(stats)) if stats else ""
    return (
        f"Model: {model_type} ({task_type})\n{stats_text}\n"
        + "\n".join(metric_lines)
        + f"\nTraining Time: {result.get('training_time', 0):.2f}s"
    )


def bot_prediction(
    result: dict[str, Any], selected_features: list[str], prediction_column: str
) -> tuple[pd.DataFrame, dict[str, float], str]:
    """``prediction_handlers.py`` ``_wait_for_prediction_job`` (the ``or`` fallbacks), then
    ``_execute_prediction``'s worker branch: a DataFrame of the sample (or empty feature cells when it is
    absent), the predictions as a column, mean/std/min/max/median, and the preview of
    ``selected_features[:3] + [prediction_column]``; ``output_file`` is shown."""
    predictions = result.get("predictions_sample") or result.get("predictions", [])
    df = result.get("dataframe_sample") or result.get("dataframe")
    if df is not None and not isinstance(df, pd.DataFrame):
        df = pd.DataFrame(df)
    if df is None:
        df = pd.DataFrame(columns=selected_features)
        for i, _ in enumerate(predictions):
            df.loc[i] = [None] * len(selected_features)
    df[prediction_column] = predictions
    stats = {name: float(getattr(pd.Series(predictions), name)()) for name in ("mean", "std", "min", "max", "median")}
    # (compute_dataset_stats for classification runs inside a try: it cannot fail the flow)
    preview = df[[*selected_features[:3], prediction_column]].head(10).to_string(index=False)
    return df, stats, f"{preview}\nFull results saved to: {result.get('output_file')}"


def bot_model_picker(models: list[dict[str, Any]], selected_features: list[str]) -> list[str]:
    """``prediction_handlers.py`` ``_show_model_selection`` (filter on ``feature_columns``), then
    ``prediction_messages.py`` ``model_selection_prompt`` / ``create_model_selection_buttons`` and
    ``handle_model_selection`` on the chosen entry."""
    lines = []
    compatible = [m for m in models if set(selected_features) == set(m.get("feature_columns", []))]
    for i, model in enumerate(compatible[:10], 1):
        display_name = model.get("display_name", model.get("model_type", "Unknown"))
        task_type = model.get("task_type", "Unknown")
        target = model.get("target_column", "Unknown")
        accuracy = model.get("metrics", {}).get("accuracy") or model.get("metrics", {}).get("r2")
        line = f"{i}. {bot_escape(display_name).title()} | {bot_escape(task_type)} | {bot_escape(target)}"
        if accuracy:
            line += f" | {accuracy:.2%}"
        lines.append(line)
        chosen = compatible[i - 1]  # handle_model_selection
        assert chosen["model_id"]
        _ = (chosen.get("target_column"), chosen.get("model_type"), chosen.get("task_type", "classification"))
    return lines


def bot_join_message(result: dict[str, Any], output_path: str) -> str:
    """``src/bot/handlers/join_handlers.py`` (the join job's poll loop), then
    ``src/bot/messages/join_messages.py`` ``JoinMessages.complete_message``."""
    columns = result.get("columns", [])
    row_count, column_count = result.get("row_count", 0), result.get("column_count", 0)
    return (
        f"Output file: {result.get('output_file', output_path)}\nRows: {row_count:,}\n"
        f"Columns: {column_count}\n" + ", ".join(f"`{c}`" for c in columns[:10])
    )


# --------------------------------------------------------------------------------------------------
# Fixtures: today's server (strict stand-in) and our real worker with the real job handlers
# --------------------------------------------------------------------------------------------------


class Bot:
    """Sends jobs the way today's server does (``json.dumps``) and hands back ``job.result``."""

    def __init__(self, server: LegacyServer, data: Path) -> None:
        self.server = server
        self.data = data

    async def answer(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        job_id = await self.server.send_job(action, params)
        return await self.server.wait_result(job_id, timeout=ANSWER_TIMEOUT)

    async def result(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        frame = await self.answer(action, params)
        assert frame["success"], f"{action} failed: {frame.get('error')}"
        return frame["data"]


@pytest.fixture
def data_dir(settings: JobSettings) -> Path:
    """The user's data folder (inside their home, the worker's working folder)."""
    return settings.cwd


@pytest.fixture
async def start_bot(
    legacy: LegacyServer, make_worker: Callable[..., Worker], settings: JobSettings, data_dir: Path
) -> AsyncIterator[Callable[..., Any]]:
    async def start(share_data: bool = False) -> Bot:
        worker = make_worker(
            legacy.url, legacy.token, actions=ACTIONS, settings=replace(settings, share_data=share_data)
        )
        worker.start()
        await legacy.wait_worker()
        return Bot(legacy, data_dir)

    yield start
    assert legacy.violations == []


def customers(n: int = 120, seed: int = 3) -> pd.DataFrame:
    """Text labels, a categorical column and missing values, like a user's churn table."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, size=n).astype(float)
    spend = rng.normal(50, 15, size=n)
    plan = rng.choice(["basic", "plus", "pro"], size=n)
    churn = np.where(spend + rng.normal(0, 8, size=n) < 48, "yes", "no")
    tier = np.where(spend < 40, "low", np.where(spend < 60, "mid", "high"))
    frame = pd.DataFrame(
        {
            "age": age,
            "spend": spend,
            "plan": plan,
            "churn": churn,
            "tier": tier,
            "value": 3 * spend + rng.normal(0, 5, size=n),
        }
    )
    frame.loc[[4, 9, 17], "age"] = np.nan
    return frame


def train_params(path: Path, target: str, model_type: str, task_type: str, **extra: Any) -> dict[str, Any]:
    """What ``_execute_training_on_worker`` puts in a train job."""
    params = {
        "file_path": str(path),
        "task_type": task_type,
        "model_type": model_type,
        "target_column": target,
        "feature_columns": ["age", "spend", "plan"],
        "hyperparameters": {},
        "test_size": 0.2,
        "custom_name": None,
    }
    params.update(extra)
    return params


# --------------------------------------------------------------------------------------------------
# Training flows
# --------------------------------------------------------------------------------------------------


async def test_classification_training_reads_as_the_bot_formats_it(start_bot, data_dir: Path) -> None:
    bot = await start_bot()
    path = data_dir / "customers.csv"
    customers().to_csv(path, index=False)
    result = await bot.result("train", train_params(path, "churn", "random_forest", "classification"))
    text = bot_guided_training(result, "classification")
    template_text = bot_template_training(result)
    dist = result["dataset_stats"]["class_distribution"]
    assert sum(v["count"] for v in dist.values()) == result["dataset_stats"]["n_rows"] == 120
    for v in dist.values():  # percent of rows, one decimal
        assert v["pct"] == round(100 * v["count"] / 120, 1)
    assert "Class no: " in text and "%)" in text and "Class yes: " in template_text


async def test_regression_training_reads_as_the_bot_formats_it(start_bot, data_dir: Path) -> None:
    bot = await start_bot()
    path = data_dir / "customers.csv"
    customers().to_csv(path, index=False)
    result = await bot.result("train", train_params(path, "value", "linear", "regression"))
    assert "Q1=" in bot_guided_training(result, "regression")
    assert "Training Time" in bot_template_training(result)


async def test_a_linear_template_trains_as_the_regression_it_was_saved_as(start_bot, data_dir: Path) -> None:
    """``template_handlers.py`` ``handle_template_selection`` sends ``_infer_task_type("linear")``, which is
    "classification" for every name without "regression" in it."""
    bot = await start_bot()
    path = data_dir / "customers.csv"
    customers().to_csv(path, index=False)
    result = await bot.result("train", train_params(path, "value", "linear", "classification"))
    assert result["model_info"]["task_type"] == "regression" and "r2" in result["metrics"]
    assert "Q1=" in bot_template_training(result) and any("regression model" in n for n in result["notes"])


@pytest.mark.extra("lightgbm")
async def test_lightgbm_training_takes_the_bots_native_names(start_bot, data_dir: Path) -> None:
    bot = await start_bot()
    path = data_dir / "customers.csv"
    customers().to_csv(path, index=False)
    # src/engines/trainers/lightgbm_templates.py get_binary_classification_template (the values it returns),
    # sent as they are by ml_training_local_path.py _start_lightgbm_config / _execute_sklearn_training.
    template = {
        "n_estimators": 100,
        "num_leaves": 31,
        "learning_rate": 0.1,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "min_data_in_leaf": 20,
        "min_gain_to_split": 0.0,
        "lambda_l1": 0.0,
        "lambda_l2": 0.0,
        "random_state": 42,
        "n_jobs": -1,
    }
    result = await bot.result(
        "train",
        train_params(path, "churn", "lightgbm_binary_classification", "classification", hyperparameters=template),
    )
    assert "Class yes" in bot_guided_training(result, "classification")


@pytest.mark.extra("keras")
async def test_keras_training_takes_the_bots_architecture(start_bot, data_dir: Path) -> None:
    bot = await start_bot()
    path = data_dir / "customers.csv"
    customers().to_csv(path, index=False)
    # ml_training_local_path.py keras branch: {**keras_config, architecture, n_features}, where the
    # architecture is src/engines/trainers/keras_templates.py get_template("keras_binary_classification").
    layer = {"kernel_initializer": "glorot_uniform"}
    hyper = {
        "epochs": 4,
        "batch_size": 32,
        "kernel_initializer": "glorot_uniform",
        "verbose": 1,
        "validation_split": 0.2,
        "n_features": 3,
        "architecture": {
            "layers": [
                {"type": "Dense", "units": 3, "activation": "relu", **layer},
                {"type": "Dense", "units": 1, "activation": "sigmoid", **layer},
            ],
            "compile": {"loss": "binary_crossentropy", "optimizer": "adam", "metrics": ["accuracy"]},
        },
    }
    result = await bot.result(
        "train",
        train_params(
            path, "churn", "keras_binary_classification", "neural_network", hyperparameters=hyper, test_size=1.0 - 0.2
        ),
    )
    assert "accuracy" in bot_keras_training(result)
    assert result["model_info"]["task_type"] == "classification"


async def test_null_metrics_never_reach_the_bot(start_bot, data_dir: Path) -> None:
    """The keras branch formats every metric key it finds; a null (NaN) one would fail there."""
    bot = await start_bot()
    frame = customers(40)
    frame["flat"] = 7.0  # a constant target: r2 is undefined on the held-out rows
    path = data_dir / "flat.csv"
    frame.to_csv(path, index=False)
    result = await bot.result("train", train_params(path, "flat", "linear", "regression"))
    assert all(isinstance(v, (int, float)) for v in result["metrics"].values()), result["metrics"]
    bot_keras_training(result)
    bot_guided_training(result, "regression")


async def test_a_target_too_extreme_for_quartiles_still_reads(start_bot, data_dir: Path) -> None:
    """Quartiles that overflow would be null, and the bot formats them as numbers: they are left out."""
    bot = await start_bot()
    frame = customers(60)
    frame["huge"] = np.where(np.arange(60) % 2 == 0, 1.7e308, -1.7e308)
    path = data_dir / "huge.csv"
    frame.to_csv(path, index=False)
    result = await bot.result("train", train_params(path, "huge", "decision_tree", "regression"))
    assert "quartiles" not in result["dataset_stats"]
    bot_guided_training(result, "regression")
    bot_template_training(result)


# --------------------------------------------------------------------------------------------------
# Prediction, save, models
# --------------------------------------------------------------------------------------------------


async def _trained(bot: Bot, target: str = "churn", model_type: str = "random_forest") -> str:
    path = bot.data / "customers.csv"
    if not path.exists():
        customers().to_csv(path, index=False)
    task = "regression" if target == "value" else "classification"
    return (await bot.result("train", train_params(path, target, model_type, task)))["model_id"]


def _new_rows(folder: Path) -> Path:
    new = customers(30, seed=11).drop(columns=["churn", "tier", "value"])
    new.loc[0, "plan"] = "enterprise"  # never seen in training
    new["secret"] = [f"SECRET-{i:04d}" for i in range(len(new))]
    path = folder / "new_customers.csv"
    new.to_csv(path, index=False)
    return path


async def test_prediction_without_sharing_sends_numbers_and_no_rows(start_bot, data_dir: Path) -> None:
    bot = await start_bot()
    model_id = await _trained(bot)
    source = _new_rows(data_dir)
    features = ["age", "spend", "plan"]
    frame = await bot.answer("predict", {"model_id": model_id, "file_path": str(source), "feature_columns": features})
    assert frame["success"], frame
    result = frame["data"]
    df, stats, text = bot_prediction(result, features, "churn_predicted")
    assert len(df) == 10 and 0.0 <= stats["min"] <= stats["max"] <= 1.0
    # no value of the user's table travels: not the sample, not the secret column, not a feature value
    wire = json.dumps(frame)
    assert result.get("dataframe_sample") is None and "SECRET-" not in wire and "enterprise" not in wire
    # the file on disk keeps the labels and every class probability, and names what the bot shows
    written = pd.read_csv(result["output_file"])
    assert set(written["prediction"]) <= {"yes", "no"} and {"proba_no", "proba_yes"} <= set(written.columns)
    assert np.allclose(written["proba_yes"].iloc[:10].round(8), result["predictions_sample"])
    assert Path(result["output_file"]).name.startswith("predictions_RANDOMFOREST_CHURN_")
    assert result["output_file"] in text


async def test_prediction_with_sharing_sends_the_input_rows(start_bot, data_dir: Path) -> None:
    bot = await start_bot(share_data=True)
    model_id = await _trained(bot)
    source = _new_rows(data_dir)
    features = ["age", "spend", "plan"]
    result = await bot.result("predict", {"model_id": model_id, "file_path": str(source), "feature_columns": features})
    df, _, _ = bot_prediction(result, features, "churn_predicted")
    assert list(df["plan"].iloc[:1]) == ["enterprise"]  # today's worker: the input rows


async def test_multiclass_and_regression_predictions_are_numbers(start_bot, data_dir: Path) -> None:
    bot = await start_bot()
    source = _new_rows(data_dir)
    features = ["age", "spend", "plan"]
    for target, task in (("tier", "classification"), ("value", "regression")):
        model_id = await _trained(bot, target)
        result = await bot.result(
            "predict", {"model_id": model_id, "file_path": str(source), "feature_columns": features}
        )
        _, stats, _ = bot_prediction(result, features, f"{target}_predicted")
        assert all(math.isfinite(v) for v in stats.values()), (target, stats)
        if task == "classification":  # text labels: the class's position in the model's sorted labels
            assert set(result["predictions_sample"]) <= {0.0, 1.0, 2.0}


async def test_predict_never_overwrites(start_bot, data_dir: Path) -> None:
    bot = await start_bot()
    model_id = await _trained(bot)
    source = _new_rows(data_dir)
    params = {"model_id": model_id, "file_path": str(source)}
    first = (await bot.result("predict", params))["output_file"]
    Path(first).write_text("kept\n")
    second = (await bot.result("predict", params))["output_file"]
    assert first != second and Path(first).read_text() == "kept\n"


async def test_save_after_prediction_with_missing_values_is_answered(start_bot, data_dir: Path) -> None:
    """``prediction_handlers.py`` ``_save_file_via_worker``: ``DataFrame.to_dict('records')`` of the
    predictions (missing values are NaN), sent by today's server through ``json.dumps`` (bare NaN)."""
    bot = await start_bot()
    records = pd.DataFrame(
        {"age": [31.0, np.nan, 45.0], "churn_predicted": [0.91, 0.12, np.inf], "plan": ["basic", None, "pro"]}
    ).to_dict("records")
    target = data_dir / "saved_predictions.csv"
    frame = await bot.answer("save_file", {"file_path": str(target), "dataframe": records})
    assert frame["success"], frame
    result = frame["data"]
    assert (result.get("file_path", str(target)), result.get("rows", 0)) == (str(target), 3)
    saved = pd.read_csv(target)
    assert saved["age"].isna().tolist() == [False, True, False] and len(saved) == 3


async def test_models_list_reads_in_the_model_picker(start_bot, data_dir: Path, home: Path) -> None:
    bot = await start_bot()
    model_id = await _trained(bot)
    # a model an older headless worker saved, with fields missing
    old = home / "models" / "model_logistic_classification_20240101_120000"
    old.mkdir(parents=True)
    (old / "metadata.json").write_text(
        json.dumps(
            {"model_type": "logistic", "created_at": "2024-01-01T12:00:00", "feature_columns": ["age", "spend", "plan"]}
        )
    )
    renamed = await bot.result("set_model_name", {"model_id": model_id, "custom_name": "Churn v1"})
    assert renamed["model_id"] == model_id
    models = (await bot.result("list_models", {}))["models"]
    lines = bot_model_picker(models, ["age", "spend", "plan"])
    assert len(lines) == 2 and lines[0].startswith("1. Churn V1")
    assert (await bot.result("delete_model", {"model_id": model_id}))["deleted"] == model_id


async def test_file_info_reads_in_the_path_step(start_bot, data_dir: Path) -> None:
    """``ml_training_local_path.py``: ``file_info.get('exists')``, ``file_path``, ``size_mb`` as ``:.2f``."""
    bot = await start_bot()
    path = data_dir / "customers.csv"
    customers().to_csv(path, index=False)
    info = await bot.result("file_info", {"file_path": str(path)})
    assert info.get("exists") and Path(info.get("file_path", "")) == path
    assert f"{info.get('size_mb', 0):.2f}"


async def test_load_data_with_sharing_reads_as_records(start_bot, data_dir: Path) -> None:
    """``prediction_template_handlers.py`` ``_validate_and_load_template_data``: ``pd.DataFrame(records)``."""
    bot = await start_bot(share_data=True)
    path = data_dir / "customers.csv"
    customers(30).to_csv(path, index=False)
    result = await bot.result("load_data", {"file_path": str(path)})
    assert pd.DataFrame(result.get("dataframe")).shape == (30, 6)


# --------------------------------------------------------------------------------------------------
# Join: today's semantics (worker/statsbot_worker.py execute_join_job is what the bot's users get)
# --------------------------------------------------------------------------------------------------


async def _join(bot: Bot, operation: str, names: list[str], **extra: Any) -> tuple[dict[str, Any], pd.DataFrame]:
    output = bot.data / f"out_{operation}.csv"
    params = {
        "operation": operation,
        "file_paths": [str(bot.data / n) for n in names],
        "key_columns": extra.pop("key_columns", []),
        "output_path": str(output),
        "filters": extra.pop("filters", []),
    }
    result = await bot.result("join", params)
    bot_join_message(result, str(output))
    return result, pd.read_csv(result["output_file"])


async def test_join_matches_todays_semantics(start_bot, data_dir: Path) -> None:
    bot = await start_bot()
    pd.DataFrame({"id": [1, 2, 3, 4], "amount": [10, 20, 30, 40], "v": ["a", "b", "c", "d"]}).to_csv(
        data_dir / "left.csv", index=False
    )
    pd.DataFrame({"id": [1, 2, 2, 5], "region": ["N", "S", "E", "W"], "v": ["p", "q", "r", "s"]}).to_csv(
        data_dir / "right.csv", index=False
    )
    pd.DataFrame({"id": [1, 2, 3, 4], "amount": [10, 20, 30, 40], "v": ["a", "b", "c", "d"]}).to_csv(
        data_dir / "left_again.csv", index=False
    )

    # the filter on `amount` applies to the left input before the join and is skipped for the right
    # one (it has no such column): left keeps ids 3 and 4, none of which is in the right input, so the
    # right join keeps its 4 rows with no amount (filtering after the join would leave none)
    result, out = await _join(bot, "right_join", ["left.csv", "right.csv"], key_columns=["id"], filters=["amount > 25"])
    assert result["row_count"] == 4 == len(out) and out["amount"].isna().all()
    assert sorted(out["region"]) == ["E", "N", "S", "W"]
    assert {"v_x", "v_y"} <= set(out.columns)  # pandas' default suffixes

    # union keeps duplicate rows
    result, out = await _join(bot, "union", ["left.csv", "left_again.csv"])
    assert result["row_count"] == 8 == len(out)

    # cross join: every pair, default suffixes
    result, out = await _join(bot, "cross_join", ["left.csv", "right.csv"])
    assert result["row_count"] == 16 and {"id_x", "id_y", "v_x", "v_y"} <= set(out.columns)
    assert result["column_count"] == len(out.columns) and result["columns"] == list(out.columns)[:20]


# --------------------------------------------------------------------------------------------------
# Every job frame gets an answer
# --------------------------------------------------------------------------------------------------


async def test_every_job_frame_gets_an_answer(start_bot) -> None:
    bot = await start_bot()
    server = bot.server
    await server.send_raw('{"type": "job", "job_id": "job_broken00001", "action": "list_models", "params": {')
    await server.send_raw(json.dumps({"type": "job", "job_id": "job with spaces", "action": "list_models"}))
    await server.send_raw(json.dumps({"type": "job", "job_id": "job_noparams01", "action": "train", "params": [1, 2]}))
    for job_id in ("job_broken00001", "job with spaces", "job_noparams01"):
        frame = await server.wait_result(job_id, timeout=ANSWER_TIMEOUT)
        assert frame["success"] is False and frame["error"], frame
    # a job id seen again after its result was confirmed is answered, not run twice
    first = await bot.answer("list_models", {})
    await asyncio.sleep(0)
    again = await server.send_job("list_models", {}, job_id=first["job_id"])
    await server.wait_for(lambda: len(server.results.get(again, [])) >= 2, ANSWER_TIMEOUT)
