"""Training: fit a model on a data frame with live progress, score it, and save it in the store.

Pure apart from the model store: a data frame and typed :class:`TrainOptions` in, a :class:`TrainedModel`
out; the ``train`` handler (:mod:`statsbot_nb.handlers.train`) parses the wire request, applies the file
policy and reads the table. The stages and the share of the progress bar each gets: loading (0-10 %,
partly the handler's), preprocessing (10-15 %), fitting (15-85 %, with progress reported from inside the
fit, see :mod:`statsbot_nb.ml.fitting`), evaluating (85-95 %) and saving (95-100 %). Every failure a person
can fix is a :class:`JobError` sentence.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import JobError
from . import estimators, evaluate, preprocess, store
from .constants import SEED, Progress
from .curves import CurvePoint, CurveRecorder, learns_in_rounds
from .fitting import fit_with_progress, sample_rows
from .paramcheck import first_line

log = logging.getLogger("statsbot_nb.train")

MIN_ROWS = 5
CLASSIFICATION_MAX_DISTINCT = 10


@dataclass(frozen=True)
class TrainOptions:
    """What to fit: the columns, the model type, the task (None: decide from the data), the split."""

    target_column: str
    feature_columns: list[str]
    model_type: str
    task_type: str | None  # None: decide from the model type or the target ("neural_network")
    hyperparameters: dict[str, Any] | None = None
    test_size: float = 0.2


@dataclass(frozen=True)
class TrainedModel:
    """A saved model and what the bot is told about it."""

    model_id: str
    metrics: dict[str, Any]
    dataset_stats: dict[str, Any]
    model_info: dict[str, Any]
    training_time: float
    display_name: str
    notes: list[str] = field(default_factory=list)


def early_plan(options: TrainOptions) -> estimators.EstimatorPlan | None:
    """The estimator, built before any data is read when the task is already known (so bad
    hyperparameters fail fast); None when the task must be inferred from the target."""
    task = options.task_type or estimators.task_from_model_type(options.model_type)
    return estimators.build_estimator(options.model_type, str(task), options.hyperparameters) if task else None


def infer_task(model_type: str, target: pd.Series) -> str:
    """Regression or classification for ``neural_network`` jobs: the model type's name, else the target."""
    implied = estimators.task_from_model_type(model_type)
    if implied:
        return implied
    numeric = pd.api.types.is_numeric_dtype(target) and not pd.api.types.is_bool_dtype(target)
    if numeric and target.nunique(dropna=True) > CLASSIFICATION_MAX_DISTINCT:
        return estimators.REGRESSION
    return estimators.CLASSIFICATION


def train_model(
    frame: pd.DataFrame,
    options: TrainOptions,
    models_dir: Path,
    progress: Progress,
    source_name: str,
    custom_name: str | None = None,
    notes: list[str] | None = None,
    plan: estimators.EstimatorPlan | None = None,
    curve: CurvePoint | None = None,
) -> TrainedModel:
    """Fit, score and save a model on ``frame`` (the feature and target columns of ``source_name``).

    A model that learns in rounds keeps its learning curve in ``metadata["learning_curve"]``; ``curve``, if
    given, also receives each round's metrics as they come (the job's live chart).
    """
    started = time.monotonic()
    total_rows = len(frame)
    frame, dropped = preprocess.drop_missing_target(frame, options.target_column)
    progress(10, f"Read {total_rows:,} rows", "loading")
    if len(frame) < MIN_ROWS:
        raise JobError(
            f"Only {len(frame)} row(s) of {source_name} have a value in {options.target_column!r}; "
            f"training needs at least {MIN_ROWS}."
        )

    task = options.task_type or infer_task(options.model_type, frame[options.target_column])
    if plan is None:
        plan = estimators.build_estimator(options.model_type, task, options.hyperparameters)
    notes = list(notes or []) + plan.notes
    result = _fit_and_score(options, plan, frame, dropped, notes, progress, curve)
    extra = {"learning_curve": result["learning_curve"]} if result.get("learning_curve") else None
    return save_trained(options, plan, result, models_dir, progress, source_name, custom_name, notes, started, extra)


def save_trained(
    options: TrainOptions,
    plan: estimators.EstimatorPlan,
    result: dict[str, Any],
    models_dir: Path,
    progress: Progress,
    source_name: str,
    custom_name: str | None,
    notes: list[str],
    started: float,
    extra: dict[str, Any] | None = None,
) -> TrainedModel:
    """Save a fitted ``result`` (the dict :func:`_fit_and_score` returns) with its metadata, in one place
    for local and cluster training (``extra`` adds metadata keys, e.g. ``trained_on``)."""
    task = plan.task_type
    progress(95, "Saving the model", "saving")
    created = datetime.now().astimezone()
    model_id = store.new_model_id(models_dir, options.model_type, task, created)
    display = custom_name or (
        f"{options.model_type.replace('_', ' ').title()} ({len(options.feature_columns)} features)"
    )
    model_info = {
        "model_type": options.model_type,
        "task_type": task,
        "created_at": created.isoformat(timespec="milliseconds"),  # orders models made in one second
        "target_column": options.target_column,
        "feature_columns": options.feature_columns,
    }
    metadata = {
        **model_info,
        "metrics": result["metrics"],
        "custom_name": custom_name,
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
        "split": result.get("split")
        or {"test_size": options.test_size, "seed": SEED, "stratified": result["stratified"]},
        "source_file": source_name,
        "library": plan.library,
        "libraries": {k: v for k, v in estimators.installed_libraries().items() if v},
        "worker_version": _worker_version(),
        "notes": notes,
        **(extra or {}),
    }
    target = options.target_column
    encoders = {target: result["label_encoder"]} if result["label_encoder"] is not None else None
    store.save_model(
        models_dir,
        model_id,
        result["pipeline"],
        metadata,
        artefacts=result["artefacts"],
        encoders=encoders,
    )
    progress(100, f"Saved {model_id}", "saving")
    log.info("Trained %s in %.1fs", model_id, time.monotonic() - started)
    return TrainedModel(
        model_id=model_id,
        metrics=result["metrics"],
        dataset_stats=result["dataset_stats"],
        model_info=model_info,
        training_time=result["training_time"],
        display_name=display,
        notes=notes,
    )


def _fit_and_score(
    options: TrainOptions,
    plan: estimators.EstimatorPlan,
    frame: pd.DataFrame,
    dropped: int,
    notes: list[str],
    progress: Progress,
    curve: CurvePoint | None = None,
) -> dict[str, Any]:
    """Split, preprocess, fit with progress and evaluate; everything :func:`train_model` saves."""
    from sklearn.pipeline import Pipeline

    classify = plan.task_type == estimators.CLASSIFICATION
    progress(11, "Preparing features", "preprocessing")
    roles = preprocess.split_roles(frame, options.feature_columns)
    X = preprocess.coerce_features(frame[options.feature_columns], roles)
    label_encoder = None
    labels: list[Any] | None = None
    if classify:
        y, label_encoder = preprocess.encode_labels(frame[options.target_column], options.target_column)
        labels = preprocess.class_labels(label_encoder)
    else:
        y = preprocess.regression_target(frame[options.target_column], options.target_column)
    train_idx, test_idx, stratified = split_rows(y, options.test_size, classify, notes)
    X_train, X_test = X.iloc[train_idx], X.iloc[test_idx]
    y_train, y_test = y[train_idx], y[test_idx]
    del X  # the split holds copies; the whole table need not be held a second time while fitting

    fit_started = time.monotonic()
    preprocessor = preprocess.build_preprocessor(roles, plan.scale_numeric)
    try:
        with preprocess.fast_median_imputation():
            Xt_train = preprocessor.fit_transform(X_train)
    except ValueError as exc:
        raise JobError(f"The feature columns could not be prepared for training: {first_line(exc)}") from exc
    if Xt_train.shape[1] == 0:
        raise JobError("The feature columns hold no usable values (every value is missing); choose other columns.")
    progress(15, f"Fitting {options.model_type} on {len(train_idx):,} rows", "fitting")

    def report(fraction: float, message: str) -> None:
        progress(15 + 70 * max(0.0, min(1.0, fraction)), message, "fitting")

    recorder, validation, held_time = None, None, 0.0
    if learns_in_rounds(options.model_type):  # a sample of the held-out rows, scored after every round
        held_started = time.monotonic()
        keep = sample_rows(len(test_idx))
        X_held, y_held = (X_test, y_test) if keep is None else (X_test.iloc[keep], y_test[keep])
        validation, recorder = (preprocessor.transform(X_held), y_held), CurveRecorder(curve, held_total=len(test_idx))
        held_time = time.monotonic() - held_started
    model = fit_with_progress(plan, Xt_train, y_train, report, validation=validation, recorder=recorder)
    training_time = round(time.monotonic() - fit_started - held_time, 3)
    pipeline = Pipeline([("preprocess", preprocessor), ("model", model)])

    progress(86, "Evaluating on the held-out rows", "evaluating")
    Xt_test = preprocessor.transform(X_test)
    try:
        y_pred = np.asarray(model.predict(Xt_test))
    except Exception as exc:  # a library refusing an option only when predicting (xgboost's `missing`)
        raise JobError(
            f"The {options.model_type} model was fitted but could not score the held-out rows: "
            f"{first_line(exc)} Check its hyperparameters."
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
    progress(90, "Measuring feature importance", "evaluating")
    sources = preprocess.output_feature_sources(preprocessor, roles)
    importances, method = evaluate.feature_importances(
        model, Xt_test, y_test, sources, options.feature_columns, "accuracy" if classify else "r2"
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
            roles, plan.scale_numeric, dropped, options.target_column, labels, options.model_type
        ),
        "dataset_stats": dataset_stats(y, labels, len(train_idx), len(test_idx), len(options.feature_columns), dropped),
        "learning_curve": recorder.curve() if recorder is not None else None,
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


__all__ = [
    "TrainOptions",
    "TrainedModel",
    "dataset_stats",
    "early_plan",
    "infer_task",
    "save_trained",
    "split_rows",
    "train_model",
]
