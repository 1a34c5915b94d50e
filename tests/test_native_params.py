"""Boosting libraries take their own (native) parameter names and aliases, as the bot sends them.

The template dicts below are the values the bot sends today; each names the bot file and function it
comes from. Models are trained through the real ``train`` job on small sklearn datasets, and each test
checks that the value reached the fitted library model under the library's own name.
"""

from __future__ import annotations

import inspect
import json
import os
import pickle
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from jobenv import JobEnv, job_env
from sklearn.datasets import make_classification, make_regression

from statsbot_nb.errors import JobError
from statsbot_nb.handlers.train import train
from statsbot_nb.ml import hyperparams
from statsbot_nb.ml.estimators import build_estimator

needs = {lib: pytest.mark.extra(lib) for lib in ("xgboost", "lightgbm", "catboost")}

# /work/bot/src/engines/trainers/lightgbm_templates.py, get_binary_classification_template() (also
# get_regression_template(); get_template() returns it for medium data and balanced optimisation).
BOT_LIGHTGBM = {
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
# Same file, get_large_dataset_template() (get_template(..., dataset_size="large")).
BOT_LIGHTGBM_LARGE = {
    "n_estimators": 100,
    "num_leaves": 63,
    "learning_rate": 0.05,
    "feature_fraction": 0.7,
    "bagging_fraction": 0.7,
    "bagging_freq": 5,
    "min_data_in_leaf": 100,
    "min_gain_to_split": 0.01,
    "lambda_l1": 0.1,
    "lambda_l2": 0.1,
    "random_state": 42,
    "n_jobs": -1,
}
# /work/bot/src/engines/trainers/xgboost_templates.py, get_binary_classification_template() (the
# multiclass and regression templates are the same dict).
BOT_XGBOOST = {
    "n_estimators": 100,
    "max_depth": 6,
    "learning_rate": 0.1,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "min_child_weight": 1,
    "gamma": 0,
    "reg_alpha": 0,
    "reg_lambda": 1,
    "random_state": 42,
    "n_jobs": -1,
}
# /work/bot/src/engines/trainers/catboost_templates.py, get_binary_classification_template() (the config
# _start_catboost_config in src/bot/ml_handlers/ml_training_local_path.py starts from).
BOT_CATBOOST_BINARY = {
    "iterations": 1000,
    "depth": 6,
    "learning_rate": 0.03,
    "l2_leaf_reg": 3,
    "bootstrap_type": "MVS",
    "subsample": 0.8,
    "rsm": 0.8,
    "border_count": 254,
    "random_seed": 42,
    "verbose": False,
}
# Same file, get_regression_template() (and the multiclass one): adds use_best_model, which CatBoost only
# accepts with an eval_set; this worker passes none, so it is turned off with a note and the template trains.
BOT_CATBOOST_REGRESSION = {
    "iterations": 1000,
    "depth": 6,
    "learning_rate": 0.03,
    "l2_leaf_reg": 3,
    "bootstrap_type": "MVS",
    "subsample": 0.8,
    "rsm": 0.8,
    "border_count": 254,
    "use_best_model": True,
    "random_seed": 42,
    "verbose": False,
}


class Job(JobEnv):
    """A data folder, a model store and the progress events of one ``train`` job."""

    def train(self, model_type: str, task: str, hyperparameters: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Train on a small sklearn dataset; return the fitted library model and the saved metadata."""
        if task == "classification":
            X, y = make_classification(n_samples=300, n_features=5, n_informative=3, random_state=0)
        else:
            X, y = make_regression(n_samples=300, n_features=5, noise=5.0, random_state=0)
        frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(5)]).assign(y=y)
        path = self.data / "train.csv"
        frame.to_csv(path, index=False)
        params = {
            "file_path": str(path),
            "target_column": "y",
            "feature_columns": list(frame.columns[:5]),
            "model_type": model_type,
            "task_type": task,
            "hyperparameters": hyperparameters,
            "test_size": 0.2,
            "custom_name": None,
        }
        data = train(params, self.ctx)
        folder = self.settings.models_dir / data["model_id"]
        pipeline = pickle.loads((folder / "model.pkl").read_bytes())
        return pipeline.named_steps["model"], json.loads((folder / "metadata.json").read_text())

    def rounds_reported(self) -> list[str]:
        return [m for _, m, s in self.events if s == "fitting" and m.startswith("Boosting round")]


@pytest.fixture
def job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Job:
    return job_env(tmp_path, monkeypatch, Job)


def lightgbm_config(model: Any) -> dict[str, str]:
    """The parameters LightGBM itself resolved, from the ``[name: value]`` lines of its model text."""
    lines = model.booster_.model_to_string().split("parameters:", 1)[1].split("end of parameters", 1)[0]
    return dict(line.strip("[]").split(": ", 1) for line in lines.split("\n") if line.startswith("["))


def xgboost_config(model: Any) -> dict[str, str]:
    """The booster's generic and tree parameters as XGBoost stores them (its own names, text values)."""
    learner = json.loads(model.get_booster().save_config())["learner"]
    return {**learner["generic_param"], **learner["gradient_booster"]["tree_train_param"]}


@needs["lightgbm"]
@pytest.mark.parametrize(
    ("template", "model_type", "task", "native"),
    [
        (
            BOT_LIGHTGBM,
            "lightgbm_binary_classification",
            "classification",
            {
                "bagging_fraction": 0.8,
                "bagging_freq": 1,
                "feature_fraction": 0.8,
                "min_data_in_leaf": 20,
                "lambda_l1": 0.0,
                "lambda_l2": 0.0,
                "min_gain_to_split": 0.0,
                "num_leaves": 31,
                "num_iterations": 100,
                "seed": 42,
            },
        ),
        (
            BOT_LIGHTGBM_LARGE,
            "lightgbm_regression",
            "regression",
            {
                "bagging_fraction": 0.7,
                "bagging_freq": 5,
                "feature_fraction": 0.7,
                "min_data_in_leaf": 100,
                "lambda_l1": 0.1,
                "lambda_l2": 0.1,
                "min_gain_to_split": 0.01,
                "num_leaves": 63,
                "learning_rate": 0.05,
            },
        ),
    ],
)
def test_lightgbm_bot_templates_train_with_their_native_values(
    job: Job, template: dict[str, Any], model_type: str, task: str, native: dict[str, float]
) -> None:
    model, meta = job.train(model_type, task, dict(template))
    resolved = lightgbm_config(model)
    for name, value in native.items():
        assert float(resolved[name]) == pytest.approx(value), name
    params = model.get_params()
    assert params["subsample"] == template["bagging_fraction"]
    assert params["subsample_freq"] == template["bagging_freq"]
    assert params["colsample_bytree"] == template["feature_fraction"]
    assert params["min_child_samples"] == template["min_data_in_leaf"]
    assert params["min_split_gain"] == template["min_gain_to_split"]
    assert params["reg_alpha"] == template["lambda_l1"] and params["reg_lambda"] == template["lambda_l2"]
    assert not {"bagging_fraction", "feature_fraction", "lambda_l1", "min_data_in_leaf"} & set(params)
    shown = meta["hyperparameters"]
    assert shown["subsample"] == template["bagging_fraction"] and "bagging_fraction" not in shown
    assert shown["random_state"] == 42 and shown["n_estimators"] == 100


@needs["xgboost"]
def test_xgboost_bot_template_trains(job: Job) -> None:
    model, meta = job.train("xgboost_binary_classification", "classification", dict(BOT_XGBOOST))
    config = xgboost_config(model)
    assert float(config["eta"]) == pytest.approx(0.1) and float(config["subsample"]) == pytest.approx(0.8)
    assert float(config["lambda"]) == 1 and int(config["max_depth"]) == 6 and int(config["seed"]) == 42
    assert model.get_booster().num_boosted_rounds() == 100
    assert meta["hyperparameters"]["colsample_bytree"] == 0.8


@needs["xgboost"]
def test_xgboost_native_names_reach_the_booster(job: Job) -> None:
    native = {
        "eta": 0.2,
        "alpha": 0.5,
        "lambda": 2.0,
        "min_split_loss": 0.1,
        "seed": 7,
        "nthread": 1,
        "num_boost_round": 15,
        "max_depth": 3,
    }
    model, meta = job.train("xgboost_regression", "regression", native)
    params = model.get_params()
    assert (params["learning_rate"], params["reg_alpha"], params["reg_lambda"]) == (0.2, 0.5, 2.0)
    assert (params["gamma"], params["random_state"], params["n_jobs"], params["n_estimators"]) == (0.1, 7, 1, 15)
    assert not {"eta", "alpha", "lambda", "seed", "nthread", "num_boost_round"} & set(params)
    config = xgboost_config(model)
    assert float(config["eta"]) == pytest.approx(0.2) and float(config["alpha"]) == pytest.approx(0.5)
    assert float(config["lambda"]) == pytest.approx(2.0) and float(config["gamma"]) == pytest.approx(0.1)
    assert int(config["seed"]) == 7
    assert model.get_booster().num_boosted_rounds() == 15
    assert meta["hyperparameters"]["learning_rate"] == 0.2 and "eta" not in meta["hyperparameters"]


@needs["catboost"]
def test_catboost_bot_template_trains(job: Job) -> None:
    model, meta = job.train("catboost_binary_classification", "classification", dict(BOT_CATBOOST_BINARY))
    used = model.get_all_params()
    assert used["rsm"] == pytest.approx(0.8) and used["subsample"] == pytest.approx(0.8)
    assert (used["depth"], used["border_count"], used["bootstrap_type"]) == (6, 254, "MVS")
    assert used["l2_leaf_reg"] == 3 and used["random_seed"] == 42
    assert model.tree_count_ == 1000
    assert job.rounds_reported()[-1] == "Boosting round 1000/1000"
    assert meta["hyperparameters"]["iterations"] == 1000 and meta["hyperparameters"]["verbose"] is False


@needs["catboost"]
def test_catboost_aliases_reach_the_model(job: Job) -> None:
    aliases = {
        "n_estimators": 40,
        "eta": 0.1,
        "max_depth": 4,
        "reg_lambda": 5,
        "colsample_bylevel": 0.9,
        "random_state": 7,
        "objective": "MAE",
        "min_child_samples": 3,
    }
    model, meta = job.train("catboost_regression", "regression", aliases)
    used = model.get_all_params()
    assert (used["depth"], used["l2_leaf_reg"], used["random_seed"], used["loss_function"]) == (4, 5, 7, "MAE")
    assert used["rsm"] == pytest.approx(0.9) and used["learning_rate"] == pytest.approx(0.1)
    assert used["min_data_in_leaf"] == 3
    assert model.tree_count_ == 40
    shown = meta["hyperparameters"]
    assert shown["iterations"] == 40 and shown["random_seed"] == 7 and shown["loss_function"] == "MAE"
    assert not {"n_estimators", "random_state", "eta", "objective"} & set(shown)


@needs["catboost"]
def test_catboost_regression_template_names_are_canonical() -> None:
    plan = build_estimator("catboost_regression", "regression", dict(BOT_CATBOOST_REGRESSION))
    params = plan.estimator.get_params()
    effective = {**BOT_CATBOOST_REGRESSION, "use_best_model": False}
    assert {key: params[key] for key in BOT_CATBOOST_REGRESSION} == effective
    assert plan.hyperparameters == {**effective, "allow_writing_files": False}
    assert any("use_best_model" in note for note in plan.notes)


@needs["catboost"]
def test_catboost_regression_template_trains(job: Job) -> None:
    model, meta = job.train("catboost_regression", "regression", {**BOT_CATBOOST_REGRESSION, "iterations": 50})
    assert model.tree_count_ == 50 and meta["hyperparameters"]["use_best_model"] is False
    assert any("use_best_model" in note for note in meta["notes"])


@pytest.mark.parametrize(
    ("model_type", "native", "rounds"),
    [
        pytest.param("lightgbm_regression", {"num_iterations": 37}, 37, marks=needs["lightgbm"]),
        pytest.param("xgboost_regression", {"num_boost_round": 23}, 23, marks=needs["xgboost"]),
        pytest.param("catboost_regression", {"num_trees": 29}, 29, marks=needs["catboost"]),
    ],
)
def test_native_round_count_drives_the_fit_progress_and_metadata(
    job: Job, model_type: str, native: dict[str, Any], rounds: int
) -> None:
    model, meta = job.train(model_type, "regression", native)
    if model_type.startswith("lightgbm"):
        built = model.booster_.num_trees()
        assert lightgbm_config(model)["num_iterations"] == str(rounds)
    elif model_type.startswith("xgboost"):
        built = model.get_booster().num_boosted_rounds()
    else:
        built = model.tree_count_
    assert built == rounds
    reported = job.rounds_reported()
    assert reported[0] == f"Boosting round 0/{rounds}" and reported[-1] == f"Boosting round {rounds}/{rounds}"
    key = "iterations" if model_type.startswith("catboost") else "n_estimators"
    assert meta["hyperparameters"][key] == rounds
    assert not set(native) & set(meta["hyperparameters"])


@pytest.mark.parametrize(
    ("model_type", "task", "params", "names", "canonical"),
    [
        pytest.param(
            "lightgbm_regression",
            "regression",
            {"bagging_fraction": 0.8, "subsample": 0.7},
            ("bagging_fraction", "subsample"),
            "subsample",
            marks=needs["lightgbm"],
        ),
        pytest.param(
            "lightgbm_binary_classification",
            "classification",
            {"seed": 1, "random_state": 2},
            ("seed", "random_state"),
            "random_state",
            marks=needs["lightgbm"],
        ),
        pytest.param(
            "lightgbm_regression",
            "regression",
            {"num_iterations": 10, "n_estimators": 10},
            ("num_iterations", "n_estimators"),
            "n_estimators",
            marks=needs["lightgbm"],
        ),
        pytest.param(
            "xgboost_regression",
            "regression",
            {"eta": 0.1, "learning_rate": 0.1},
            ("eta", "learning_rate"),
            "learning_rate",
            marks=needs["xgboost"],
        ),
        pytest.param(
            "xgboost_regression",
            "regression",
            {"random_state": 1, "seed": 1},
            ("random_state", "seed"),
            "random_state",
            marks=needs["xgboost"],
        ),
        pytest.param(
            "catboost_regression",
            "regression",
            {"iterations": 10, "num_boost_round": 20},
            ("iterations", "num_boost_round"),
            "iterations",
            marks=needs["catboost"],
        ),
        pytest.param(
            "catboost_regression",
            "regression",
            {"random_seed": 1, "random_state": 1},
            ("random_seed", "random_state"),
            "random_seed",
            marks=needs["catboost"],
        ),
    ],
)
def test_two_names_for_one_parameter_are_refused(
    model_type: str, task: str, params: dict[str, Any], names: tuple[str, str], canonical: str
) -> None:
    with pytest.raises(JobError) as err:
        build_estimator(model_type, task, params)
    msg = str(err.value)
    assert f"{names[0]!r} and {names[1]!r}" in msg and f"({canonical})" in msg
    assert "keep only one of them" in msg and msg.endswith(".")


@pytest.mark.parametrize(
    ("model_type", "shown"),
    [
        pytest.param(
            "lightgbm_regression",
            (
                "subsample/bagging_fraction",
                "n_estimators/num_iterations",
                "reg_alpha/lambda_l1",
                "max_bin",
                "verbosity",
            ),
            marks=needs["lightgbm"],
        ),
        pytest.param(
            "xgboost_regression",
            (
                "learning_rate/eta",
                "reg_lambda/lambda",
                "random_state/seed",
                "n_estimators/num_boost_round",
                "tweedie_variance_power",
            ),
            marks=needs["xgboost"],
        ),
        pytest.param(
            "catboost_regression",
            ("iterations/n_estimators/num_boost_round/num_trees", "depth/max_depth", "random_seed/random_state"),
            marks=needs["catboost"],
        ),
    ],
)
def test_nonsense_names_are_refused_listing_native_names(model_type: str, shown: tuple[str, ...]) -> None:
    with pytest.raises(JobError) as err:
        build_estimator(model_type, "regression", {"n_trees": 5, "learning_rate": 0.1})
    msg = str(err.value)
    assert msg.startswith(f"Unknown hyperparameter 'n_trees' for {model_type}; valid names are: ")
    for text in shown:
        assert text in msg, text
    for refused in ("early_stopping_round", "early_stopping_rounds", "od_wait", "train_dir", "callbacks"):
        assert not re.search(rf"\b{refused}\b", msg), refused


@pytest.mark.parametrize(
    ("model_type", "params", "reason"),
    [
        pytest.param("lightgbm_regression", {"early_stopping_round": 5}, "validation set", marks=needs["lightgbm"]),
        pytest.param("lightgbm_regression", {"n_iter_no_change": 5}, "validation set", marks=needs["lightgbm"]),
        pytest.param("lightgbm_regression", {"train_data": "x.csv"}, "read or write files", marks=needs["lightgbm"]),
        pytest.param("lightgbm_regression", {"model_output": "m.txt"}, "read or write files", marks=needs["lightgbm"]),
        pytest.param("lightgbm_regression", {"config_file": "c.conf"}, "read or write files", marks=needs["lightgbm"]),
        pytest.param("lightgbm_regression", {"save_period": 1}, "read or write files", marks=needs["lightgbm"]),
        pytest.param("lightgbm_regression", {"num_machines": 2}, "network", marks=needs["lightgbm"]),
        pytest.param("catboost_regression", {"od_wait": 5}, "validation set", marks=needs["catboost"]),
        pytest.param("catboost_binary_classification", {"callback": "x"}, "progress callback", marks=needs["catboost"]),
        pytest.param("xgboost_regression", {"early_stopping_rounds": 5}, "validation set", marks=needs["xgboost"]),
    ],
)
def test_native_spellings_of_managed_options_are_refused(model_type: str, params: dict[str, Any], reason: str) -> None:
    task = "regression" if "regression" in model_type else "classification"
    name = next(iter(params))
    with pytest.raises(JobError, match=rf"The hyperparameter '{name}' cannot be set for {model_type}: .*{reason}"):
        build_estimator(model_type, task, params)


@needs["lightgbm"]
def test_values_given_by_native_name_are_still_checked() -> None:
    with pytest.raises(JobError, match=r"'feature_fraction' for lightgbm_regression must be a number"):
        build_estimator("lightgbm_regression", "regression", {"feature_fraction": "lots"})
    with pytest.raises(JobError, match=r"'max_bin' for lightgbm_regression must be a single value"):
        build_estimator("lightgbm_regression", "regression", {"max_bin": {"a": 1}})
    with pytest.raises(JobError, match=r"'metric' of lightgbm_regression looks like a file path"):
        build_estimator("lightgbm_regression", "regression", {"metric": "../l2"})
    plan = build_estimator("lightgbm_regression", "regression", {"bagging_freq": "5", "max_bin": "63", "verbose": 0})
    params = plan.estimator.get_params()
    assert (params["subsample_freq"], params["max_bin"], params["verbosity"]) == (5, 63, 0)
    assert "verbose" not in params  # our default (verbosity=-1) was replaced, not doubled


@needs["catboost"]
def test_catboost_print_options_replace_our_default_and_exclude_each_other() -> None:
    plan = build_estimator("catboost_regression", "regression", {"logging_level": "Silent"})
    params = plan.estimator.get_params()
    assert params["logging_level"] == "Silent" and "verbose" not in params
    with pytest.raises(JobError, match=r"'silent' and 'verbose' .* how much CatBoost prints"):
        build_estimator("catboost_regression", "regression", {"silent": True, "verbose": 0})


@needs["lightgbm"]
def test_lightgbm_aliases_follow_the_installed_library() -> None:
    import lightgbm
    from lightgbm.basic import _ConfigAliases

    names = hyperparams.native_names("lightgbm", lightgbm.LGBMRegressor)
    for native, aliases in _ConfigAliases._get_all_param_aliases().items():
        if native in names.canonical:
            assert {names.canonical[a] for a in aliases} == {names.canonical[native]}, native
        else:
            assert set(aliases) <= set(names.refused), native


@needs["lightgbm"]
def test_lightgbm_fallback_table_keeps_the_bot_template_working(monkeypatch: pytest.MonkeyPatch) -> None:
    import lightgbm.basic

    expected = build_estimator("lightgbm_regression", "regression", dict(BOT_LIGHTGBM)).hyperparameters

    def gone() -> None:
        raise AttributeError("moved")

    monkeypatch.setattr(lightgbm.basic._ConfigAliases, "_get_all_param_aliases", staticmethod(gone))
    hyperparams.native_names.cache_clear()
    try:
        assert build_estimator("lightgbm_regression", "regression", dict(BOT_LIGHTGBM)).hyperparameters == expected
        with pytest.raises(JobError, match="'early_stopping_round' cannot be set"):
            build_estimator("lightgbm_regression", "regression", {"early_stopping_round": 3})
    finally:
        monkeypatch.undo()
        hyperparams.native_names.cache_clear()


@needs["catboost"]
def test_catboost_synonyms_read_from_the_library_match_the_fallback_table() -> None:
    import catboost

    wrapper = frozenset(inspect.signature(catboost.CatBoostClassifier).parameters)
    derived = hyperparams._catboost_groups(wrapper)
    for name, aliases in hyperparams._CATBOOST_FALLBACK.items():
        assert set(aliases) <= set(derived.get(name, ())), name


@pytest.mark.parametrize(
    ("model_type", "params", "name"),
    [
        pytest.param("lightgbm_binary_classification", {"max_bin": 10**9}, "max_bin", marks=needs["lightgbm"]),
        pytest.param("lightgbm_regression", {"num_iterations": 10**7}, "n_estimators", marks=needs["lightgbm"]),
        pytest.param("xgboost_regression", {"num_boost_round": 10**6}, "n_estimators", marks=needs["xgboost"]),
        pytest.param("catboost_regression", {"num_trees": 10**6}, "iterations", marks=needs["catboost"]),
        ("random_forest", {"n_estimators": 10**9}, "n_estimators"),
    ],
)
def test_sizes_that_would_exhaust_the_machine_are_refused(model_type: str, params: dict[str, Any], name: str) -> None:
    task = "regression" if "regression" in model_type else "classification"
    with pytest.raises(JobError, match=rf"'{name}' .* allows at most"):
        build_estimator(model_type, task, params)


@pytest.mark.parametrize(
    ("model_type", "params", "name"),
    [
        pytest.param("lightgbm_regression", {"num_threads": 100_000}, "n_jobs", marks=needs["lightgbm"]),
        pytest.param("catboost_regression", {"thread_count": 100_000}, "thread_count", marks=needs["catboost"]),
        ("random_forest", {"n_jobs": -500}, "n_jobs"),
    ],
)
def test_thread_counts_are_held_to_the_machines_cores(model_type: str, params: dict[str, Any], name: str) -> None:
    plan = build_estimator(model_type, "regression", params)
    value = plan.estimator.get_params()[name]
    assert value == -1 or 1 <= value <= (os.cpu_count() or 1)
    assert any(name in note and "cores" in note for note in plan.notes)
