"""Reading and writing the user's tables: lean (only the needed columns), predictable, and atomic.

Readers take a table the policy opened (:class:`statsbot_nb.safefiles.OpenedTable`, from
:meth:`statsbot_nb.paths.PathPolicy.open_readable`) and read that open file, never its name again, so a
file swapped after the check cannot be read instead; a plain path is accepted too (tests, the user's own
calls). Formats go by extension:
``.csv`` and ``.tsv`` (pyarrow's multithreaded parser, pandas as fallback), ``.parquet`` (pyarrow),
``.xlsx`` (openpyxl) and ``.xls`` (calamine) through pandas. Every failure becomes a :class:`JobError` sentence.

Dtypes follow what ``pandas.read_csv`` would give, whichever parser ran, so a model trained on
:func:`read_table` output sees the same kinds of columns in :func:`iter_table_chunks` output at prediction
time: text stays text (pyarrow's automatic date parsing is undone), missing markers are pandas' defaults.

Writing lives in :mod:`statsbot_nb.ml.tablewriter` (re-exported here): a file appears complete or not at all.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import pandas as pd

from ..errors import JobError, exception_line
from ..safefiles import OpenedTable

try:  # pyarrow is a hard dependency, but keep CSV reading alive if a broken install lacks it.
    import pyarrow as pa
    import pyarrow.csv as pa_csv
except ImportError:  # pragma: no cover - exercised only on broken installs
    pa = None
    pa_csv = None

log = logging.getLogger("statsbot_nb.files")

# pandas' default missing-value markers (read_csv's na_values), so pyarrow and pandas agree.
NA_VALUES: tuple[str, ...] = (
    "",
    "#N/A",
    "#N/A N/A",
    "#NA",
    "-1.#IND",
    "-1.#QNAN",
    "-NaN",
    "-nan",
    "1.#IND",
    "1.#QNAN",
    "<NA>",
    "N/A",
    "NA",
    "NULL",
    "NaN",
    "None",
    "n/a",
    "nan",
    "null",
)
_DELIMITED = {".csv": ",", ".tsv": "\t"}
# pandas 3 deprecates xlrd; calamine (a dependency) reads legacy .xls files.
_EXCEL_ENGINES = {".xlsx": "openpyxl", ".xls": "calamine"}
_FALLBACK_ENCODING = "latin-1"


TableSource = Path | OpenedTable


def _where(source: TableSource) -> Path:
    """The path to name in sentences (and whose extension gives the format)."""
    return source.path if isinstance(source, OpenedTable) else Path(source)


@contextlib.contextmanager
def _opened(source: TableSource) -> Iterator[IO[bytes]]:
    """A binary file object at the start of the table: the policy's open file, or the path opened now."""
    fh = source.open() if isinstance(source, OpenedTable) else open(source, "rb")
    with fh:
        yield fh


def _ext(path: Path) -> str:
    ext = Path(path).suffix.lower()
    if ext not in _DELIMITED and ext not in _EXCEL_ENGINES and ext != ".parquet":
        raise JobError(f"{path} is not a supported table format; use .csv, .tsv, .xlsx, .xls or .parquet.")
    return ext


def _unreadable(path: Path, exc: BaseException) -> JobError:
    detail = exception_line(exc)
    return JobError(
        f"{path} could not be read as a {Path(path).suffix.lower()} table ({detail}); "
        "check that the file is complete and in that format."
    )


# -- columns -------------------------------------------------------------------------------------------


def _csv_header(source: TableSource, delimiter: str) -> list[str]:
    """The first record of a delimited file, decoded as UTF-8 (with BOM) or, failing that, Latin-1."""
    path = _where(source)
    for encoding in ("utf-8-sig", _FALLBACK_ENCODING):
        try:
            with _opened(source) as raw, io.TextIOWrapper(raw, newline="", encoding=encoding) as fh:
                return next(csv.reader(fh, delimiter=delimiter), [])
        except UnicodeDecodeError:
            continue
        except (OSError, csv.Error) as exc:
            raise _unreadable(path, exc) from exc
    return []  # pragma: no cover - latin-1 decodes any byte string


def _plain_header(names: list[str]) -> bool:
    """True when pyarrow would name the columns exactly as pandas does (no blanks, no duplicates)."""
    return all(n.strip() for n in names) and len(set(names)) == len(names)


def _pandas_csv(source: TableSource, delimiter: str, **kwargs: Any) -> Any:
    try:
        with _opened(source) as fh:
            return pd.read_csv(fh, sep=delimiter, **kwargs)
    except UnicodeDecodeError:
        log.warning("%s is not UTF-8; reading it as %s", _where(source).name, _FALLBACK_ENCODING)
        with _opened(source) as fh:
            return pd.read_csv(fh, sep=delimiter, encoding=_FALLBACK_ENCODING, **kwargs)


def read_columns(source: TableSource) -> list[str]:
    """The column names of a table, reading as little as the format allows (header row, schema, sheet)."""
    path = _where(source)
    ext = _ext(path)
    try:
        if ext in _DELIMITED:
            names = _csv_header(source, _DELIMITED[ext])
            if not names:
                raise JobError(f"{path} has no header row; the first line must name the columns.")
            if _plain_header(names):
                return names
            return [str(c) for c in _pandas_csv(source, _DELIMITED[ext], nrows=0).columns]
        with _opened(source) as fh:
            if ext == ".parquet":
                import pyarrow.parquet as pq

                return _parquet_names(pq.read_schema(fh).names)
            return [str(c) for c in pd.read_excel(fh, nrows=0, engine=_EXCEL_ENGINES[ext]).columns]
    except JobError:
        raise
    except Exception as exc:  # third-party parsers raise many types; translate at the boundary
        raise _unreadable(path, exc) from exc


def _parquet_names(names: list[str]) -> list[str]:
    return [n for n in names if not (n.startswith("__index_level_") and n.endswith("__"))]


def check_columns(path: Path, wanted: Sequence[str], available: Sequence[str]) -> list[str]:
    """``wanted`` without duplicates, or a JobError naming the missing and the available columns."""
    unique = list(dict.fromkeys(wanted))
    missing = [c for c in unique if c not in set(available)]
    if missing:
        shown = ", ".join(repr(c) for c in available[:50])
        more = f" and {len(available) - 50} more" if len(available) > 50 else ""
        raise JobError(
            f"{Path(path).name} has no column {', '.join(repr(c) for c in missing)}; its columns are {shown}{more}."
        )
    return unique


# -- whole-table reads ---------------------------------------------------------------------------------


def read_table(source: TableSource, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a table (only ``columns`` when given, in that order) into a DataFrame with a RangeIndex."""
    path = _where(source)
    ext = _ext(path)
    available = read_columns(source)
    wanted = check_columns(path, columns, available) if columns is not None else list(available)
    try:
        if ext in _DELIMITED:
            df = _read_delimited(source, _DELIMITED[ext], wanted)
        elif ext == ".parquet":
            import pyarrow.parquet as pq

            with _opened(source) as fh:
                df = pq.read_table(fh, columns=wanted).to_pandas(ignore_metadata=True)
        else:
            df = _read_excel(source, ext, wanted)
    except JobError:
        raise
    except MemoryError as exc:
        raise JobError(f"{path.name} is too large to load into memory on this machine.") from exc
    except Exception as exc:
        raise _unreadable(path, exc) from exc
    return df[wanted].reset_index(drop=True) if list(df.columns) != wanted else df


def _arrow_csv(source: TableSource, parse: Any, convert: Any) -> Any:
    """Arrow's CSV reader; on one thread (a job process capped at one) it reads without its thread pool:
    going through the pool with a single thread took 285 ms where reading directly took 214 (200,000 x 21)."""
    read = pa_csv.ReadOptions(use_threads=pa.cpu_count() > 1)
    with _opened(source) as fh:
        return pa_csv.read_csv(fh, read_options=read, parse_options=parse, convert_options=convert)


def _read_delimited(source: TableSource, delimiter: str, wanted: list[str]) -> pd.DataFrame:
    path = _where(source)
    if pa_csv is None or not _plain_header(_csv_header(source, delimiter)):
        return _pandas_csv(source, delimiter, usecols=wanted)
    parse = pa_csv.ParseOptions(delimiter=delimiter)
    convert = pa_csv.ConvertOptions(
        include_columns=wanted, null_values=list(NA_VALUES), strings_can_be_null=True, quoted_strings_can_be_null=True
    )
    try:
        table = _arrow_csv(source, parse, convert)
    except pa.ArrowInvalid as exc:
        # pandas is more lenient (short rows get empty cells) but still refuses rows with extra fields;
        # read every column so such a row is an error rather than silently cut.
        log.info("pyarrow could not parse %s (%s); retrying with pandas", path.name, exc)
        return _pandas_csv(source, delimiter)[wanted]
    if any(pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type) for f in table.schema):
        return _pandas_csv(source, delimiter, usecols=wanted)  # not UTF-8: let pandas pick the encoding
    temporal = [f.name for f in table.schema if pa.types.is_temporal(f.type)]
    if temporal:  # pandas keeps dates as text unless asked; do the same so every reader agrees
        convert.column_types = {name: pa.string() for name in temporal}
        table = _arrow_csv(source, parse, convert)
    empty = [field.name for field in table.schema if pa.types.is_null(field.type)]
    # self_destruct frees each Arrow column as it is converted, and the pool hands freed memory back, so
    # the table is not held twice (Arrow's and pandas') once reading is done.
    df = table.to_pandas(self_destruct=True, split_blocks=True)
    del table
    pa.default_memory_pool().release_unused()
    for name in empty:  # an all-empty column: pandas gives float NaN, not None objects
        df[name] = df[name].astype("float64")
    return df


def _read_excel(source: TableSource, ext: str, wanted: list[str]) -> pd.DataFrame:
    keep = set(wanted)
    with _opened(source) as fh:
        df = pd.read_excel(fh, usecols=lambda c: str(c) in keep, engine=_EXCEL_ENGINES[ext])
    df.columns = [str(c) for c in df.columns]
    return df


# -- chunked reads -------------------------------------------------------------------------------------


def iter_table_chunks(
    source: TableSource, columns: Sequence[str] | None = None, chunk_rows: int = 100_000
) -> Iterator[pd.DataFrame]:
    """Yield the table in DataFrames of at most ``chunk_rows`` rows, for bounded-memory prediction.

    CSV/TSV are parsed chunk by chunk by pandas (same dtype rules as :func:`read_table`), Parquet by
    record batches; Excel files are loaded whole (they are small by nature) and then sliced.
    """
    path = _where(source)
    ext = _ext(path)
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be positive")
    available = read_columns(source)
    wanted = check_columns(path, columns, available) if columns is not None else list(available)
    try:
        if ext in _DELIMITED:
            yield from _delimited_chunks(source, _DELIMITED[ext], wanted, chunk_rows)
        elif ext == ".parquet":
            import pyarrow.parquet as pq

            with _opened(source) as fh, pq.ParquetFile(fh) as pf:
                for batch in pf.iter_batches(batch_size=chunk_rows, columns=wanted):
                    yield batch.to_pandas(ignore_metadata=True)[wanted]
        else:
            df = _read_excel(source, ext, wanted)[wanted]
            for start in range(0, len(df), chunk_rows):
                yield df.iloc[start : start + chunk_rows].reset_index(drop=True)
    except JobError:
        raise
    except Exception as exc:
        raise _unreadable(path, exc) from exc


def _delimited_chunks(
    source: TableSource, delimiter: str, wanted: list[str], chunk_rows: int
) -> Iterator[pd.DataFrame]:
    encoding = "utf-8"
    try:  # decide the encoding up front: a decode error half-way would have yielded chunks already
        with _opened(source) as raw, io.TextIOWrapper(raw, encoding="utf-8") as fh:
            while fh.read(1 << 20):
                pass
    except UnicodeDecodeError:
        encoding = _FALLBACK_ENCODING
    with (
        _opened(source) as fh,
        pd.read_csv(fh, sep=delimiter, usecols=wanted, chunksize=chunk_rows, encoding=encoding) as reader,
    ):
        for chunk in reader:
            yield chunk[wanted].reset_index(drop=True)


# Writing, re-exported so callers have one module for tables.
from .tablewriter import AtomicTableWriter, write_table_atomic  # noqa: E402

__all__ = [
    "NA_VALUES",
    "AtomicTableWriter",
    "TableSource",
    "check_columns",
    "iter_table_chunks",
    "read_columns",
    "read_table",
    "write_table_atomic",
]
