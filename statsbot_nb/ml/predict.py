"""The ``predict`` job: apply a stored model to a table, chunk by chunk, and write the predictions locally.

The model (checksum-verified, see :func:`statsbot_nb.ml.store.load_model`) decides which columns it needs;
the server's ``feature_columns`` are only compared with them. The input is read in chunks so memory stays
bounded, and ``<stem>_predictions.csv`` is written next to the input (input columns + ``prediction``, plus
``proba_<class>`` for classifiers) through an atomic writer, so it appears complete or not at all.

Only a small sample goes back to the server. Unless the user allowed sharing table contents
(``share_data``), ``dataframe_sample`` carries only the prediction columns, not the user's input values.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..context import JobContext
from ..errors import JobError
from ..paths import PathPolicy
from ..strictjson import to_strict_json
from . import store
from .data import AtomicTableWriter, iter_table_chunks, read_columns
from .preprocess import ColumnRoles, coerce_features

log = logging.getLogger("statsbot_nb.predict")

SAMPLE_ROWS = 10
CHUNK_ROWS = 100_000
PREDICTION_COLUMN = "prediction"


def output_path_for(source: Path) -> Path:
    """Where the predictions for ``source`` go: ``<stem>_predictions.csv`` in the same folder."""
    return source.with_name(f"{source.stem}_predictions.csv")


def _total_rows(path: Path) -> int | None:
    """Row count when the format knows it cheaply (Parquet metadata), else None."""
    if path.suffix.lower() != ".parquet":
        return None
    try:
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    except Exception:  # only an estimate for the progress bar
        return None


def predict(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """``predict`` job handler: returns the success ``data`` of PROTOCOL.md (plus ``model_id``, ``notes``)."""
    file_path = params.get("file_path")
    if not isinstance(file_path, str) or not file_path.strip():
        raise JobError("file_path is missing; give the path of the table to predict on.")
    store.validate_model_id(params.get("model_id"))
    ctx.progress(1, "Loading the model", "loading")
    model, encoders, meta = store.load_model(ctx.settings.models_dir, params.get("model_id"))
    model_id = str(meta.get("model_id") or params["model_id"])
    features = feature_columns_of(meta, model_id)
    notes = _compare_features(params.get("feature_columns"), features)

    policy = PathPolicy.from_settings(ctx.settings)
    source = policy.readable(file_path)
    columns = read_columns(source)
    check_features(columns, features, source.name, model_id, "add them to the file")
    output = policy.writable(output_path_for(source))
    predictor = Predictor(model, encoders, meta, features)
    if predictor.replaced(columns):
        notes.append(f"The input's own {', '.join(predictor.replaced(columns))} column(s) are replaced by "
                     "the new predictions in the output file.")
    total = _total_rows(source)
    ctx.progress(5, f"Predicting on {source.name}", "predicting")
    rows = 0
    predictions_sample: list[Any] = []
    sample_frame: pd.DataFrame | None = None
    out_columns: list[str] = []
    with AtomicTableWriter(output) as writer:
        for chunk in iter_table_chunks(source, columns, chunk_rows=CHUNK_ROWS):
            extra = predictor.predict(chunk)
            result = with_predictions(chunk, extra)
            writer.write(result)
            out_columns = [str(c) for c in result.columns]
            if len(predictions_sample) < SAMPLE_ROWS:
                need = SAMPLE_ROWS - len(predictions_sample)
                predictions_sample.extend(extra[PREDICTION_COLUMN].iloc[:need].tolist())
                part = result.iloc[:need] if ctx.settings.share_data else extra.iloc[:need]
                sample_frame = part if sample_frame is None else pd.concat([sample_frame, part])
            rows += len(chunk)
            ctx.progress(_percent(rows, total), f"Predicted {rows:,} rows", "predicting")
        if rows == 0:
            raise JobError(f"{source.name} has no rows to predict on.")
        ctx.progress(97, f"Writing {output.name}", "saving")
    ctx.progress(100, f"Wrote {rows:,} predictions to {output.name}", "saving")
    log.info("Predicted %d rows with %s into %s", rows, model_id, output)
    data: dict[str, Any] = {
        "predictions_sample": predictions_sample[:SAMPLE_ROWS],
        "predictions_count": rows,
        "dataframe_sample": _records(sample_frame),
        "dataframe_rows": rows,
        "dataframe_columns": out_columns,
        "output_file": str(output),
        "model_id": model_id,
    }
    if notes:
        data["notes"] = notes
    return to_strict_json(data)


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


def _percent(rows: int, total: int | None) -> float:
    if total:
        return 5 + 90 * min(1.0, rows / total)
    return 5 + 90 * (1 - math.exp(-rows / 500_000))  # unknown size: creep towards 95 %


def _compare_features(requested: object, features: list[str]) -> list[str]:
    if not isinstance(requested, list) or not requested or list(requested) == features:
        return []
    return [f"The model's own feature columns ({', '.join(features)}) were used instead of the ones sent "
            f"with the job ({', '.join(str(c) for c in requested)})."]


def _records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    if frame is None:
        return []
    clean = frame.astype(object).where(frame.notna(), None)
    return [to_strict_json(rec) for rec in clean.to_dict("records")]


class Predictor:
    """Turns an input chunk into prediction columns for one loaded model (ours or an older worker's).

    Built from what :func:`statsbot_nb.ml.store.load_model` returns; the predict job and the notebook's
    :meth:`statsbot_nb.local.LocalModel.predict` share it, so both apply the stored preprocessing the same way.
    """

    def __init__(self, model: Any, encoders: dict[str, Any], meta: dict[str, Any], features: list[str]) -> None:
        self.model = model
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
                raise JobError(f"Column {col!r} has values the model never saw in training; this older model "
                               "cannot handle them, so retrain it with this worker.") from exc
        return X

    def predict(self, chunk: pd.DataFrame) -> pd.DataFrame:
        """The prediction (in the user's labels) and, for classifiers, one probability column per class."""
        X = self._features(chunk)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                raw = np.asarray(self.model.predict(X))
                proba = None
                if self.classifier and self.labels and hasattr(self.model, "predict_proba"):
                    proba = np.asarray(self.model.predict_proba(X), dtype="float64")
        except JobError:
            raise
        except Exception as exc:
            detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise JobError(f"The model could not predict on this table ({detail}); check that its columns "
                           "hold the same kind of values as the training data.") from exc
        out = pd.DataFrame(index=chunk.index)
        if self.classifier and self.label_encoder is not None:
            out[PREDICTION_COLUMN] = self.label_encoder.inverse_transform(raw.astype("int64").ravel())
        else:
            out[PREDICTION_COLUMN] = raw.ravel() if raw.ndim > 1 and raw.shape[1] == 1 else raw
        if proba is not None and self.labels and proba.ndim == 2 and proba.shape[1] == len(self.labels):
            for i, label in enumerate(self.labels):
                out[f"proba_{label}"] = proba[:, i]
        return out
