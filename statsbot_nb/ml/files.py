"""Job handlers for the file actions: ``file_info``, ``load_data``, ``save_file`` and ``join``.

Each handler is ``handler(params, ctx) -> data`` (the success ``data`` of PROTOCOL.md) and raises
:class:`JobError` with a sentence on failure. Every path goes through :class:`PathPolicy`; table contents
leave the machine only through ``load_data`` and only when the user turned data sharing on.

``join`` semantics match today's worker (``execute_join_job`` in the bot's ``worker/statsbot_worker.py``)
row for row and column for column; the names are the ones the bot sends:

- ``filters`` apply to **each input file before** the operation (so they name the inputs' columns, not the
  result's); a filter is skipped for a file that lacks its column, and refused only if no file has it;
- ``left_join`` / ``right_join`` / ``inner_join`` / ``outer_join``: pandas ``merge(on=key_columns, how=...)``
  chained left to right over the files; clashing non-key columns get pandas' suffixes ``_x`` / ``_y``;
- ``merge``: pandas ``merge`` (inner) on ``key_columns``, or, if none are given, on the columns the tables
  share (a natural join);
- ``cross_join``: every row with every row (``key_columns`` not used), suffixes ``_x`` / ``_y``, refused above
  ``MAX_RESULT_ROWS``;
- ``concat`` and ``union``: the same thing, rows of all files stacked (duplicates kept), columns united in
  order of first appearance (missing cells empty).

The output goes to ``output_path`` or, by default, to ``<first input stem>_joined.<ext>`` next to the first
input (same format as that input; Excel inputs give CSV), written atomically.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..context import JobContext
from ..errors import JobError
from ..paths import MissingFile, PathPolicy
from ..strictjson import to_strict_json
from .data import check_columns, iter_table_chunks, read_columns, read_table, write_table_atomic
from .filters import Filter, parse_filters

log = logging.getLogger("statsbot_nb.files")

LOAD_DATA_MAX_ROWS = 10_000
MAX_RESULT_ROWS = 50_000_000
MAX_JOIN_FILES = 20
INFO_COLUMNS = 50
KEY_OPERATIONS = {
    "left_join": "left",
    "right_join": "right",
    "inner_join": "inner",
    "outer_join": "outer",
    "merge": "inner",
}  # merge: key_columns optional (none -> the columns the tables share)
OPERATIONS = (*KEY_OPERATIONS, "cross_join", "union", "concat")


# -- parameter checks ----------------------------------------------------------------------------------


def _param_str(params: dict[str, Any], name: str, what: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value.strip():
        raise JobError(f"'{name}' must be {what}.")
    return value


def _param_names(params: dict[str, Any], name: str) -> list[str]:
    value = params.get(name)
    if isinstance(value, str) and value.strip():
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v for v in value):
        raise JobError(f"'{name}' must be a non-empty list of column names.")
    return list(dict.fromkeys(value))


def _policy(ctx: JobContext) -> PathPolicy:
    return PathPolicy.from_settings(ctx.settings)


def _format(path: Path) -> str:
    return path.suffix.lower().lstrip(".")


# -- JSON-friendly records -----------------------------------------------------------------------------


def dataframe_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """``df`` as a list of row objects that survive strict JSON encoding."""
    names = [str(c) for c in df.columns]
    columns = [[to_strict_json(v) for v in df.iloc[:, i].tolist()] for i in range(df.shape[1])]
    return (
        [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]
        if columns
        else [{} for _ in range(len(df))]
    )


# -- handlers ------------------------------------------------------------------------------------------


def file_info(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Size and columns of a table; ``exists: false`` for an allowed path with no file."""
    raw = _param_str(params, "file_path", "the path of a table file")
    try:
        path = _policy(ctx).readable(raw)
    except MissingFile as missing:
        return {"exists": False, "size_bytes": 0, "size_mb": 0.0, "file_path": str(missing.path)}
    size = path.stat().st_size
    data: dict[str, Any] = {
        "exists": True,
        "size_bytes": size,
        "size_mb": round(size / (1024 * 1024), 2),
        "file_path": str(path),
        "format": _format(path),
    }
    try:
        columns = read_columns(path)
        data["columns"] = columns[:INFO_COLUMNS]
        data["column_count"] = len(columns)
    except JobError as exc:
        data["columns_error"] = str(exc)
    return data


def load_data(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Send a table's first rows to the server, only if the user turned data sharing on."""
    if not ctx.settings.share_data:
        raise JobError(
            "Sending table contents to the server is turned off on this worker; data stays on this machine. "
            "Turn on data sharing (`--share-data`, or the panel switch) if you want the bot to see the "
            "contents of your files."
        )
    raw = _param_str(params, "file_path", "the path of a table file")
    path = _policy(ctx).readable(raw)
    ctx.progress(10, f"Reading {path.name}", "reading")
    chunks = iter_table_chunks(path, None, chunk_rows=LOAD_DATA_MAX_ROWS + 1)
    try:
        chunk = next(chunks, None)
    finally:
        chunks.close()  # stop reading: only the first rows are sent
    if chunk is None:
        chunk = pd.DataFrame(columns=read_columns(path))
    truncated = len(chunk) > LOAD_DATA_MAX_ROWS
    chunk = chunk.iloc[:LOAD_DATA_MAX_ROWS]
    log.info("load_data: sending %d rows of %s to the server (data sharing is on)", len(chunk), path.name)
    data: dict[str, Any] = {
        "dataframe": dataframe_records(chunk),
        "columns": [str(c) for c in chunk.columns],
        "rows": len(chunk),
        "file_path": str(path),
    }
    if truncated:
        data.update(truncated=True, max_rows=LOAD_DATA_MAX_ROWS)
    return data


def _records_frame(records: object) -> pd.DataFrame:
    if not isinstance(records, list) or not records:
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
    return pd.DataFrame.from_records(records)


def save_file(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Write records sent by the server to an allowed table file, atomically (overwrites a regular file)."""
    raw = _param_str(params, "file_path", "the path of the table file to write")
    df = _records_frame(params.get("dataframe"))
    path = _policy(ctx).writable(raw)
    ctx.progress(50, f"Writing {path.name}", "writing")
    write_table_atomic(df, path)
    return {"file_path": str(path), "rows": len(df), "column_count": df.shape[1]}


def _default_output(first: Path) -> Path:
    ext = first.suffix.lower() if first.suffix.lower() in (".csv", ".tsv", ".parquet") else ".csv"
    return first.with_name(f"{first.stem}_joined{ext}")


def _estimate_rows(left: pd.DataFrame, right: pd.DataFrame, keys: list[str], how: str) -> int:
    """Rows a key join would produce, from key counts alone (NaN keys match, as in pandas)."""
    lc = left.groupby(keys, dropna=False, sort=False).size().rename("_l").reset_index()
    rc = right.groupby(keys, dropna=False, sort=False).size().rename("_r").reset_index()
    both = lc.merge(rc, on=keys, how="outer")
    matched = int((both["_l"] * both["_r"]).fillna(0).sum())
    only_l = int(both.loc[both["_r"].isna(), "_l"].sum())
    only_r = int(both.loc[both["_l"].isna(), "_r"].sum())
    return matched + {"inner": 0, "left": only_l, "right": only_r, "outer": only_l + only_r}[how]


def _too_big(n: int, operation: str) -> JobError:
    return JobError(
        f"The {operation} would produce about {n:,} rows, more than the {MAX_RESULT_ROWS:,} this "
        "worker allows; filter the files first or use keys that match fewer rows."
    )


def _filter_inputs(frames: list[pd.DataFrame], paths: list[Path], parsed: list[Filter]) -> list[pd.DataFrame]:
    """Each input keeps the rows that satisfy every filter on a column it has (as today's worker does).

    A filter naming a column that no input has is refused (today's worker silently ignored it everywhere).
    """
    if not parsed:
        return frames
    unknown = list(dict.fromkeys(f.column for f in parsed if not any(f.column in fr.columns for fr in frames)))
    if unknown:
        names = list(dict.fromkeys(str(c) for fr in frames for c in fr.columns))
        shown = ", ".join(repr(c) for c in names[:INFO_COLUMNS]) + (" ..." if len(names) > INFO_COLUMNS else "")
        raise JobError(
            f"The filters name {', '.join(repr(c) for c in unknown)}, which no input file has "
            f"(a filter applies to each file that has its column); the files' columns are {shown}."
        )
    out = []
    for frame, path in zip(frames, paths, strict=True):
        used = [f for f in parsed if f.column in frame.columns]
        if len(used) < len(parsed):
            log.info(
                "join: %s has no column for filter(s) %s; skipped for that file",
                path.name,
                ", ".join(repr(f.text) for f in parsed if f not in used),
            )
        if not used:
            out.append(frame)
            continue
        mask = pd.Series(True, index=frame.index)
        try:
            for flt in used:
                mask &= flt.mask(frame)
        except JobError as exc:
            raise JobError(f"In {path.name}: {exc}") from exc
        out.append(frame.loc[mask].reset_index(drop=True))
    return out


def _merge_error(operation: str, path: Path, keys: list[str], exc: Exception) -> JobError:
    text = str(exc)
    on = ", ".join(keys) if keys else "the columns the tables share"
    where = "" if operation == "cross_join" else f" on {on}"
    if "suffixes" in text:
        hint = (
            "the _x/_y suffixes for clashing column names would repeat a column name; rename the clashing "
            "columns in one of the files"
        )
    else:
        hint = "make the key columns hold the same kind of values in every file"
    return JobError(f"Cannot {operation} {path.name}{where}: {text.rstrip('.')}. To fix it, {hint}.")


def _combine(frames: list[pd.DataFrame], paths: list[Path], operation: str, keys: list[str]) -> pd.DataFrame:
    """Today's worker's operation on the (already filtered) inputs, with size guards before each step."""
    if operation in ("concat", "union"):
        # worker: union -> pd.concat(dfs, ignore_index=True); concat -> the same with join="outer" (the default)
        return pd.concat(frames, ignore_index=True, join="outer", sort=False)
    if operation == "cross_join":
        total = math.prod(len(f) for f in frames)
        if total > MAX_RESULT_ROWS:
            raise _too_big(total, operation)
    how = KEY_OPERATIONS.get(operation, "cross")
    result = frames[0]
    for frame, path in zip(frames[1:], paths[1:], strict=True):
        on = keys
        try:
            if how == "cross":
                result = result.merge(frame, how="cross")  # pandas' default suffixes _x, _y
                continue
            if not on:  # merge without key_columns: pandas joins on the shared columns
                on = [c for c in result.columns if c in frame.columns]
                if not on:
                    raise JobError(
                        f"Cannot merge {path.name}: it has no column in common with the table "
                        "before it; choose key columns."
                    )
            estimate = _estimate_rows(result, frame, on, how)
            if estimate > MAX_RESULT_ROWS:
                raise _too_big(estimate, operation)
            result = result.merge(frame, on=keys, how=how) if keys else result.merge(frame, how=how)
        except (ValueError, TypeError) as exc:  # pandas' MergeError is a ValueError
            raise _merge_error(operation, path, on, exc) from exc
    return result


def join(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Filter two or more tables, join, merge or stack them, and write the result next to the inputs."""
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
        raise JobError(f"'file_paths' lists {len(file_paths)} files; at most {MAX_JOIN_FILES} can be joined at once.")
    keys: list[str] = []  # cross_join, concat and union ignore key_columns, as today's worker does
    if operation in KEY_OPERATIONS and (operation != "merge" or params.get("key_columns")):
        keys = _param_names(params, "key_columns")  # merge without keys: the shared columns, as today
    parsed = parse_filters(params.get("filters") or None)  # fail on bad syntax before reading anything
    out_raw = params.get("output_path")
    if out_raw is not None and (not isinstance(out_raw, str) or not out_raw.strip()):
        raise JobError("'output_path' must be the path of the table file to write, or left out.")

    policy = _policy(ctx)
    ctx.progress(2, "Checking files", "validating")
    paths = [policy.readable(p) for p in file_paths]
    output = policy.writable(out_raw if out_raw else str(_default_output(paths[0])))

    frames: list[pd.DataFrame] = []
    for i, path in enumerate(paths):
        ctx.progress(5 + 50 * i / len(paths), f"Reading {path.name}", "reading")
        if keys:
            check_columns(path, keys, read_columns(path))
        frames.append(read_table(path))
    input_rows = [len(f) for f in frames]
    if parsed:
        ctx.progress(56, f"Applying {len(parsed)} filter(s) to each file", "filtering")
        frames = _filter_inputs(frames, paths, parsed)
    ctx.progress(60, f"Running {operation} on {len(frames)} files", "joining")
    result = _combine(frames, paths, operation, keys)
    ctx.progress(90, f"Writing {output.name}", "writing")
    write_table_atomic(result, output)
    ctx.progress(100, f"Wrote {len(result):,} rows to {output.name}", "done")
    columns = [str(c) for c in result.columns]
    return {
        "output_file": str(output),
        "row_count": len(result),
        "column_count": len(columns),
        "columns": columns[:20],
        "operation": operation,
        "input_rows": input_rows,
    }
