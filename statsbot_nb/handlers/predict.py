"""The ``predict`` handler: apply a stored model to an allowed table, chunk by chunk, and write locally.

The server's ``feature_columns`` are only compared with the ones the model records. The input is read in
chunks so memory stays bounded, and a new ``predictions_<MODELTYPE>_<TARGET>_<job id>.csv`` is written
next to the input (input columns + ``prediction`` in the user's labels, plus ``proba_<class>`` for
classifiers) through an atomic writer, so it appears complete or not at all and never replaces a file.

What goes back to the server depends on the privacy level (:mod:`statsbot_nb.privacy`): at ``standard``
up to ten numbers (``wire_predictions``); at ``strict`` none (an empty ``predictions_sample``, which the
bot reads as no predictions); only at ``share`` the first ten input rows in ``dataframe_sample`` (else
null: no input value leaves).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..context import JobContext
from ..errors import JobError
from ..ml import predict as ml_predict
from ..ml import store
from ..ml.data import AtomicTableWriter, iter_table_chunks, read_columns
from ..ml.predict import SAMPLE_ROWS, Predictor, check_features, output_path_for, wire_predictions, with_predictions
from ..paths import PathPolicy
from ..privacy import shape_columns, shape_predictions, shares_rows
from ..safefiles import OpenedTable, OutputFolder
from ..strictjson import to_strict_json
from .params import Params, policy, required_text

log = logging.getLogger("statsbot_nb.predict")


@dataclass(frozen=True)
class PredictRequest:
    """The validated parameters of a ``predict`` job."""

    file_path: str
    model_id: str
    feature_columns: tuple[str, ...] | None  # what the server believes the model needs (compared only)

    @classmethod
    def parse(cls, params: Params) -> PredictRequest:
        """Check ``file_path`` and ``model_id``; ``feature_columns`` is kept only if it is a list."""
        file_path = required_text(
            params, "file_path", "file_path is missing; give the path of the table to predict on."
        )
        model_id = store.validate_model_id(params.get("model_id"))
        requested = params.get("feature_columns")
        features = tuple(str(c) for c in requested) if isinstance(requested, list) and requested else None
        return cls(file_path, model_id, features)


def open_source(
    files: PathPolicy, raw: str | os.PathLike[str], predictor: Predictor, fix: str
) -> tuple[OpenedTable, list[str]]:
    """The allowed input table (opened once; the caller closes it) and its columns, refusing it when it
    lacks a feature the model needs.

    Shared by the ``predict`` job and the notebook's ``LocalModel.predict``.
    """
    source = files.open_readable(raw)
    try:
        columns = read_columns(source)
        check_features(columns, predictor.features, source.name, predictor.model_id, fix)
    except BaseException:
        source.close()
        raise
    return source, columns


def predict(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """``predict`` job handler: returns the success ``data`` of PROTOCOL.md (plus ``model_id``, ``notes``)."""
    req = PredictRequest.parse(params)
    ctx.limit_threads()
    ctx.progress(1, "Loading the model", "loading")
    predictor = ml_predict.load_predictor(ctx.settings.models_dir, req.model_id)
    notes = _compare_features(req.feature_columns, predictor.features)

    files = policy(ctx.settings)
    source, columns = open_source(files, req.file_path, predictor, "add them to the file")
    with source, files.open_output(output_path_for(source.path, predictor.meta, ctx.job_id)) as output:
        data = _predict_into(ctx, predictor, source, columns, output, notes)
    return data


def _predict_into(
    ctx: JobContext,
    predictor: Predictor,
    source: OpenedTable,
    columns: list[str],
    output: OutputFolder,
    notes: list[str],
) -> dict[str, Any]:
    """Predict chunk by chunk from the opened ``source`` into a new file in the opened output folder."""
    model_id = predictor.model_id
    if predictor.replaced(columns):
        notes.append(
            f"The input's own {', '.join(predictor.replaced(columns))} column(s) are replaced by "
            "the new predictions in the output file."
        )
    total = _total_rows(source)
    ctx.progress(5, f"Predicting on {source.name}", "predicting")
    rows = 0
    level = ctx.settings.privacy
    share_rows = shares_rows(level)
    predictions_sample: list[float] = []
    meaning = ""
    sample_frame: pd.DataFrame | None = None
    chunks = iter_table_chunks(source, columns, chunk_rows=ml_predict.CHUNK_ROWS)
    with AtomicTableWriter(output, replace="never") as writer:
        for chunk, extra in ml_predict.predict_chunks(predictor, chunks):
            writer.write(with_predictions(chunk, extra))
            if len(predictions_sample) < SAMPLE_ROWS:
                need = SAMPLE_ROWS - len(predictions_sample)
                numbers, meaning = wire_predictions(extra.iloc[:need], predictor.labels, predictor.classifier)
                predictions_sample.extend(numbers)
                if share_rows:  # the input rows, as today's worker sends them
                    part = chunk.iloc[:need]
                    sample_frame = part if sample_frame is None else pd.concat([sample_frame, part])
            rows += len(chunk)
            ctx.progress(_percent(rows, total), f"Predicted {rows:,} rows", "predicting")
        if rows == 0:
            raise JobError(f"{source.name} has no rows to predict on.")
        ctx.progress(97, f"Writing {output.name}", "saving")
    ctx.progress(100, f"Wrote {rows:,} predictions to {output.name}", "saving")
    log.info("Predicted %d rows with %s into %s", rows, model_id, output)
    sent, meaning = shape_predictions(predictions_sample[:SAMPLE_ROWS], meaning, level)
    data: dict[str, Any] = {
        "predictions_sample": sent,
        "predictions_count": rows,
        # Without sharing: null, and the bot builds its preview from empty feature cells
        # (prediction_handlers.py ``_execute_prediction``); no value of the user's table leaves.
        "dataframe_sample": _records(sample_frame) if share_rows else None,
        "dataframe_rows": rows,
        "dataframe_columns": shape_columns(columns, level),
        "output_file": str(output.path),
        "model_id": model_id,
        "predictions_meaning": meaning,
    }
    if notes:
        data["notes"] = notes
    return to_strict_json(data)


def _compare_features(requested: tuple[str, ...] | None, features: list[str]) -> list[str]:
    if not requested or list(requested) == features:
        return []
    return [
        f"The model's own feature columns ({', '.join(features)}) were used instead of the ones sent "
        f"with the job ({', '.join(requested)})."
    ]


def _records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    if frame is None:
        return []
    clean = frame.astype(object).where(frame.notna(), None)
    return [to_strict_json(rec) for rec in clean.to_dict("records")]


def _total_rows(source: OpenedTable) -> int | None:
    """Row count when the format knows it cheaply (Parquet metadata), else None."""
    if source.suffix != ".parquet":
        return None
    try:
        import pyarrow.parquet as pq

        with source.open() as fh:
            return int(pq.ParquetFile(fh).metadata.num_rows)
    except Exception:  # only an estimate for the progress bar
        return None


def _percent(rows: int, total: int | None) -> float:
    if total:
        return 5 + 90 * min(1.0, rows / total)
    return 5 + 90 * (1 - math.exp(-rows / 500_000))  # unknown size: creep towards 95 %
