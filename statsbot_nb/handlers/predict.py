"""The ``predict`` handler: apply a stored model to an allowed table, chunk by chunk, and write locally.

The server's ``feature_columns`` are only compared with the ones the model records. The input is read in
chunks so memory stays bounded, and a new ``predictions_<MODELTYPE>_<TARGET>_<job id>.csv`` is written
next to the input (input columns + ``prediction`` in the user's labels, plus ``proba_<class>`` for
classifiers) through an atomic writer, so it appears complete or not at all and never replaces a file.

What goes back to the server depends on the privacy level (:mod:`statsbot_nb.privacy`): at ``standard``
up to ten numbers (``wire_predictions``); at ``strict`` none (an empty ``predictions_sample``, which the
bot reads as no predictions); only at ``share`` the first ten input rows in ``dataframe_sample`` (else
null: no input value leaves).

With a Dask scheduler (``JobSettings.dask_scheduler``) a CSV/TSV/Parquet input past one partition predicts
on the cluster instead (:mod:`statsbot_nb.cluster.predict`), after the same file policy; the result has
the same keys and a note saying where it ran. ``output_layout: "per_partition"`` (our addition; today's
bot never sends it) asks for a folder of one file per partition there.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..cluster.connect import check_cluster_path, is_local_address
from ..cluster.predict import ONE_FILE, PER_PARTITION, output_layout, predict_on_cluster, why_not_predict_on_cluster
from ..context import JobContext, JobSettings
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
    output_layout: str = ONE_FILE  # on a Dask cluster: one file, or one per partition (our addition)

    @classmethod
    def parse(cls, params: Params) -> PredictRequest:
        """Check ``file_path``, ``model_id`` and ``output_layout``; ``feature_columns`` is kept only if it is a list."""
        file_path = required_text(
            params, "file_path", "file_path is missing; give the path of the table to predict on."
        )
        model_id = store.validate_model_id(params.get("model_id"))
        requested = params.get("feature_columns")
        features = tuple(str(c) for c in requested) if isinstance(requested, list) and requested else None
        return cls(file_path, model_id, features, output_layout(params.get("output_layout")))


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
        if predictor.replaced(columns):
            notes.append(
                f"The input's own {', '.join(predictor.replaced(columns))} column(s) are replaced by "
                "the new predictions in the output file."
            )
        if _on_cluster(ctx.settings, source, predictor, req.output_layout, notes):
            return _predict_on_cluster(ctx, predictor, source, columns, output, req.output_layout, notes)
        return _predict_into(ctx, predictor, source, columns, output, notes)


def _on_cluster(
    settings: JobSettings, source: OpenedTable, predictor: Predictor, layout: str, notes: list[str]
) -> bool:
    """Whether this prediction runs on the Dask cluster; a note says why not when there is one (or was asked)."""
    one_file = " The predictions are in one file." if layout == PER_PARTITION else ""
    if not settings.dask_scheduler:
        if layout == PER_PARTITION:
            notes.append(
                "output_layout 'per_partition' applies to predictions on a Dask cluster, and this worker has "
                "none (--dask-scheduler, or statsbot_nb.use_dask in a notebook)." + one_file
            )
        return False
    why_not = why_not_predict_on_cluster(source.path, source.stat.st_size, predictor.meta.get("model_type"), layout)
    if why_not:
        notes.append(f"Predicted on this machine, not on the Dask cluster: {why_not}{one_file}")
        return False
    check_cluster_path(source.path, settings.dask_scheduler, settings.dask_local, settings.dask_shared_dirs)
    return True


def _predict_on_cluster(
    ctx: JobContext,
    predictor: Predictor,
    source: OpenedTable,
    columns: list[str],
    output: OutputFolder,
    layout: str,
    notes: list[str],
) -> dict[str, Any]:
    """Predict on the Dask cluster (:mod:`statsbot_nb.cluster.predict`); the result is the local one's."""
    settings = ctx.settings
    address = str(settings.dask_scheduler)
    ctx.progress(5, f"Predicting on {source.name} on the Dask cluster", "predicting")
    done = predict_on_cluster(
        source,
        columns,
        predictor,
        output,
        ctx.progress,
        address=address,
        layout=layout,
        local=settings.dask_local or is_local_address(address),
        shared_dirs=settings.dask_shared_dirs,
        timeout=settings.dask_timeout,
    )
    ctx.progress(100, f"Wrote {done.rows:,} predictions to {done.output.name}", "saving")
    log.info("Predicted %d rows with %s on the Dask cluster into %s", done.rows, predictor.model_id, done.output)
    return _result(
        ctx, predictor, done.rows, (done.head_input, done.head_extra), columns, done.output, notes + done.notes
    )


def _predict_into(
    ctx: JobContext,
    predictor: Predictor,
    source: OpenedTable,
    columns: list[str],
    output: OutputFolder,
    notes: list[str],
) -> dict[str, Any]:
    """Predict chunk by chunk from the opened ``source`` into a new file in the opened output folder."""
    total = _total_rows(source)
    ctx.progress(5, f"Predicting on {source.name}", "predicting")
    rows = 0
    heads: list[tuple[pd.DataFrame, pd.DataFrame]] = []
    kept = 0
    chunks = iter_table_chunks(source, columns, chunk_rows=ml_predict.CHUNK_ROWS)
    with AtomicTableWriter(output, replace="never") as writer:
        for chunk, extra in ml_predict.predict_chunks(predictor, chunks):
            writer.write(with_predictions(chunk, extra))
            if kept < SAMPLE_ROWS:
                heads.append((chunk.iloc[: SAMPLE_ROWS - kept], extra.iloc[: SAMPLE_ROWS - kept]))
                kept += len(heads[-1][0])
            rows += len(chunk)
            ctx.progress(_percent(rows, total), f"Predicted {rows:,} rows", "predicting")
        if rows == 0:
            raise JobError(f"{source.name} has no rows to predict on.")
        ctx.progress(97, f"Writing {output.name}", "saving")
    ctx.progress(100, f"Wrote {rows:,} predictions to {output.name}", "saving")
    log.info("Predicted %d rows with %s into %s", rows, predictor.model_id, output)
    head = (pd.concat([h[0] for h in heads]), pd.concat([h[1] for h in heads]))
    return _result(ctx, predictor, rows, head, columns, output.path, notes)


def _result(
    ctx: JobContext,
    predictor: Predictor,
    rows: int,
    head: tuple[pd.DataFrame, pd.DataFrame],
    columns: list[str],
    output: Path,
    notes: list[str],
) -> dict[str, Any]:
    """The job's ``data`` from the first rows of the input and of the predictions (``head``), as the
    privacy level allows; the same whether the prediction ran here or on a cluster."""
    level = ctx.settings.privacy
    head_input, head_extra = head
    numbers, meaning = wire_predictions(head_extra.iloc[:SAMPLE_ROWS], predictor.labels, predictor.classifier)
    sent, meaning = shape_predictions(numbers[:SAMPLE_ROWS], meaning, level)
    data: dict[str, Any] = {
        "predictions_sample": sent,
        "predictions_count": rows,
        # Without sharing: null, and the bot builds its preview from empty feature cells
        # (prediction_handlers.py ``_execute_prediction``); no value of the user's table leaves.
        "dataframe_sample": _records(head_input.iloc[:SAMPLE_ROWS]) if shares_rows(level) else None,
        "dataframe_rows": rows,
        "dataframe_columns": shape_columns(columns, level),
        "output_file": str(output),
        "model_id": predictor.model_id,
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
