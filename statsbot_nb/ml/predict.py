"""Predicting with a stored model: load it once, then turn table chunks into prediction columns.

The model (checksum-verified, see :func:`statsbot_nb.ml.store.load_model`) decides which columns it needs.
Pure apart from reading the model store: data frames in, data frames out. The ``predict`` handler
(:mod:`statsbot_nb.handlers.predict`) and the notebook's :meth:`statsbot_nb.local.LocalModel.predict` share
:func:`load_predictor` and :func:`predict_chunks`, so both apply the stored preprocessing the same way.
The output file's name (:func:`output_path_for`) and the numbers the bot gets (:func:`wire_predictions`)
are decided here too, from the model's metadata.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import JobError, exception_line
from . import store
from .preprocess import ColumnRoles, coerce_features

log = logging.getLogger("statsbot_nb.predict")

SAMPLE_ROWS = 10
CHUNK_ROWS = 100_000
PREDICTION_COLUMN = "prediction"


def _name_part(value: object, fallback: str) -> str:
    """``random_forest`` -> ``RANDOMFOREST``: letters and digits only, so no name can leave the folder."""
    text = "".join(ch for ch in str(value or "").upper() if ch.isascii() and ch.isalnum())[:40]
    return text or fallback


def output_path_for(source: Path, meta: dict[str, Any], job_id: str) -> Path:
    """A new file beside ``source`` for its predictions; an existing file is never chosen.

    Named as today's worker names it, ``predictions_<MODELTYPE>_<TARGET>_<job id>.csv`` (the bot shows
    the name), with ``_2``, ``_3``... added when that name is taken. Without a job id (a notebook call)
    the time stands in for it.
    """
    tag = "".join(ch for ch in job_id if ch.isascii() and (ch.isalnum() or ch in "_-"))[:64]
    if not tag:
        tag = datetime.now().strftime("%Y%m%d_%H%M%S")
    stem = (
        f"predictions_{_name_part(meta.get('model_type'), 'MODEL')}_"
        f"{_name_part(meta.get('target_column'), 'PRED')}_{tag}"
    )
    candidate = source.with_name(f"{stem}.csv")
    n = 1
    while os.path.lexists(candidate):
        n += 1
        candidate = source.with_name(f"{stem}_{n}.csv")
    return candidate


def wire_predictions(extra: pd.DataFrame, labels: list[Any] | None, classifier: bool) -> tuple[list[float], str]:
    """The numbers the bot gets for ``predictions_sample``, and a sentence saying what they mean.

    The bot takes mean/std/min/max/median of them (prediction_handlers.py ``_execute_prediction``), so
    they must be numbers, as today's worker sends: regression values; for a two-class model the
    probability of the second class in sorted order (``predict_proba[:, 1]``, 8 decimals); for more
    classes (where today's worker's column 1 means nothing) the predicted label itself when every label
    is a number, else the predicted class's 0-based position in ``class_labels``. The local file keeps
    the real labels and every class probability.
    """
    values = extra[PREDICTION_COLUMN]
    if not classifier:
        return [float(v) for v in pd.to_numeric(values, errors="coerce")], "predicted values"
    labels = list(labels or [])
    # The meaning names no label: labels can be data the user did not choose to share.
    if len(labels) == 2 and f"proba_{labels[1]}" in extra.columns:
        proba = extra[f"proba_{labels[1]}"].astype("float64").round(8)
        return [float(v) for v in proba], "probability of the second class in sorted order"
    if labels and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in labels):
        return [float(v) for v in values], "predicted class labels"
    position = {str(label): i for i, label in enumerate(labels)}
    return (
        [float(position.get(str(v), -1)) for v in values],
        "position of the predicted class in the model's sorted class labels (0-based)",
    )


def load_predictor(models_dir: Path, model_id: str) -> Predictor:
    """The checksum-verified model ``model_id`` of the store, ready to predict (see :class:`Predictor`)."""
    model, encoders, meta = store.load_model(models_dir, model_id)
    stored_id = str(meta.get("model_id") or model_id)
    return Predictor(model, encoders, meta, feature_columns_of(meta, stored_id), model_id=stored_id)


def predict_chunks(predictor: Predictor, chunks: Iterable[pd.DataFrame]) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """``(chunk, prediction columns)`` for each non-empty input chunk, in order."""
    for chunk in chunks:
        if len(chunk):
            yield chunk, predictor.predict(chunk)


def feature_columns_of(meta: dict[str, Any], model_id: str) -> list[str]:
    """The feature columns a model records (the ones it needs), or a :class:`JobError` when it has none."""
    features = meta.get("feature_columns")
    if not isinstance(features, list) or not features or not all(isinstance(f, str) for f in features):
        raise JobError(f"Model {model_id} does not record its feature columns; train it again.")
    return features


def check_features(columns: list[str], features: list[str], where: str, model_id: str, fix: str) -> None:
    """Raise a :class:`JobError` naming every feature column that ``where`` (a file or table) lacks."""
    present = set(columns)
    missing = [c for c in features if c not in present]
    if missing:
        raise JobError(
            f"{where} lacks the column(s) {', '.join(repr(c) for c in missing)} that model {model_id} "
            f"needs; {fix} or choose another model."
        )


def with_predictions(chunk: pd.DataFrame, extra: pd.DataFrame) -> pd.DataFrame:
    """``chunk`` followed by the prediction columns (an input column of the same name is replaced)."""
    return pd.concat([chunk.drop(columns=list(extra.columns), errors="ignore"), extra], axis=1)


class Predictor:
    """Turns an input chunk into prediction columns for one loaded model (ours or an older worker's).

    Built by :func:`load_predictor` from what :func:`statsbot_nb.ml.store.load_model` returns.
    """

    def __init__(
        self, model: Any, encoders: dict[str, Any], meta: dict[str, Any], features: list[str], model_id: str = ""
    ) -> None:
        self.model = model
        self.meta = meta
        self.model_id = model_id or str(meta.get("model_id") or "")
        self.features = features
        self.classifier = meta.get("task_type") == "classification"
        target = meta.get("target_column")
        self.label_encoder = encoders.get(target) if isinstance(target, str) else None
        self.ours = isinstance(meta.get("format_version"), int)
        self.roles = ColumnRoles.from_metadata(meta.get("preprocessing"), features) if self.ours else None
        # Older workers stored LabelEncoders for feature columns and applied them before predicting.
        self.feature_encoders = {} if self.ours else {k: v for k, v in encoders.items() if k in features}
        labels = meta.get("class_labels")
        self.labels = labels if isinstance(labels, list) else None
        classes = self.label_encoder.classes_ if self.label_encoder is not None else None
        if classes is None and self.classifier:
            classes = getattr(model, "classes_", None)  # an older worker's bare classifier
        if self.labels is None and classes is not None:
            self.labels = [v.item() if hasattr(v, "item") else v for v in classes]

    def output_columns(self) -> list[str]:
        cols = [PREDICTION_COLUMN]
        if self.classifier and self.labels and hasattr(self.model, "predict_proba"):
            cols += [f"proba_{label}" for label in self.labels]
        return cols

    def replaced(self, input_columns: list[str]) -> list[str]:
        return [c for c in self.output_columns() if c in input_columns]

    def _features(self, chunk: pd.DataFrame) -> pd.DataFrame:
        X = chunk[self.features]
        if self.roles is not None:
            return coerce_features(X, self.roles)
        X = X.copy()
        for col, enc in self.feature_encoders.items():
            try:
                X[col] = enc.transform(X[col].astype(str))
            except ValueError as exc:
                raise JobError(
                    f"Column {col!r} has values the model never saw in training; this older model "
                    "cannot handle them, so retrain it with this worker."
                ) from exc
        return X

    def predict(self, chunk: pd.DataFrame) -> pd.DataFrame:
        """The prediction (in the user's labels) and, for classifiers, one probability column per class."""
        X = self._features(chunk)
        try:
            with warnings.catch_warnings(), _one_thread_for_few_rows(self.model, len(X)):
                warnings.simplefilter("ignore")
                final, Xt = _preprocessed(self.model, X)
                raw = np.asarray(final.predict(Xt))
                proba = None
                if self.classifier and self.labels and hasattr(final, "predict_proba"):
                    proba = np.asarray(final.predict_proba(Xt), dtype="float64")
        except JobError:
            raise
        except Exception as exc:
            detail = exception_line(exc, 200)
            raise JobError(
                f"The model could not predict on this table ({detail}); check that its columns "
                "hold the same kind of values as the training data."
            ) from exc
        out = pd.DataFrame(index=chunk.index)
        if self.classifier and self.label_encoder is not None:
            out[PREDICTION_COLUMN] = self.label_encoder.inverse_transform(raw.astype("int64").ravel())
        else:
            out[PREDICTION_COLUMN] = raw.ravel() if raw.ndim > 1 and raw.shape[1] == 1 else raw
        if proba is not None and self.labels and proba.ndim == 2 and proba.shape[1] == len(self.labels):
            for i, label in enumerate(self.labels):
                out[f"proba_{label}"] = proba[:, i]
        return out


def _preprocessed(model: Any, X: pd.DataFrame) -> tuple[Any, Any]:
    """The estimator that predicts and its input: for a scikit-learn ``Pipeline``, its last step and ``X``
    through the steps before it, once (``Pipeline.predict`` and ``predict_proba`` each ran every step again,
    a quarter of a small prediction's time); any other model and ``X`` as they are."""
    steps = getattr(model, "steps", None)
    if not isinstance(steps, list) or len(steps) < 2 or not hasattr(model, "__getitem__"):
        return model, X
    return model[-1], model[:-1].transform(X)


#: Below this many rows a forest predicts on one thread: starting joblib's threads cost 30 ms of a 40-row
#: prediction, more than the trees take. The answer is the same either way.
FEW_ROWS = 2000


@contextlib.contextmanager
def _one_thread_for_few_rows(model: Any, rows: int) -> Iterator[None]:
    """Run the model's final estimator with ``n_jobs=1`` for a small chunk, then restore its setting."""
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    params = final.get_params(deep=False) if rows < FEW_ROWS and hasattr(final, "get_params") else {}
    if params.get("n_jobs") in (None, 1) or "n_jobs" not in params:
        yield
        return
    final.set_params(n_jobs=1)
    try:
        yield
    finally:
        final.set_params(n_jobs=params["n_jobs"])
