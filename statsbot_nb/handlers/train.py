"""The ``train`` handler: parse the request once, apply the file policy, read the table, call ``ml.train``.

What is specific to the wire lives here: the bot's parameter names, its template flow sending regression
models as classifications, and its neural-network flow sending ``test_size = 1 - validation_split``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .. import cluster
from ..cluster.connect import check_cluster_path
from ..cluster.train import train_on_cluster
from ..context import JobContext
from ..errors import JobError
from ..ml import estimators
from ..ml.constants import CLASSIFICATION, REGRESSION, TASKS
from ..ml.data import read_columns, read_table
from ..ml.train import TrainOptions, early_plan, train_model
from ..privacy import shape_dataset_stats
from ..strictjson import to_strict_json
from .params import Params, custom_name, policy, required_text

#: The held-out share today's worker always uses (it ignores ``test_size``); see :func:`_bot_keras_split`.
TODAYS_TEST_SIZE = 0.2


@dataclass(frozen=True)
class TrainRequest:
    """The validated parameters of a ``train`` job: the table, what to fit, the name to show."""

    file_path: str
    options: TrainOptions
    custom_name: str | None
    note: str | None = None  # why the task or test_size differs from the one sent, if it does


def parse_request(params: Params) -> TrainRequest:
    """Check every ``train`` parameter; each problem is a sentence naming the parameter."""
    file_path = required_text(params, "file_path", "file_path is missing; give the path of the table to train on.")
    target = params.get("target_column")
    if not isinstance(target, str) or not target:
        raise JobError("target_column is missing; name the column the model should predict.")
    features = params.get("feature_columns")
    if isinstance(features, str):
        features = [features]
    if not isinstance(features, list) or not features:
        raise JobError("feature_columns must be a non-empty list of column names.")
    if not all(isinstance(f, str) and f for f in features):
        raise JobError("feature_columns must contain only column names (non-empty text).")
    features = list(dict.fromkeys(features))
    if target in features:
        raise JobError(f"target_column {target!r} is also listed in feature_columns; remove it from the features.")
    model_type = estimators.check_model_type(params.get("model_type"))
    task = params.get("task_type")
    if task in (None, "", "neural_network", "auto"):
        task = None
    elif task not in TASKS:
        raise JobError(f"task_type {task!r} must be 'regression', 'classification' or 'neural_network'.")
    note = None
    if task == CLASSIFICATION and estimators.task_from_model_type(model_type) == REGRESSION:
        # The bot's template flow sends every model name without "regression" in it as a classification
        # (template_handlers.py ``_infer_task_type``), so a saved linear-regression template arrives as
        # {linear, classification}. These model types only regress: train what the template was saved for.
        task = REGRESSION
        note = (
            f"{model_type} is a regression model, so it was trained for regression although the job "
            "said classification (the bot's templates send that for every model type without "
            "'regression' in its name)."
        )
    hyper = params.get("hyperparameters")
    if hyper is not None and not isinstance(hyper, dict):
        raise JobError("hyperparameters must be an object of name: value pairs or null.")
    if _bot_keras_split(params, hyper):
        test_size = TODAYS_TEST_SIZE
        note = (
            f"The bot's neural-network flow sends test_size = 1 - validation_split "
            f"({params.get('test_size')}); as with today's worker, {TODAYS_TEST_SIZE:.0%} of the rows "
            "are held out for testing and validation_split of the rest validates each epoch."
        )
    else:
        test_size = _test_size(params.get("test_size"))
    name = params.get("custom_name")
    if name is not None and not isinstance(name, str):
        raise JobError("custom_name must be text or null.")
    custom = custom_name(name) if name and name.strip() else None
    options = TrainOptions(target, features, model_type, task, hyper or None, test_size)
    return TrainRequest(file_path, options, custom, note)


def _bot_keras_split(params: Params, hyper: dict[str, Any] | None) -> bool:
    """True for the bot's keras flow, which sends ``test_size = 1 - validation_split``.

    That makes the default validation split of 0.2 hold out 80 % of the rows (and 0 hold out all of
    them); today's worker ignores ``test_size`` and always holds out 20 %, so its users' networks train
    on most of their data. We do what they get today (ml_training_local_path.py, keras branch).
    """
    split = (hyper or {}).get("validation_split")
    test_size = params.get("test_size")
    if params.get("task_type") != "neural_network" or isinstance(split, bool) or isinstance(test_size, bool):
        return False
    if not isinstance(split, (int, float)) or not isinstance(test_size, (int, float)):
        return False
    return 0 <= split < 1 and math.isclose(test_size, 1.0 - split, abs_tol=1e-9)


def _test_size(raw: object) -> float:
    if raw is None:
        return 0.2
    value: object = raw
    if isinstance(raw, str):
        try:
            value = float(raw)
        except ValueError:
            value = raw
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 < value < 1:
        raise JobError(f"test_size must be a fraction between 0 and 1 (for example 0.2), not {raw!r}.")
    return float(value)


def train(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """``train`` job handler: returns the success ``data`` of PROTOCOL.md (plus ``display_name``)."""
    req = parse_request(params)
    options = req.options
    ctx.limit_threads()
    ctx.progress(1, "Checking the request", "loading")
    plan = early_plan(options)
    notes = [req.note] if req.note else []
    settings = ctx.settings
    with policy(settings).open_readable(req.file_path) as table:
        path = table.path
        available = read_columns(table)
        missing = [c for c in [*options.feature_columns, options.target_column] if c not in set(available)]
        if missing:
            raise JobError(
                f"{path.name} has no column {', '.join(repr(c) for c in missing)}; "
                f"its columns are {', '.join(repr(c) for c in available[:50])}."
            )
        on_cluster = False
        if settings.dask_scheduler:
            why_not = cluster.why_not_on_cluster(options.model_type, path, options.hyperparameters)
            on_cluster = why_not is None
            if why_not:
                notes.append(f"Trained on this machine, not on the Dask cluster: {why_not}")
            else:
                check_cluster_path(path, settings.dask_scheduler, settings.dask_local, settings.dask_shared_dirs)
        if not on_cluster:
            ctx.progress(3, f"Reading {path.name}", "loading")
            frame = read_table(table, [*options.feature_columns, options.target_column])
    if on_cluster:
        model = train_on_cluster(
            path,
            options,
            str(settings.dask_scheduler),
            settings.models_dir,
            ctx.progress,
            timeout=settings.dask_timeout,
            custom_name=req.custom_name,
            notes=notes,
        )
    else:
        model = train_model(
            frame,
            options,
            settings.models_dir,
            ctx.progress,
            source_name=path.name,
            custom_name=req.custom_name,
            notes=notes,
            plan=plan,
            curve=ctx.curve_point,  # the job's live chart, on this machine only
        )
    data: dict[str, Any] = {
        "model_id": model.model_id,
        # A metric that is undefined here (NaN, e.g. r2 of a constant target) is left out: the bot formats
        # every metric key it finds as a number (``_format_keras_metrics``), so a null would fail there.
        "metrics": {k: v for k, v in to_strict_json(model.metrics).items() if v is not None},
        # What the target's values may show depends on the privacy level (labels numbered at strict,
        # capped at standard); the model's own metadata keeps them all, locally.
        "dataset_stats": shape_dataset_stats(model.dataset_stats, ctx.settings.privacy),
        "model_info": model.model_info,
        "training_time": model.training_time,
        "display_name": model.display_name,
    }
    if model.notes:
        data["notes"] = model.notes
    return to_strict_json(data)
