"""``keras_*`` models trained with exactly what the bot sends, through the real ``train`` job.

The bot's local-path Keras flow (bot ``src/bot/ml_handlers/ml_training_local_path.py``,
``handle_training_execution`` -> ``_execute_training_on_worker``) sends ``task_type "neural_network"``,
``test_size = 1.0 - validation_split`` and hyperparameters ``{**keras_config, "architecture": ...,
"n_features": len(features)}``, where ``keras_config`` holds the buttons' values (epochs 50/100/200,
batch_size 16/32/64/128, kernel_initializer, verbose 0/1/2, validation_split 0.0-0.3) and the architecture
comes from ``src/engines/trainers/keras_templates.py`` ``get_template`` — called *without* ``n_classes``, so
the multiclass template always has a 2-unit softmax output. The dicts below copy those values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from jobenv import JobEnv, job_env

from statsbot_nb.errors import JobError
from statsbot_nb.handlers.predict import predict
from statsbot_nb.handlers.train import train
from statsbot_nb.ml import store
from statsbot_nb.ml.estimators import build_estimator

pytestmark = pytest.mark.extra("keras")

FEATURES = ["x1", "x2", "city"]  # the city category one-hot encodes into several input columns


def bot_architecture(model_type: str, n_features: int, kernel_initializer: str) -> dict[str, Any]:
    """What ``keras_templates.get_template(model_type, n_features, kernel_initializer=...)`` returns
    (``n_classes`` left at its default of 2, as ml_training_local_path.py calls it)."""
    output = {
        "keras_binary_classification": (1, "sigmoid", "binary_crossentropy", ["accuracy"]),
        "keras_multiclass_classification": (2, "softmax", "categorical_crossentropy", ["accuracy"]),
        "keras_regression": (1, "linear", "mse", ["mae"]),
    }[model_type]
    units, activation, loss, metrics = output
    return {
        "layers": [
            {"type": "Dense", "units": n_features, "activation": "relu", "kernel_initializer": kernel_initializer},
            {"type": "Dense", "units": units, "activation": activation, "kernel_initializer": kernel_initializer},
        ],
        "compile": {"loss": loss, "optimizer": "adam", "metrics": metrics},
    }


def bot_hyperparameters(
    model_type: str,
    *,
    epochs: int = 50,
    batch_size: int = 16,
    kernel_initializer: str = "glorot_uniform",
    verbose: int = 1,
    validation_split: float = 0.2,
) -> dict[str, Any]:
    """``{**keras_config, 'architecture': ..., 'n_features': len(features)}`` (handle_training_execution)."""
    config = {
        "epochs": epochs,
        "batch_size": batch_size,
        "kernel_initializer": kernel_initializer,
        "verbose": verbose,
        "validation_split": validation_split,
    }
    return {
        **config,
        "architecture": bot_architecture(model_type, len(FEATURES), kernel_initializer),
        "n_features": len(FEATURES),
    }


def bot_job(path: Path, model_type: str, target: str, hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """The job parameters of ``_execute_training_on_worker`` for the Keras flow."""
    return {
        "file_path": str(path),
        "task_type": "neural_network",
        "model_type": model_type,
        "target_column": target,
        "feature_columns": FEATURES,
        "hyperparameters": hyperparameters,
        "test_size": 1.0 - hyperparameters["validation_split"],
        "custom_name": None,
    }


Env = JobEnv


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    return job_env(tmp_path, monkeypatch)


def table(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Easy targets: ``label`` (2 classes), ``grade`` (3 classes), ``y`` (a number); rows sorted by y."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    city = rng.choice(["paris", "rome", "oslo"], size=n)
    score = 2 * x1 + x2
    frame = pd.DataFrame(
        {
            "x1": x1,
            "x2": x2,
            "city": city,
            "y": x1 + 0.5 * x2 + np.where(city == "rome", 0.5, 0.0) + rng.normal(scale=0.1, size=n),
            "label": np.where(score > 0, "yes", "no"),
            "grade": np.select([score < -1, score < 1], ["low", "mid"], "high"),
        }
    )
    return frame.sort_values("y").reset_index(drop=True)  # a tail-only validation split would see one class


def write_csv(env: Env, frame: pd.DataFrame, name: str = "train") -> Path:
    path = env.data / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path


def dense_layers(net: Any) -> list[tuple[int, str, str]]:
    """(units, activation, kernel initializer class) of each Dense layer of the fitted Keras model."""
    import keras

    return [
        (layer.units, layer.activation.__name__, type(layer.kernel_initializer).__name__)
        for layer in net.model_.layers
        if isinstance(layer, keras.layers.Dense)
    ]


def train_as_bot(
    env: Env, capsys: pytest.CaptureFixture[str], model_type: str, target: str, **config: Any
) -> tuple[dict[str, Any], Any]:
    hyper = bot_hyperparameters(model_type, **config)
    data = train(bot_job(write_csv(env, table()), model_type, target, hyper), env.ctx)
    out = capsys.readouterr().out
    assert "Epoch" not in out and "step" not in out and "━" not in out, out  # verbose=1 never prints
    model, _, meta = store.load_model(env.settings.models_dir, data["model_id"])  # pickled and reloaded
    assert meta["hyperparameters"]["architecture"] == hyper["architecture"]
    return data, model.steps[-1][1]


def predict_file(env: Env, model_id: str) -> pd.DataFrame:
    source = write_csv(env, table(40, seed=5).drop(columns=["y", "label", "grade"]), "new")
    data = predict({"model_id": model_id, "file_path": str(source), "feature_columns": FEATURES}, env.ctx)
    return pd.read_csv(data["output_file"])


def test_binary_template_trains_as_sent(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    data, net = train_as_bot(env, capsys, "keras_binary_classification", "label", kernel_initializer="random_normal")
    assert data["model_info"]["task_type"] == "classification"
    assert dense_layers(net) == [(3, "relu", "RandomNormal"), (1, "sigmoid", "RandomNormal")]
    assert net.output_mode_ == "sigmoid" and net.loss_ == "binary_crossentropy"
    assert net.optimizer_ == "adam"
    assert net.n_features_in_ > 3 and net.get_params()["n_features"] == 3  # the input layer follows the data
    assert any("n_features is 3" in note for note in net.notes_)
    # test_size 0.8 (= 1 - 0.2) is the bot's convention: as with today's worker, 20 % of the 300 rows are
    # held out and validation_split 0.2 of the other 240 validate each epoch
    assert data["dataset_stats"]["n_train"] == 240 and net.validation_rows_ == 48
    assert any("today's worker" in note for note in data["notes"])
    epochs = [m for _, m, s in env.events if s == "fitting" and m.startswith("Epoch ")]
    assert epochs[-1].startswith("Epoch 50/50 (loss ") and "val_loss" in epochs[-1] and "accuracy" in epochs[-1]
    assert data["metrics"]["accuracy"] > 0.6, data["metrics"]
    written = predict_file(env, data["model_id"])
    proba = written[["proba_no", "proba_yes"]].to_numpy()
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5) and set(written["prediction"]) <= {"yes", "no"}


def test_multiclass_template_gets_one_output_per_class(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    data, net = train_as_bot(
        env,
        capsys,
        "keras_multiclass_classification",
        "grade",
        kernel_initializer="he_uniform",
        batch_size=32,
        validation_split=0.3,
    )
    # the bot's template has a 2-unit softmax; the data has 3 classes
    assert dense_layers(net) == [(3, "relu", "HeUniform"), (3, "softmax", "HeUniform")]
    assert net.loss_ == "sparse_categorical_crossentropy"
    assert any("3 softmax unit(s) instead of 2 softmax" in note for note in net.notes_)
    # three balanced classes (chance is about 0.35); the bot's 3-unit network after 50 epochs on ~60 rows
    assert data["metrics"]["accuracy"] > 0.45 and data["metrics"]["roc_auc"] > 0.7, data["metrics"]
    written = predict_file(env, data["model_id"])
    proba = written[["proba_high", "proba_low", "proba_mid"]].to_numpy()
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert set(written["prediction"]) <= {"low", "mid", "high"}


def test_regression_template_trains_as_sent(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    data, net = train_as_bot(
        env, capsys, "keras_regression", "y", kernel_initializer="he_normal", verbose=2, validation_split=0.3
    )
    assert data["model_info"]["task_type"] == "regression"
    assert dense_layers(net) == [(3, "relu", "HeNormal"), (1, "linear", "HeNormal")]
    assert net.loss_ == "mse" and net.validation_rows_ > 0
    # the bot's 3-unit network, 50 epochs on ~60 rows and an unscaled target: learning, not yet converged
    assert data["metrics"]["r2"] > 0.2, data["metrics"]
    losses = [
        float(m.split("(loss ")[1].split(",")[0])
        for _, m, s in env.events
        if s == "fitting" and m.startswith("Epoch ") and "(loss " in m
    ]
    assert len(losses) == 50 and losses[-1] < 0.7 * losses[0], losses
    written = predict_file(env, data["model_id"])
    assert pd.api.types.is_float_dtype(written["prediction"]) and written["prediction"].notna().all()


def test_binary_problem_with_softmax_template_and_dropout_layers() -> None:
    """A 2-unit softmax output on a 2-class problem is kept; Dropout layers and Dense ``dropout`` are built."""
    import keras

    arch = {
        "layers": [
            {"type": "Dense", "units": 8, "activation": "tanh", "dropout": 0.25},
            {"type": "Dropout", "rate": 0.1},
            {"type": "Dense", "units": 2, "activation": "softmax"},
        ],
        "compile": {"optimizer": "rmsprop", "loss": "categorical_crossentropy", "metrics": ["accuracy"]},
    }
    plan = build_estimator(
        "keras_multiclass_classification",
        "classification",
        {"architecture": arch, "epochs": 3, "validation_split": 0.0},
    )
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4))
    y = (X[:, 0] > 0).astype("int64")
    net = plan.estimator.fit(X, y)
    assert [type(layer).__name__ for layer in net.model_.layers] == ["Dense", "Dropout", "Dropout", "Dense"]
    rates = [layer.rate for layer in net.model_.layers if isinstance(layer, keras.layers.Dropout)]
    assert rates == [0.25, 0.1]
    assert dense_layers(net) == [(8, "tanh", "GlorotUniform"), (2, "softmax", "GlorotUniform")]
    assert type(net.model_.optimizer).__name__ == "RMSprop" and net.notes_ == [] and net.validation_rows_ == 0
    assert net.predict_proba(X).shape == (40, 2)


def test_sigmoid_output_on_three_classes_becomes_softmax() -> None:
    hyper = bot_hyperparameters("keras_binary_classification", epochs=2)
    net = build_estimator("keras_binary_classification", "classification", hyper).estimator
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 3))
    y = np.arange(30) % 3
    net.fit(X, y)
    assert net.output_mode_ == "softmax" and dense_layers(net)[-1][:2] == (3, "softmax")
    assert net.predict_proba(X).shape == (30, 3)


def test_validation_rows_are_drawn_at_random_and_keep_every_class() -> None:
    """Not Keras' last rows: on a file sorted by the target those would all be one class."""
    from statsbot_nb.ml.kerasnet import _validation_rows

    y = np.repeat([0, 1], 20)
    fit, val = _validation_rows(y, 0.25, True, 42)
    assert fit is not None and val is not None
    assert len(val) == 10 and set(y[val]) == {0, 1} and set(y[fit]) == {0, 1}
    assert sorted([*fit, *val]) == list(range(40))
    assert _validation_rows(y, 0.0, True, 42) == (None, None)
    assert _validation_rows(np.array([0, 1, 2]), 0.5, True, 42) == (None, None)  # no row to spare


def _replace(hyper: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    import copy

    out = copy.deepcopy(hyper)
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return out


BINARY = bot_hyperparameters("keras_binary_classification")


@pytest.mark.parametrize(
    ("hyper", "sentence"),
    [
        (
            _replace(BINARY, ("architecture", "layers", 0, "type"), "Conv2D"),
            r"architecture\.layers\[0\]\.type must be one of Dense, Dropout, not 'Conv2D'\.",
        ),
        (
            _replace(BINARY, ("architecture", "layers", 0, "type"), "Lambda"),
            r"architecture\.layers\[0\]\.type must be one of Dense, Dropout",
        ),
        (
            _replace(BINARY, ("architecture", "compile", "optimizer"), "adamx"),
            r"architecture\.compile\.optimizer must be one of adam, .*, not 'adamx'\.",
        ),
        (
            _replace(BINARY, ("architecture", "compile", "optimizer"), {"class_name": "Adam", "config": {}}),
            r"architecture\.compile\.optimizer must be one of",
        ),
        (
            _replace(BINARY, ("architecture", "compile", "loss"), "my_loss"),
            r"architecture\.compile\.loss must be one of binary_crossentropy, .*, not 'my_loss'\.",
        ),
        (_replace(BINARY, ("architecture", "compile", "loss"), "mse"), r"architecture\.compile\.loss must be one of"),
        (
            _replace(BINARY, ("architecture", "layers", 0, "units"), 1_000_000),
            r"architecture\.layers\[0\]\.units must be a whole number from 1 to 4096, not 1000000\.",
        ),
        (_replace(BINARY, ("architecture", "layers", 0, "units"), True), r"architecture\.layers\[0\]\.units"),
        (
            _replace(
                BINARY,
                ("architecture", "layers", 0, "activation"),
                {"class_name": "Lambda", "config": {"function": "print"}},
            ),
            r"architecture\.layers\[0\]\.activation must be one of relu, ",
        ),
        (
            _replace(BINARY, ("architecture", "layers", 1, "kernel_initializer"), "my_init"),
            r"architecture\.layers\[1\]\.kernel_initializer must be one of glorot_uniform, ",
        ),
        (
            _replace(BINARY, ("architecture", "layers", 0, "input_shape"), [3]),
            r"architecture\.layers\[0\] \(a Dense layer\) has no setting 'input_shape'",
        ),
        (
            _replace(BINARY, ("architecture", "layers"), [{"type": "Dense", "units": 4}] * 40),
            r"architecture\.layers has 40 layers; at most 32",
        ),
        (
            _replace(BINARY, ("architecture", "layers"), [{"type": "Dense", "units": 4}, {"type": "Dropout"}]),
            r"architecture\.layers\[1\] is the output layer and must be a Dense layer",
        ),
        (_replace(BINARY, ("architecture", "optimizer"), "adam"), r"architecture has no setting 'optimizer'"),
        (_replace(BINARY, ("kernel_initializer",), "identity_of_doom"), r"kernel_initializer must be one of"),
        (_replace(BINARY, ("validation_split",), 0.95), r"validation_split must be at most 0.9"),
        (_replace(BINARY, ("architecture",), "Dense(3)"), r"architecture must be an object"),
    ],
)
def test_bad_keras_settings_are_refused_before_reading(env: Env, hyper: dict[str, Any], sentence: str) -> None:
    missing = env.data / "never_read.csv"  # the job must refuse before looking at the file
    with pytest.raises(
        JobError,
        match=r"^The hyperparameters for keras_binary_classification were not "
        r"accepted: " + sentence,
    ):
        train(bot_job(missing, "keras_binary_classification", "label", hyper), env.ctx)


def test_unknown_top_level_name_is_refused_with_the_valid_names(env: Env) -> None:
    hyper = {**BINARY, "steps_per_execution": 4}
    with pytest.raises(JobError) as err:
        train(bot_job(env.data / "never_read.csv", "keras_binary_classification", "label", hyper), env.ctx)
    message = str(err.value)
    assert message.startswith(
        "Unknown hyperparameter 'steps_per_execution' for keras_binary_classification; valid names are: "
    ) and message.endswith(".")
    for name in (
        "architecture",
        "batch_size",
        "epochs",
        "kernel_initializer",
        "n_features",
        "validation_split",
        "verbose",
    ):
        assert name in message


def test_regression_refuses_a_classification_loss_and_default_network_still_builds() -> None:
    hyper = _replace(
        bot_hyperparameters("keras_regression"), ("architecture", "compile", "loss"), "binary_crossentropy"
    )
    with pytest.raises(JobError, match=r"architecture\.compile\.loss must be one of mse, "):
        build_estimator("keras_regression", "regression", hyper)
    with pytest.raises(JobError, match="hidden_layers and dropout describe the default network"):
        build_estimator("keras_regression", "regression", {**hyper, "hidden_layers": [8]})
    plan = build_estimator("keras_regression", "regression", {"epochs": 2, "hidden_layers": [5]})
    rng = np.random.default_rng(2)
    X = rng.normal(size=(20, 2))
    net = plan.estimator.fit(X, X[:, 0])
    assert dense_layers(net) == [(5, "relu", "GlorotUniform"), (1, "linear", "GlorotUniform")]


def test_a_network_too_big_for_the_machine_is_refused_before_it_is_built(env: Env) -> None:
    """31 layers of 4096 units pass the per-layer bounds but would need ~500M weights (8 GB with Adam)."""
    hyper = bot_hyperparameters("keras_regression", epochs=1)
    hyper["architecture"]["layers"] = [{"type": "Dense", "units": 4096, "activation": "relu"}] * 31 + [
        {"type": "Dense", "units": 1, "activation": "linear"}
    ]
    with pytest.raises(JobError, match=r"weights .* at most 20,000,000"):
        train(bot_job(write_csv(env, table()), "keras_regression", "y", hyper), env.ctx)
    assert not any(env.settings.models_dir.glob("*/model.pkl"))
