"""Combining tables for ``join``: filters applied to each input, then a join, merge or stack.

Pure: data frames and typed options in, one data frame out; the ``join`` handler
(:mod:`statsbot_nb.handlers.files`) parses the request, applies the file policy, reads and writes.

Semantics match today's worker (``execute_join_job`` in the bot's ``worker/statsbot_worker.py``) row for
row and column for column; the names are the ones the bot sends:

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
"""

from __future__ import annotations

import logging
import math

import pandas as pd

from ..errors import JobError
from .filters import Filter

log = logging.getLogger("statsbot_nb.files")

MAX_RESULT_ROWS = 50_000_000
INFO_COLUMNS = 50
KEY_OPERATIONS = {
    "left_join": "left",
    "right_join": "right",
    "inner_join": "inner",
    "outer_join": "outer",
    "merge": "inner",
}  # merge: key_columns optional (none -> the columns the tables share)
OPERATIONS = (*KEY_OPERATIONS, "cross_join", "union", "concat")


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


def filter_inputs(frames: list[pd.DataFrame], names: list[str], parsed: list[Filter]) -> list[pd.DataFrame]:
    """Each input keeps the rows that satisfy every filter on a column it has (as today's worker does).

    ``names`` are the inputs' file names, for messages.

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
    for frame, name in zip(frames, names, strict=True):
        used = [f for f in parsed if f.column in frame.columns]
        if len(used) < len(parsed):
            log.info(
                "join: %s has no column for filter(s) %s; skipped for that file",
                name,
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
            raise JobError(f"In {name}: {exc}") from exc
        out.append(frame.loc[mask].reset_index(drop=True))
    return out


def _merge_error(operation: str, name: str, keys: list[str], exc: Exception) -> JobError:
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
    return JobError(f"Cannot {operation} {name}{where}: {text.rstrip('.')}. To fix it, {hint}.")


def combine(frames: list[pd.DataFrame], names: list[str], operation: str, keys: list[str]) -> pd.DataFrame:
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
    for frame, name in zip(frames[1:], names[1:], strict=True):
        on = keys
        try:
            if how == "cross":
                result = result.merge(frame, how="cross")  # pandas' default suffixes _x, _y
                continue
            if not on:  # merge without key_columns: pandas joins on the shared columns
                on = [c for c in result.columns if c in frame.columns]
                if not on:
                    raise JobError(
                        f"Cannot merge {name}: it has no column in common with the table before it; choose key columns."
                    )
            estimate = _estimate_rows(result, frame, on, how)
            if estimate > MAX_RESULT_ROWS:
                raise _too_big(estimate, operation)
            result = result.merge(frame, on=keys, how=how) if keys else result.merge(frame, how=how)
        except (ValueError, TypeError) as exc:  # pandas' MergeError is a ValueError
            raise _merge_error(operation, name, on, exc) from exc
    return result
