"""The handler layer's requests: each action's wire dict parsed once into a frozen, typed request.

Parsing needs no files, no policy and no context, so these tests only call ``parse``; what the handlers
then do with files is covered by test_files.py, test_train_predict.py and test_store.py.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from statsbot_nb.errors import JobError
from statsbot_nb.handlers.files import FileRequest, JoinRequest, SaveRequest
from statsbot_nb.handlers.models import ModelRequest, RenameRequest
from statsbot_nb.handlers.predict import PredictRequest
from statsbot_nb.handlers.train import TODAYS_TEST_SIZE, TrainRequest, parse_request
from statsbot_nb.jobs import ACTIONS
from statsbot_nb.ml.train import TrainOptions
from statsbot_nb.runner import resolve_target


def test_every_action_is_a_handler_taking_params_and_ctx() -> None:
    for action, spec in ACTIONS.items():
        handler = resolve_target(spec.target)
        assert list(inspect.signature(handler).parameters) == ["params", "ctx"], action


def test_requests_are_frozen() -> None:
    req = FileRequest.parse({"file_path": "a.csv"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.file_path = "b.csv"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("params", "pattern"),
    [
        ({"operation": "zip", "file_paths": ["a.csv", "b.csv"]}, "'operation' must be one of"),
        ({"operation": "concat", "file_paths": ["a.csv"]}, "'file_paths' must be a list of at least two"),
        ({"operation": "concat", "file_paths": ["f.csv"] * 21}, "at most 20 can be joined"),
        ({"operation": "left_join", "file_paths": ["a.csv", "b.csv"]}, "'key_columns' must be a non-empty list"),
        ({"operation": "concat", "file_paths": ["a.csv", "b.csv"], "filters": ["a ; b"]}, "filter"),
        ({"operation": "concat", "file_paths": ["a.csv", "b.csv"], "output_path": " "}, "'output_path' must be"),
    ],
)
def test_join_request_refusals(params: dict[str, Any], pattern: str) -> None:
    with pytest.raises(JobError, match=pattern):
        JoinRequest.parse(params)


def test_join_request_values() -> None:
    req = JoinRequest.parse(
        {"operation": "merge", "file_paths": ["a.csv", "b.csv"], "key_columns": "id", "filters": ["age >= 3"]}
    )
    assert (req.operation, req.file_paths, req.key_columns, req.output_path) == (
        "merge",
        ("a.csv", "b.csv"),
        ("id",),
        None,
    )
    assert [f.column for f in req.filters] == ["age"]
    natural = JoinRequest.parse({"operation": "merge", "file_paths": ["a.csv", "b.csv"]})
    assert natural.key_columns == ()  # merge without keys joins on the shared columns
    crossed = JoinRequest.parse({"operation": "cross_join", "file_paths": ["a", "b"], "key_columns": ["x"]})
    assert crossed.key_columns == ()  # as today's worker: cross_join ignores keys


def test_save_request_checks_every_row() -> None:
    assert SaveRequest.parse({"file_path": "s.csv", "dataframe": [{"a": 1}]}).records == [{"a": 1}]
    with pytest.raises(JobError, match=r"row 1, column 'a' holds a dict"):
        SaveRequest.parse({"file_path": "s.csv", "dataframe": [{"a": 1}, {"a": {"x": 1}}]})
    with pytest.raises(JobError, match="'file_path' must be"):
        SaveRequest.parse({"dataframe": [{"a": 1}]})


def test_model_requests() -> None:
    assert ModelRequest.parse({"model_id": "model_x"}).model_id == "model_x"
    with pytest.raises(JobError, match="not a valid model id"):
        ModelRequest.parse({"model_id": "../x"})
    assert RenameRequest.parse({"model_id": "m", "custom_name": "  Prices "}).custom_name == "Prices"
    with pytest.raises(JobError, match="control characters"):
        RenameRequest.parse({"model_id": "m", "custom_name": "a\tb"})


def test_predict_request() -> None:
    req = PredictRequest.parse({"file_path": "new.csv", "model_id": "m1", "feature_columns": ["a", "b"]})
    assert req == PredictRequest("new.csv", "m1", ("a", "b"))
    assert (
        PredictRequest.parse({"file_path": "n.csv", "model_id": "m1", "feature_columns": "a"}).feature_columns is None
    )
    with pytest.raises(JobError, match="file_path is missing"):
        PredictRequest.parse({"model_id": "m1"})
    with pytest.raises(JobError, match="not a valid model id"):
        PredictRequest.parse({"file_path": "n.csv", "model_id": 5})


def test_train_request_is_typed_options() -> None:
    req = parse_request(
        {
            "file_path": "t.csv",
            "target_column": "y",
            "feature_columns": ["a", "a", "b"],
            "model_type": "random_forest",
            "task_type": "regression",
            "test_size": "0.25",
            "custom_name": " Mine ",
        }
    )
    assert isinstance(req, TrainRequest) and req.file_path == "t.csv" and req.custom_name == "Mine"
    assert req.options == TrainOptions("y", ["a", "b"], "random_forest", "regression", None, 0.25)


def test_train_request_translates_the_bots_quirks() -> None:
    template = parse_request(
        {
            "file_path": "t.csv",
            "target_column": "y",
            "feature_columns": ["a"],
            "model_type": "linear",
            "task_type": "classification",
        }
    )
    assert template.options.task_type == "regression" and template.note and "regression model" in template.note
    keras = parse_request(
        {
            "file_path": "t.csv",
            "target_column": "y",
            "feature_columns": ["a"],
            "model_type": "keras_binary_classification",
            "task_type": "neural_network",
            "test_size": 0.8,
            "hyperparameters": {"validation_split": 0.2},
        }
    )
    assert keras.options.test_size == TODAYS_TEST_SIZE and keras.options.task_type is None
