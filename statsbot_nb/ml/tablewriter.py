"""Writing the user's tables atomically: chunk by chunk, by extension, complete or not at all.

Writers never leave a half-written file behind: they write a hidden temporary file in the target folder
(:mod:`statsbot_nb.atomic`) and move it into place only when everything was written. ``.xlsx`` text cells
are stored as inert text, never as formulas.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import pandas as pd

from .. import atomic
from ..errors import JobError

try:  # pyarrow is a hard dependency, but keep CSV writing alive if a broken install lacks it.
    import pyarrow as pa
except ImportError:  # pragma: no cover - exercised only on broken installs
    pa = None

log = logging.getLogger("statsbot_nb.files")

_DELIMITED = {".csv": ",", ".tsv": "\t"}


_WRITABLE = (*_DELIMITED, ".parquet", ".xlsx")


# -- atomic writes -------------------------------------------------------------------------------------


def _create_temp(path: Path) -> tuple[Path, int]:
    """Create the hidden temp file for ``path`` (see :func:`statsbot_nb.atomic.create_temp`)."""
    try:
        return atomic.create_temp(path)
    except OSError as exc:
        raise JobError(
            f"Cannot write in {path.parent}: {exc.strerror or exc}; check the folder exists and is writable."
        ) from exc


def _commit(tmp: Path, path: Path, overwrite: bool = True) -> None:
    """Move the finished temp file to ``path`` (see :func:`statsbot_nb.atomic.commit`), in sentences."""
    try:
        atomic.commit(tmp, path, overwrite)
    except FileExistsError as exc:
        raise JobError(
            f"{path.name} appeared in {path.parent} while the job was writing it; it was left "
            "untouched. Run the job again to write a new file."
        ) from exc
    except OSError as exc:
        raise JobError(f"Cannot write {path}: {exc.strerror or exc}.") from exc


def _writer_ext(path: Path) -> str:
    ext = path.suffix.lower()
    if ext == ".xls":
        raise JobError(f"{path.name}: the old .xls format cannot be written; use .xlsx, .csv or .parquet.")
    if ext not in _WRITABLE:
        raise JobError(f"{path} is not a supported table format; use .csv, .tsv, .xlsx, .xls or .parquet.")
    return ext


def write_table_atomic(df: pd.DataFrame, path: Path) -> Path:
    """Write ``df`` (without its index) to ``path`` by extension; the file appears complete or not at all."""
    path = Path(path)
    with AtomicTableWriter(path) as writer:
        writer.write(df)
    return path


def _write_xlsx_as_values(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``.xlsx`` with every text cell stored as text.

    pandas (through openpyxl) stores a string that starts with ``=`` as a live formula, so a table from
    the server could plant ``=HYPERLINK(...)`` or worse in a workbook the user later opens. Here such
    strings stay inert text.
    """
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    book = Workbook(write_only=True)
    sheet = book.create_sheet()

    def cell(value: object) -> object:
        if value is None or (isinstance(value, float) and value != value):
            return None
        if isinstance(value, str):
            text = WriteOnlyCell(sheet, value=value)
            text.data_type = "s"
            return text
        return value.item() if hasattr(value, "item") else value

    sheet.append([cell(str(c)) for c in frame.columns])
    for row in frame.itertuples(index=False, name=None):
        sheet.append([cell(v) for v in row])
    book.save(path)


class AtomicTableWriter:
    """Write a table in chunks to a temporary file and move it into place on a clean exit.

    CSV/TSV chunks are appended (header once), Parquet chunks become row groups of one file (later
    chunks are cast to the first chunk's schema), ``.xlsx`` chunks are collected and written at the end.
    On an exception inside the ``with`` block the temporary file is deleted and ``path`` is untouched.
    With ``overwrite=False`` a file already at ``path`` is never replaced (the job fails instead).
    """

    def __init__(self, path: Path, overwrite: bool = True) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
        self.ext = _writer_ext(self.path)
        self.rows = 0
        self._tmp: Path | None = None
        self._fh: IO[str] | None = None
        self._parquet: Any = None
        self._schema: Any = None
        self._excel: list[pd.DataFrame] = []
        self._columns: list[str] | None = None
        self._header_written = False

    def __enter__(self) -> AtomicTableWriter:
        self._tmp, fd = _create_temp(self.path)
        if self.ext in _DELIMITED:
            self._fh = os.fdopen(fd, "w", encoding="utf-8", newline="")
        else:
            os.close(fd)  # pyarrow / openpyxl open the temp path themselves
        return self

    def write(self, df: pd.DataFrame) -> None:
        """Append one chunk; its columns must match the first chunk's."""
        if self._tmp is None:
            raise RuntimeError("AtomicTableWriter.write() called outside its with-block")
        columns = [str(c) for c in df.columns]
        if self._columns is None:
            self._columns = columns
        elif columns != self._columns:
            raise JobError(f"Cannot write {self.path.name}: a chunk has other columns than the first one.")
        try:
            if self._fh is not None:
                df.to_csv(self._fh, sep=_DELIMITED[self.ext], index=False, header=not self._header_written)
                self._header_written = True
            elif self.ext == ".parquet":
                self._write_parquet(df)
            else:
                self._excel.append(df)
        except JobError:
            raise
        except Exception as exc:
            raise JobError(f"Cannot write {self.path.name}: {exc}.") from exc
        self.rows += len(df)

    def _write_parquet(self, df: pd.DataFrame) -> None:
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, preserve_index=False)
        if self._parquet is None:
            self._schema = table.schema
            self._parquet = pq.ParquetWriter(str(self._tmp), self._schema)
        elif not table.schema.equals(self._schema, check_metadata=False):
            try:
                table = table.cast(self._schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise JobError(f"Cannot write {self.path.name}: column types changed between chunks ({exc}).") from exc
        self._parquet.write_table(table)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        tmp = self._tmp
        if tmp is None:
            return
        try:
            if exc_type is None:
                self._finish()
            self._close()
            if exc_type is None:
                atomic.fsync_file(tmp)
                _commit(tmp, self.path, self.overwrite)
                log.info("Wrote %d rows to %s", self.rows, self.path)
        except BaseException:
            self._close()
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        finally:
            self._tmp = None
        if exc_type is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def _finish(self) -> None:
        """Write what is buffered and flush to disk (still under the temporary name)."""
        try:
            if self.ext == ".parquet" and self._parquet is None:  # no chunk at all: an empty table
                import pyarrow.parquet as pq

                empty = pd.DataFrame(columns=self._columns or [])
                pq.write_table(pa.Table.from_pandas(empty, preserve_index=False), str(self._tmp))
            elif self.ext == ".xlsx":
                frame = pd.concat(self._excel, ignore_index=True) if self._excel else pd.DataFrame()
                _write_xlsx_as_values(frame, self._tmp)
            if self._fh is not None:
                self._fh.flush()
        except JobError:
            raise
        except Exception as exc:
            raise JobError(f"Cannot write {self.path.name}: {exc}.") from exc

    def _close(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
            self._fh = None
        if self._parquet is not None:
            with contextlib.suppress(Exception):
                self._parquet.close()
            self._parquet = None
