"""The table as the cluster reads it: the first pass, its encoding, files it cannot split, and files that change.

The cluster's workers read the file by name, once per pass (types, statistics, fit, scoring), so:

- a CSV that is not UTF-8 is read as Latin-1, as the local reader does (:func:`first_pass` tries again);
- a CSV is split into blocks at line breaks, also those inside quoted cells, and such a block cannot be
  parsed: that (or a malformed row) is a sentence about the file (:func:`unreadable`), not "the cluster
  went away";
- a file that changes between passes would give a model mixing two tables, so the job fails with a
  sentence when the file's size, modification time or identity changed (:func:`unchanged`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import JobError, exception_line
from .connect import run_partitions
from .prep import Columns, merge_type_counts, read_frame, type_counts

log = logging.getLogger("statsbot_nb.cluster")

_FALLBACK_ENCODING = "latin-1"


def data_error(exc: BaseException) -> BaseException | None:
    """The innermost exception in ``exc``'s chain that is about the file's bytes (decoding, CSV parsing), if
    any (dask wraps pandas' error in one of the same type with a longer message)."""
    import pandas as pd

    seen: set[int] = set()
    found: BaseException | None = None
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, UnicodeDecodeError | pd.errors.ParserError):
            found = current
        current = current.__cause__ or current.__context__
    return found


def unreadable(path: Path, cause: BaseException) -> JobError:
    """The sentence for a file the cluster's workers could not parse."""
    detail = exception_line(cause, 200)
    return JobError(
        f"{path.name} could not be read on the Dask cluster ({detail}). Check that every row has as many fields "
        "as the header (a comma inside a value must be quoted) and that the file is complete. The cluster reads "
        "a CSV in blocks split at line breaks, so line breaks inside quoted cells cannot be read there either: "
        "save the table as Parquet, or train without Dask."
    )


def first_pass(
    client: Any,
    address: str,
    path: Path,
    columns: list[str],
    target: str,
    npartitions: int | None,
    report: Callable[[int, int, str], None],
    progress: Callable[[float, str, str], None],
) -> tuple[list[Any], list[int], Columns]:
    """The table's partitions (delayed), the number of each one's first row in the file, and the whole
    table's column kinds: the first pass over the file."""
    from dask import delayed

    for encoding in ("utf-8", _FALLBACK_ENCODING):
        try:
            ddf = read_frame(path, columns, encoding=encoding)
            if npartitions:
                ddf = ddf.repartition(npartitions=npartitions)
            parts = ddf.to_delayed()
            progress(2, f"Reading {path.name} on the cluster ({len(parts)} partitions)", "loading")
            # this pass parses every column of a CSV, so a row with too many fields fails here, not silently cut;
            # the later passes read the same blocks (unchanged() sees to it) and parse only the columns used
            whole = read_frame(path, columns, encoding=encoding, every=True).to_delayed()
            tasks = [delayed(type_counts)(p, target, columns) for p in whole]
            counted = run_partitions(client, address, tasks, report, "Types")
            lengths = [c["rows"] for c in counted]
            if len(whole) != len(parts):  # repartitioned (tests): count the partitions the passes use
                lengths = run_partitions(client, address, [delayed(len)(p) for p in parts], lambda *a: None, "Rows")
            starts = [0, *itertools.accumulate(lengths)][:-1]
            return parts, starts, merge_type_counts(counted)
        except Exception as exc:
            cause = data_error(exc)
            if isinstance(cause, UnicodeDecodeError) and encoding != _FALLBACK_ENCODING:
                log.warning("%s is not UTF-8; the cluster reads it as %s", path.name, _FALLBACK_ENCODING)
                continue
            if cause is not None:
                raise unreadable(path, cause) from exc
            raise
    raise AssertionError("unreachable: Latin-1 decodes every byte")  # pragma: no cover


def _identity(path: Path) -> tuple[int, ...] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


@contextlib.contextmanager
def unchanged(path: Path) -> Iterator[None]:
    """Fail the job with a sentence when ``path`` changed (or went) while the cluster read it, pass by pass;
    a failure inside is told as the file's change when the file changed."""
    before = _identity(path)
    sentence = (
        f"{path.name} changed while the cluster was reading it (each pass reads the file again, and its size "
        "or modification time changed); train again once the file is complete."
    )
    try:
        yield
    except Exception as exc:
        if _identity(path) != before:
            raise JobError(sentence) from exc
        raise
    if _identity(path) != before:
        raise JobError(sentence)


__all__ = ["data_error", "first_pass", "unchanged", "unreadable"]
