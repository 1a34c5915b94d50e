"""Writing the user's tables atomically: chunk by chunk, by extension, complete or not at all.

Writers never leave a half-written file behind: they write a hidden temporary file in the target folder
and give it the target's name only when everything was written. For a job, the folder is the one the
policy opened and checked (:meth:`statsbot_nb.paths.PathPolicy.open_output`): the temporary file is
created exclusively and without following links *inside that opened folder*, and named relative to it.

What may be at the target name already is decided by ``replace``:

- ``"never"``: an existing name is never replaced (the job fails with a sentence);
- ``"ours"``: only a regular, writable file the worker wrote itself and nobody changed since (the register
  in :mod:`statsbot_nb.safefiles`) is replaced, keeping its permissions;
- ``"any"``: any regular, writable file (the user's own calls in a notebook).

A read-only file is never replaced. ``.xlsx`` text cells are stored as inert text, never as formulas;
with ``neutralise_formulas`` (tables the server sent) a CSV/TSV text cell that a spreadsheet would run as a
formula gets a leading ``'`` (:func:`neutralise_formulas`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import stat
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

import pandas as pd

from ..errors import JobError
from ..safefiles import OutputFolder, is_worker_output, open_folder, record_output

try:  # pyarrow is a hard dependency, but keep CSV writing alive if a broken install lacks it.
    import pyarrow as pa
except ImportError:  # pragma: no cover - exercised only on broken installs
    pa = None

log = logging.getLogger("statsbot_nb.files")

_DELIMITED = {".csv": ",", ".tsv": "\t"}


_WRITABLE = (*_DELIMITED, ".parquet", ".xlsx")

Replace = Literal["never", "ours", "any"]

# OWASP "CSV injection": a cell starting with one of these is run as a formula by spreadsheet programs.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _formula_safe(value: object) -> object:
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def neutralise_formulas(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every text cell (and column name) that a spreadsheet would run as a formula made inert.

    A text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'``
    (OWASP's advice for CSV injection), unless it is a plain number written as text (``-5``, ``+1.5e3``),
    which no spreadsheet runs. Numbers, booleans and missing cells are untouched.
    """
    out = df.copy()
    out.columns = [_formula_safe(str(c)) for c in df.columns]
    for i in range(out.shape[1]):
        column = out.iloc[:, i]
        if column.dtype == object or pd.api.types.is_string_dtype(column.dtype):
            out.isetitem(i, column.map(_formula_safe, na_action="ignore").astype(object))
    return out


def _writer_ext(path: Path) -> str:
    ext = path.suffix.lower()
    if ext == ".xls":
        raise JobError(f"{path.name}: the old .xls format cannot be written; use .xlsx, .csv or .parquet.")
    if ext not in _WRITABLE:
        raise JobError(f"{path} is not a supported table format; use .csv, .tsv, .xlsx, .xls or .parquet.")
    return ext


def write_table_atomic(
    df: pd.DataFrame, target: Path | OutputFolder, replace: Replace = "any", neutralise: bool = False
) -> Path:
    """Write ``df`` (without its index) to ``target`` by extension; the file appears complete or not at all."""
    with AtomicTableWriter(target, replace=replace, neutralise_formulas=neutralise) as writer:
        writer.write(df)
    return writer.path


def _write_xlsx_as_values(frame: pd.DataFrame, path: Path | IO[bytes]) -> None:
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
    """Write a table in chunks to a temporary file and give it the target's name on a clean exit.

    ``target`` is an :class:`~statsbot_nb.safefiles.OutputFolder` from the policy, or a plain path (its
    folder is then opened here, unchecked). CSV/TSV chunks are appended (header once), Parquet chunks become
    row groups of one file (later chunks are cast to the first chunk's schema), ``.xlsx`` chunks are
    collected and written at the end. On an exception inside the ``with`` block the temporary file is
    deleted and the target is untouched. ``replace`` says what may be replaced (see the module docstring);
    ``overwrite=False`` is the older spelling of ``replace="never"``.
    """

    def __init__(
        self,
        target: Path | OutputFolder,
        overwrite: bool = True,
        *,
        replace: Replace | None = None,
        neutralise_formulas: bool = False,
    ) -> None:
        self._target = target
        self.path = target.path if isinstance(target, OutputFolder) else Path(target)
        self.replace: Replace = replace or ("any" if overwrite else "never")
        self.neutralise = neutralise_formulas
        self.ext = _writer_ext(self.path)
        self.rows = 0
        self._folder: OutputFolder | None = None
        self._tmp: str | None = None
        self._raw: IO[bytes] | None = None
        self._fh: IO[str] | None = None
        self._parquet: Any = None
        self._schema: Any = None
        self._excel: list[pd.DataFrame] = []
        self._columns: list[str] | None = None
        self._header_written = False
        self._keep_mode: int | None = None
        self._written: os.stat_result | None = None

    def __enter__(self) -> AtomicTableWriter:
        folder = self._target
        if not isinstance(folder, OutputFolder):
            try:
                folder = open_folder(self.path)
            except OSError as exc:
                raise JobError(
                    f"Cannot write in {self.path.parent}: {exc.strerror or exc}; check the folder exists."
                ) from exc
        self._folder = folder
        try:
            existing = folder.existing()
            if existing is not None:
                self._check_replaceable(existing)
            self._tmp, fd = folder.create_temp()
        except OSError as exc:
            self._release()
            raise JobError(
                f"Cannot write in {self.path.parent}: {exc.strerror or exc}; check the folder exists and is writable."
            ) from exc
        except BaseException:
            self._release()
            raise
        self._raw = os.fdopen(fd, "wb")
        if self.ext in _DELIMITED:
            self._fh = io.TextIOWrapper(self._raw, encoding="utf-8", newline="")
        return self

    def _check_replaceable(self, existing: os.stat_result) -> None:
        """Refuse (with a sentence) to replace what ``replace`` does not allow; remember the mode to keep."""
        name, where = self.path.name, self.path.parent
        if self.replace == "never":
            raise JobError(
                f"{name} already exists in {where}; the worker never replaces an existing file here. "
                "Choose another name or move the file away."
            )
        if not stat.S_ISREG(existing.st_mode):
            raise JobError(f"{name} already exists in {where} and is not a regular file; choose another name.")
        if not existing.st_mode & 0o222:
            raise JobError(f"{name} in {where} is read-only, so the worker does not replace it; choose another name.")
        if self.replace == "ours" and not is_worker_output(self._folder.home if self._folder else None, existing):
            raise JobError(
                f"{name} already exists in {where} and was not written by this worker (or was changed since), "
                "so it is not replaced; choose another name or move the file away."
            )
        self._keep_mode = existing.st_mode & 0o777

    def write(self, df: pd.DataFrame) -> None:
        """Append one chunk; its columns must match the first chunk's."""
        if self._tmp is None:
            raise RuntimeError("AtomicTableWriter.write() called outside its with-block")
        if self.neutralise and self.ext in _DELIMITED:
            df = neutralise_formulas(df)
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
            self._parquet = pq.ParquetWriter(self._raw, self._schema)
        elif not table.schema.equals(self._schema, check_metadata=False):
            try:
                table = table.cast(self._schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise JobError(f"Cannot write {self.path.name}: column types changed between chunks ({exc}).") from exc
        self._parquet.write_table(table)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        tmp, folder = self._tmp, self._folder
        if tmp is None or folder is None:
            return
        try:
            if exc_type is None:
                self._finish()
            self._close()
            if exc_type is None:
                self._commit(folder, tmp)
                log.info("Wrote %d rows to %s", self.rows, self.path)
            else:
                folder.discard(tmp)
        except BaseException:
            self._close()
            folder.discard(tmp)
            raise
        finally:
            self._tmp = None
            self._release()

    def _commit(self, folder: OutputFolder, tmp: str) -> None:
        """Name the finished file: a new name, or (checked again now) a file ``replace`` allows replacing."""
        existing = folder.existing()
        try:
            if existing is not None:
                self._check_replaceable(existing)
            folder.commit(tmp, replace=existing is not None)
        except FileExistsError as exc:
            raise JobError(
                f"{self.path.name} appeared in {self.path.parent} while the job was writing it; it was left "
                "untouched. Run the job again to write a new file."
            ) from exc
        except OSError as exc:
            raise JobError(f"Cannot write {self.path}: {exc.strerror or exc}.") from exc
        if self._written is not None:
            record_output(folder.home, self._written, self.path)

    def _release(self) -> None:
        """Close the folder if this writer opened it."""
        if self._folder is not None and self._folder is not self._target:
            self._folder.close()
        self._folder = None

    def _finish(self) -> None:
        """Write what is buffered and flush to disk (still under the temporary name)."""
        try:
            if self.ext == ".parquet" and self._parquet is None:  # no chunk at all: an empty table
                import pyarrow.parquet as pq

                empty = pd.DataFrame(columns=self._columns or [])
                pq.write_table(pa.Table.from_pandas(empty, preserve_index=False), self._raw)
            elif self.ext == ".xlsx":
                frame = pd.concat(self._excel, ignore_index=True) if self._excel else pd.DataFrame()
                _write_xlsx_as_values(frame, self._raw)
            if self._fh is not None:
                self._fh.flush()
            if self._parquet is not None:
                self._parquet.close()
                self._parquet = None
            assert self._raw is not None
            self._raw.flush()
            fd = self._raw.fileno()
            if self._keep_mode is not None:
                os.fchmod(fd, self._keep_mode)
            with contextlib.suppress(OSError):
                os.fsync(fd)
            self._written = os.fstat(fd)
        except JobError:
            raise
        except Exception as exc:
            raise JobError(f"Cannot write {self.path.name}: {exc}.") from exc

    def _close(self) -> None:
        if self._parquet is not None:
            with contextlib.suppress(Exception):
                self._parquet.close()
            self._parquet = None
        for fh in (self._fh, self._raw):
            if fh is not None:
                with contextlib.suppress(Exception):
                    fh.close()
        self._fh = None
        self._raw = None
