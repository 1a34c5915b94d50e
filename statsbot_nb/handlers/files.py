"""Handlers for the file actions: ``file_info``, ``load_data``, ``save_file`` and ``join``.

Each parses a typed request once, sends every path through the file policy, reads and writes the tables
(through :mod:`statsbot_nb.ml.data`), and leaves combining tables to the pure :mod:`statsbot_nb.ml.combine`.
Table contents leave the machine only through ``load_data``, and only at privacy level ``share``; column
names the worker derived from labels (``proba_<label>``) are numbered at ``strict``
(:func:`statsbot_nb.privacy.shape_columns`).

``join`` writes to ``output_path`` or, by default, to ``<first input stem>_joined.<ext>`` next to the first
input (same format as that input; Excel inputs give CSV), atomically. Every file is opened once by the
policy and read or written only through that handle. An output replaces an existing file only if the
worker wrote it and nobody changed it since, and never a read-only one. See :mod:`statsbot_nb.ml.combine`
for what each operation does.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..context import JobContext
from ..errors import JobError
from ..ml.combine import INFO_COLUMNS, KEY_OPERATIONS, OPERATIONS, combine, filter_inputs
from ..ml.data import check_columns, iter_table_chunks, read_columns, read_table, write_table_atomic
from ..ml.filters import Filter, parse_filters
from ..paths import MissingFile
from ..privacy import shape_columns, shares_rows
from ..safefiles import OpenedTable, OutputFolder
from ..strictjson import EncodedList, encode, to_strict_json
from .params import Params, column_names, optional_text, policy, required_text

log = logging.getLogger("statsbot_nb.files")

LOAD_DATA_MAX_ROWS = 10_000
MAX_JOIN_FILES = 20
Records = list[dict[str, Any]]


# -- requests ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileRequest:
    """``file_info`` and ``load_data``: the table to look at."""

    file_path: str

    @classmethod
    def parse(cls, params: Params) -> FileRequest:
        """Check ``file_path``."""
        return cls(required_text(params, "file_path", "'file_path' must be the path of a table file."))


@dataclass(frozen=True)
class SaveRequest:
    """``save_file``: where to write, and the rows to write (checked cell by cell)."""

    file_path: str
    records: Records

    @classmethod
    def parse(cls, params: Params) -> SaveRequest:
        """Check ``file_path`` and ``dataframe`` (a non-empty list of row objects with plain cells)."""
        path = required_text(params, "file_path", "'file_path' must be the path of the table file to write.")
        return cls(path, _checked_records(params.get("dataframe")))


@dataclass(frozen=True)
class JoinRequest:
    """``join``: the operation, its inputs (two or more), key columns, filters and optional output."""

    operation: str
    file_paths: tuple[str, ...]
    key_columns: tuple[str, ...]  # empty: the operation does not use keys, or merge on shared columns
    filters: tuple[Filter, ...]
    output_path: str | None

    @classmethod
    def parse(cls, params: Params) -> JoinRequest:
        """Check every ``join`` parameter (filters included) before any file is touched."""
        operation = params.get("operation")
        if operation not in OPERATIONS:
            raise JobError(f"'operation' must be one of {', '.join(OPERATIONS)}, not {operation!r}.")
        file_paths = params.get("file_paths")
        if (
            not isinstance(file_paths, (list, tuple))
            or len(file_paths) < 2
            or not all(isinstance(p, str) and p.strip() for p in file_paths)
        ):
            raise JobError("'file_paths' must be a list of at least two file paths.")
        if len(file_paths) > MAX_JOIN_FILES:
            raise JobError(
                f"'file_paths' lists {len(file_paths)} files; at most {MAX_JOIN_FILES} can be joined at once."
            )
        keys: list[str] = []  # cross_join, concat and union ignore key_columns, as today's worker does
        if operation in KEY_OPERATIONS and (operation != "merge" or params.get("key_columns")):
            keys = column_names(params, "key_columns")  # merge without keys: the shared columns, as today
        parsed = parse_filters(params.get("filters") or None)
        out = optional_text(
            params, "output_path", "'output_path' must be the path of the table file to write, or left out."
        )
        return cls(str(operation), tuple(file_paths), tuple(keys), tuple(parsed), out)


def _checked_records(records: object) -> Records:
    if isinstance(records, list) and not records:
        raise JobError(
            "The server sent no rows to save. If these were predictions: at privacy level strict this worker "
            "sends no predictions to the server, so it has none to save; the predictions file the predict job "
            "wrote on this machine (its output_file) has them all."
        )
    if not isinstance(records, list):
        raise JobError('\'dataframe\' must be a non-empty list of row objects like [{"a": 1, "b": "x"}].')
    for i, row in enumerate(records):
        if not isinstance(row, dict):
            raise JobError(f"'dataframe' must be a list of row objects; item {i} is a {type(row).__name__}.")
        for key, value in row.items():
            if not isinstance(key, str):
                raise JobError(f"'dataframe' row {i} has a non-text column name {key!r}.")
            if value is not None and not isinstance(value, (str, int, float, bool)):
                raise JobError(
                    f"'dataframe' row {i}, column {key!r} holds a {type(value).__name__}; "
                    "cells must be numbers, text, true/false or null."
                )
    return records


def dataframe_records(df: pd.DataFrame) -> Records:
    """``df`` as a list of row objects that survive strict JSON encoding."""
    names = [str(c) for c in df.columns]
    columns = [[to_strict_json(v) for v in df.iloc[:, i].tolist()] for i in range(df.shape[1])]
    return (
        [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]
        if columns
        else [{} for _ in range(len(df))]
    )


def _format(path: Path) -> str:
    return path.suffix.lower().lstrip(".")


# -- handlers ------------------------------------------------------------------------------------------


def file_info(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Size and columns of a table; ``exists: false`` for an allowed path with no file."""
    req = FileRequest.parse(params)
    try:
        table = policy(ctx.settings).open_readable(req.file_path)
    except MissingFile as missing:
        return {"exists": False, "size_bytes": 0, "size_mb": 0.0, "file_path": str(missing.path)}
    with table:
        return _file_info(table, ctx.settings.privacy)


def _file_info(table: OpenedTable, privacy: str) -> dict[str, Any]:
    path, size = table.path, table.stat.st_size
    data: dict[str, Any] = {
        "exists": True,
        "size_bytes": size,
        "size_mb": round(size / (1024 * 1024), 2),
        "file_path": str(path),
        "format": _format(path),
    }
    try:
        columns = read_columns(table)
        data["columns"] = shape_columns(columns[:INFO_COLUMNS], privacy)
        data["column_count"] = len(columns)
    except JobError as exc:
        data["columns_error"] = str(exc)
    return data


def load_data(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Send a table's first rows to the server, only if the user turned data sharing on."""
    if not shares_rows(ctx.settings.privacy):
        raise JobError(
            f"Sending table contents to the server is turned off on this worker (privacy "
            f"{ctx.settings.privacy}); data stays on this machine. Choose privacy 'share' "
            "(`--privacy share`, or the panel's Privacy menu) if you want the bot to see the contents of your files."
        )
    req = FileRequest.parse(params)
    with policy(ctx.settings).open_readable(req.file_path) as table:
        path = table.path
        ctx.progress(10, f"Reading {path.name}", "reading")
        chunks = iter_table_chunks(table, None, chunk_rows=LOAD_DATA_MAX_ROWS + 1)
        try:
            chunk = next(chunks, None)
        finally:
            chunks.close()  # stop reading: only the first rows are sent
        if chunk is None:
            chunk = pd.DataFrame(columns=read_columns(table))
    truncated = len(chunk) > LOAD_DATA_MAX_ROWS
    chunk = chunk.iloc[:LOAD_DATA_MAX_ROWS]
    log.info("load_data: sending %d rows of %s to the server (data sharing is on)", len(chunk), path.name)
    records = dataframe_records(chunk)
    data: dict[str, Any] = {  # the rows' JSON text made here, in the job process: for 10,000 rows of 100
        # cells, converting and encoding them held the kernel's loop for most of a second
        "dataframe": EncodedList(records, [encode(row, clean=True) for row in records]),
        "columns": [str(c) for c in chunk.columns],
        "rows": len(chunk),
        "file_path": str(path),
    }
    if truncated:
        data.update(truncated=True, max_rows=LOAD_DATA_MAX_ROWS)
    return data


def save_file(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Write records sent by the server to an allowed table file, atomically.

    An existing file is replaced only if the worker wrote it and nobody changed it since (never a
    read-only one); CSV/TSV text cells that a spreadsheet would run as formulas are made inert.
    """
    req = SaveRequest.parse(params)
    df = pd.DataFrame.from_records(req.records)
    with policy(ctx.settings).open_output(req.file_path) as out:
        ctx.progress(50, f"Writing {out.name}", "writing")
        write_table_atomic(df, out, replace="ours", neutralise=True)
    return {"file_path": str(out.path), "rows": len(df), "column_count": df.shape[1]}


def _default_output(first: Path) -> Path:
    ext = first.suffix.lower() if first.suffix.lower() in (".csv", ".tsv", ".parquet") else ".csv"
    return first.with_name(f"{first.stem}_joined{ext}")


def join(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Filter two or more tables, join, merge or stack them, and write the result next to the inputs."""
    req = JoinRequest.parse(params)
    files = policy(ctx.settings)
    ctx.progress(2, "Checking files", "validating")
    with contextlib.ExitStack() as stack:
        tables = [stack.enter_context(files.open_readable(p)) for p in req.file_paths]
        output = stack.enter_context(
            files.open_output(req.output_path if req.output_path else str(_default_output(tables[0].path)))
        )
        return _join(req, ctx, tables, output)


def _join(req: JoinRequest, ctx: JobContext, tables: list[OpenedTable], output: OutputFolder) -> dict[str, Any]:
    keys = list(req.key_columns)
    frames: list[pd.DataFrame] = []
    for i, table in enumerate(tables):
        ctx.progress(5 + 50 * i / len(tables), f"Reading {table.name}", "reading")
        if keys:
            check_columns(table.path, keys, read_columns(table))
        frames.append(read_table(table))
    input_rows = [len(f) for f in frames]
    names = [t.name for t in tables]
    if req.filters:
        ctx.progress(56, f"Applying {len(req.filters)} filter(s) to each file", "filtering")
        frames = filter_inputs(frames, names, list(req.filters))
    ctx.progress(60, f"Running {req.operation} on {len(frames)} files", "joining")
    result = combine(frames, names, req.operation, keys)
    ctx.progress(90, f"Writing {output.name}", "writing")
    write_table_atomic(result, output, replace="ours")
    ctx.progress(100, f"Wrote {len(result):,} rows to {output.name}", "done")
    columns = [str(c) for c in result.columns]
    return {
        "output_file": str(output.path),
        "row_count": len(result),
        "column_count": len(columns),
        "columns": shape_columns(columns[:20], ctx.settings.privacy),
        "operation": req.operation,
        "input_rows": input_rows,
    }
