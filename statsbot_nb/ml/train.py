"""The ``train`` job: read the user's table, fit a model with live progress, score it, save it.

``train(params, ctx)`` is a synchronous handler (it runs in a job process). Its stages and the share of
the progress bar each gets: checking and loading (0-10 %), preprocessing (10-15 %), fitting (15-85 %, with
progress reported from inside the fit, see :mod:`statsbot_nb.ml.fitting`), evaluating (85-95 %) and
saving (95-100 %). Every failure a person can fix is a :class:`JobError` sentence naming the parameter.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from ..context import JobContext
from ..errors import JobError
from ..paths import PathPolicy
from ..strictjson import to_strict_json
from . import estimators, evaluate, preprocess, store
from .constants import SEED
from .data import read_columns, read_table
from .fitting import fit_with_progress

log = logging.getLogger("statsbot_nb.train")

MIN_ROWS = 5
#: The held-out share today's worker always uses (it ignores ``test_size``); see :func:`_bot_keras_split`.
TODAYS_TEST_SIZE = 0.2
CLASSIFICATION_MAX_DISTINCT = 10


@dataclass(frozen=True)
class TrainRequest:
    """The validated parameters of a ``train`` job."""

    file_path: str
    target_column: str
    feature_columns: list[str]
    model_type: str
    task_type: str | None  # None: decide from the model type or the target ("neural_network")
    hyperparameters: dict[str, Any] | None
    test_size: float
    custom_name: str | None
    note: str | None = None  # why the task or test_size differs from the one sent, if it does


def parse_request(params: dict[str, Any]) -> TrainRequest:
    """Check every ``train`` parameter; each problem is a sentence naming the parameter."""
    file_path = params.get("file_path")
    if not isinstance(file_path, str) or not file_path.strip():
        raise JobError("file_path is missing; give the path of the table to train on.")
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
    elif task not in estimators.TASKS:
        raise JobError(f"task_type {task!r} must be 'regression', 'classification' or 'neural_network'.")
    note = None
    if task == estimators.CLASSIFICATION and estimators.task_from_model_type(model_type) == estimators.REGRESSION:
        # The bot's template flow sends every model name without "regression" in it as a classification
        # (template_handlers.py ``_infer_task_type``), so a saved linear-regression template arrives as
        # {linear, classification}. These model types only regress: train what the template was saved for.
        task = estimators.REGRESSION
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
    custom = store.validate_custom_name(name) if name and name.strip() else None
    return TrainRequest(file_path, target, features, model_type, task, hyper or None, test_size, custom, note)


def _bot_keras_split(params: dict[str, Any], hyper: dict[str, Any] | None) -> bool:
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


def infer_task(model_type: str, target: pd.Series) -> str:
    """Regression or classification for ``neural_network`` jobs: the model type's name, else the target."""
    implied = estimators.task_from_model_type(model_type)
    if implied:
        return implied
    numeric = pd.api.types.is_numeric_dtype(target) and not pd.api.types.is_bool_dtype(target)
    if numeric and target.nunique(dropna=True) > CLASSIFICATION_MAX_DISTINCT:
        return estimators.REGRESSION
    return estimators.CLASSIFICATION


def train(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """``train`` job handler: returns the success ``data`` of PROTOCOL.md (plus ``display_name``)."""
    started = time.monotonic()
    req = parse_request(params)
    ctx.progress(1, "Checking the request", "loading")
    plan = None
    if req.task_type is not None or estimators.task_from_model_type(req.model_type):
        task = req.task_type or estimators.task_from_model_type(req.model_type)
        plan = estimators.build_estimator(req.model_type, str(task), req.hyperparameters)

    path = PathPolicy.from_settings(ctx.settings).readable(req.file_path)
    available = read_columns(path)
    missing = [c for c in [*req.feature_columns, req.target_column] if c not in set(available)]
    if missing:
        raise JobError(
            f"{path.name} has no column {', '.join(repr(c) for c in missing)}; "
            f"its columns are {', '.join(repr(c) for c in available[:50])}."
        )
    ctx.progress(3, f"Reading {path.name}", "loading")
    frame = read_table(path, [*req.feature_columns, req.target_column])
    total_rows = len(frame)
    frame, dropped = preprocess.drop_missing_target(frame, req.target_column)
    ctx.progress(10, f"Read {total_rows:,} rows", "loading")
    if len(frame) < MIN_ROWS:
        raise JobError(
            f"Only {len(frame)} row(s) of {path.name} have a value in {req.target_column!r}; "
            f"training needs at least {MIN_ROWS}."
        )

    task = req.task_type or infer_task(req.model_type, frame[req.target_column])
    if plan is None:
        plan = estimators.build_estimator(req.model_type, task, req.hyperparameters)
    notes: list[str] = ([req.note] if req.note else []) + plan.notes
    result = _fit_and_score(req, plan, frame, dropped, notes, ctx)
    ctx.progress(95, "Saving the model", "saving")
    created = datetime.now().astimezone()
    model_id = store.new_model_id(ctx.settings.models_dir, req.model_type, task, created)
    display = req.custom_name or (f"{req.model_type.replace('_', ' ').title()} ({len(req.feature_columns)} features)")
    model_info = {
        "model_type": req.model_type,
        "task_type": task,
        "created_at": created.isoformat(timespec="milliseconds"),  # orders models made in one second
        "target_column": req.target_column,
        "feature_columns": req.feature_columns,
    }
    metadata = {
        **model_info,
        "metrics": result["metrics"],
        "custom_name": req.custom_name,
        "display_name": display,
        "dataset_stats": result["dataset_stats"],
        "model_info": model_info,
        "training_time": result["training_time"],
        "hyperparameters": plan.hyperparameters,
        "preprocessing": result["preprocessing"],
        "feature_importances": result["importances"],
        "feature_importance_method": result["importance_method"],
        "class_labels": result["labels"],
        "positive_class": result["labels"][1] if result["labels"] and len(result["labels"]) == 2 else None,
        "split": {"test_size": req.test_size, "seed": SEED, "stratified": result["stratified"]},
        "source_file": path.name,
        "library": plan.library,
        "libraries": {k: v for k, v in estimators.installed_libraries().items() if v},
        "worker_version": _worker_version(),
        "notes": notes,
    }
    encoders = {req.target_column: result["label_encoder"]} if result["label_encoder"] is not None else None
    store.save_model(
        ctx.settings.models_dir,
        model_id,
        result["pipeline"],
        metadata,
        artefacts=result["artefacts"],
        encoders=encoders,
    )
    ctx.progress(100, f"Saved {model_id}", "saving")
    log.info("Trained %s in %.1fs", model_id, time.monotonic() - started)
    data: dict[str, Any] = {
        "model_id": model_id,
        # A metric that is undefined here (NaN, e.g. r2 of a constant target) is left out: the bot formats
        # every metric key it finds as a number (``_format_keras_metrics``), so a null would fail there.
        "metrics": {k: v for k, v in to_strict_json(result["metrics"]).items() if v is not None},
        "dataset_stats": result["dataset_stats"],
        "model_info": model_info,
        "training_time": result["training_time"],
        "display_name": display,
    }
    if notes:
        data["notes"] = notes
    return to_strict_json(data)


def _fit_and_score(
    req: TrainRequest,
    plan: estimators.EstimatorPlan,
    frame: pd.DataFrame,
    dropped: int,
    notes: list[str],
    ctx: JobContext,
) -> dict[str, Any]:
    """Split, preprocess, fit with progress and evaluate; everything :func:`train` saves."""
    from sklearn.pipeline import Pipeline

    classify = plan.task_type == estimators.CLASSIFICATION
    ctx.progress(11, "Preparing features", "preprocessing")
    roles = preprocess.split_roles(frame, req.feature_columns)
    X = preprocess.coerce_features(frame[req.feature_columns], roles)
    label_encoder = None
    labels: list[Any] | None = None
    if classify:
        y, label_encoder = preprocess.encode_labels(frame[req.target_column], req.target_column)
        labels = preprocess.class_labels(label_encoder)
    else:
        y = preprocess.regression_target(frame[req.target_column], req.target_column)
    train_idx, test_idx, stratified = split_rows(y, req.test_size, classify, notes)
    X_train, X_test = X.iloc[train_idx], X.iloc[test_idx]
    y_train, y_test = y[train_idx], y[test_idx]

    fit_started = time.monotonic()
    preprocessor = preprocess.build_preprocessor(roles, plan.scale_numeric)
    try:
        Xt_train = preprocessor.fit_transform(X_train)
    except ValueError as exc:
        raise JobError(
            f"The feature columns could not be prepared for training: {estimators._first_line(exc)}"
        ) from exc
    if Xt_train.shape[1] == 0:
        raise JobError("The feature columns hold no usable values (every value is missing); choose other columns.")
    ctx.progress(15, f"Fitting {req.model_type} on {len(train_idx):,} rows", "fitting")

    def report(fraction: float, message: str) -> None:
        ctx.progress(15 + 70 * max(0.0, min(1.0, fraction)), message, "fitting")

    model = fit_with_progress(plan, Xt_train, y_train, report)
    training_time = round(time.monotonic() - fit_started, 3)
    pipeline = Pipeline([("preprocess", preprocessor), ("model", model)])

    ctx.progress(86, "Evaluating on the held-out rows", "evaluating")
    Xt_test = preprocessor.transform(X_test)
    try:
        y_pred = np.asarray(model.predict(Xt_test))
    except Exception as exc:  # a library refusing an option only when predicting (xgboost's `missing`)
        raise JobError(
            f"The {req.model_type} model was fitted but could not score the held-out rows: "
            f"{estimators._first_line(exc)} Check its hyperparameters."
        ) from exc
    proba = None
    if classify:
        y_pred = y_pred.astype("int64")
        proba = evaluate.predict_proba_or_none(model, Xt_test)
        if proba is not None and proba.shape[1] != len(labels or []):
            proba = None
        metrics = evaluate.classification_metrics(y_test, y_pred, proba, len(labels or []))
    else:
        y_pred = y_pred.astype("float64").ravel()
        metrics = evaluate.regression_metrics(y_test, y_pred)
    ctx.progress(90, "Measuring feature importance", "evaluating")
    sources = preprocess.output_feature_sources(preprocessor, roles)
    importances, method = evaluate.feature_importances(
        pipeline, X_test, y_test, sources, req.feature_columns, "accuracy" if classify else "r2"
    )
    return {
        "pipeline": pipeline,
        "label_encoder": label_encoder,
        "labels": labels,
        "metrics": metrics,
        "training_time": training_time,
        "stratified": stratified,
        "importances": importances,
        "importance_method": method,
        "artefacts": evaluate.artefacts(y_test, y_pred, proba, labels),
        "preprocessing": preprocess.describe(
            roles, plan.scale_numeric, dropped, req.target_column, labels, req.model_type
        ),
        "dataset_stats": dataset_stats(y, labels, len(train_idx), len(test_idx), len(req.feature_columns), dropped),
    }


def split_rows(
    y: np.ndarray, test_size: float, classify: bool, notes: list[str]
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Train and test row indices (fixed seed); stratified for classification whenever possible.

    When a class has a single row (or the test set is smaller than the number of classes) the split is
    random instead, with a note, and rows of classes missing from the training part are moved into it so
    the model knows every class.
    """
    from sklearn.model_selection import train_test_split

    index = np.arange(len(y))
    if classify:
        counts = np.bincount(y)
        if counts.min() >= 2:
            try:
                tr, te = train_test_split(index, test_size=test_size, random_state=SEED, stratify=y)
                return np.sort(tr), np.sort(te), True
            except ValueError:
                notes.append("The test set is smaller than the number of classes, so the split is not stratified.")
        else:
            rare = int((counts < 2).sum())
            notes.append(f"{rare} class(es) have a single row, so the train/test split is not stratified.")
    tr, te = train_test_split(index, test_size=test_size, random_state=SEED)
    if classify:
        missing = np.setdiff1d(np.unique(y), np.unique(y[tr]))
        if len(missing):
            move = np.isin(y[te], missing)
            tr, te = np.concatenate([tr, te[move]]), te[~move]
    if len(te) == 0 or len(tr) < 2:
        raise JobError("There are too few rows to keep some for testing; add rows or change test_size.")
    return np.sort(tr), np.sort(te), False


def dataset_stats(
    y: np.ndarray, labels: list[Any] | None, n_train: int, n_test: int, n_features: int, dropped: int
) -> dict[str, Any]:
    """Row counts plus the class distribution (classification) or target quartiles (regression)."""
    stats: dict[str, Any] = {
        "n_rows": len(y),
        "n_train": n_train,
        "n_test": n_test,
        "n_features": n_features,
        "dropped_rows": dropped,
    }
    if labels is not None:
        counts = np.bincount(y, minlength=len(labels))
        # The bot formats each class as ``v['count']`` and ``v['pct']`` (percent of rows, one decimal):
        # ml_training_local_path.py ``_format_sklearn_metrics`` and template_handlers.py.
        stats["class_distribution"] = {
            str(label): {"count": int(c), "pct": round(100.0 * c / len(y), 1)}
            for label, c in zip(labels, counts, strict=True)
        }
    else:
        with np.errstate(all="ignore"):
            q = np.percentile(y, [0, 25, 50, 75, 100])
            quartiles = {
                "min": float(q[0]),
                "q1": float(q[1]),
                "median": float(q[2]),
                "q3": float(q[3]),
                "max": float(q[4]),
                "mean": float(np.mean(y)),
                "std": float(np.std(y)),
            }
        # The bot formats q1, median and q3 as numbers (``:.2f``); values so extreme that they overflow
        # are left out rather than sent as null.
        if all(math.isfinite(quartiles[k]) for k in ("q1", "median", "q3")):
            stats["quartiles"] = {k: v for k, v in quartiles.items() if math.isfinite(v)}
    return stats


def _worker_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("statsbot_nb")
    except PackageNotFoundError:
        return "0+unknown"


__all__ = ["TrainRequest", "dataset_stats", "infer_task", "parse_request", "split_rows", "train"]
