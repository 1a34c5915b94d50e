"""What a ``predict`` job runs on the cluster's workers: read one partition, predict it, write or return it.

A partition is read the way the local ``predict`` reads a chunk, so its predictions are the same row for
row: a CSV/TSV byte block (cut at line ends, the file's header put in front) parsed by pandas with its
own type inference, or one Parquet row group read by pyarrow. The worker opens the file by the path the
policy resolved here and first compares what it opened with what the policy opened (:class:`FileIdentity`),
so a file swapped or changed meanwhile is refused with a sentence instead of predicted on.

The model arrives as the fitted :class:`~statsbot_nb.ml.predict.Predictor` object this machine loaded
from its store (checksums checked); nothing is ever unpickled on the cluster from a path.

Per-partition output written by a worker goes into the folder this job created, and only into it: the
worker opens the folder without following a final link, checks it is that folder (its identity when the
cluster runs on this machine, and always a hidden marker file with a random name the job put there), and
creates ``part-NNNNN.csv`` relative to that opened folder through the same atomic writer the local
``predict`` uses, so a part appears complete or not at all and never replaces a file.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import JobError, exception_line
from ..ml.data import AtomicTableWriter
from ..ml.predict import CHUNK_ROWS, SAMPLE_ROWS, Predictor, with_predictions
from ..safefiles import CLOEXEC, DIRECTORY, NOFOLLOW, OutputFolder, open_nofollow

_DELIMITERS = {".csv": ",", ".tsv": "\t"}


def part_name(index: int) -> str:
    """``part-00003.csv``: the file of partition 3 (names sort in input order)."""
    return f"part-{index:05d}.csv"


def is_part_file(name: str) -> bool:
    """True for a part file or an atomic writer's temporary part (what a failed job removes again)."""
    if name.startswith(".part-") and name.endswith(".tmp"):
        return True
    return name.startswith("part-") and name.endswith(".csv") and name[5:-4].isdigit()


@dataclass(frozen=True)
class FileIdentity:
    """What a worker compares with the file it opened: size and modification second always; device and
    inode only when the cluster runs on this machine (a shared mount may number them its own way)."""

    size: int
    mtime: int
    dev: int | None = None
    ino: int | None = None

    @classmethod
    def of(cls, st: os.stat_result, local: bool) -> FileIdentity:
        """The identity of ``st`` as the cluster's workers can check it."""
        if local:
            return cls(st.st_size, int(st.st_mtime), st.st_dev, st.st_ino)
        return cls(st.st_size, int(st.st_mtime))

    def matches(self, st: os.stat_result) -> bool:
        """True when ``st`` describes the same, unchanged file."""
        if (st.st_size, int(st.st_mtime)) != (self.size, self.mtime):
            return False
        return self.dev is None or (st.st_dev, st.st_ino) == (self.dev, self.ino)


@dataclass(frozen=True)
class Part:
    """One partition of the input: a byte range of a CSV/TSV (``offset``, ``length``) or a Parquet row
    group (``offset`` is its number, ``length`` its rows)."""

    path: str
    suffix: str
    index: int
    offset: int
    length: int
    columns: tuple[str, ...]
    identity: FileIdentity
    header: bytes = b""
    encoding: str = "utf-8"


@dataclass(frozen=True)
class PartSink:
    """The folder a worker writes its part into: its path, the marker that proves it, and (cluster on this
    machine) its device and inode."""

    folder: str
    marker: str
    dev: int | None = None
    ino: int | None = None


class NotUtf8(Exception):
    """A CSV/TSV block is not UTF-8: the job reads the whole file again as Latin-1, as the local reader does."""


def _changed(part: Part) -> JobError:
    return JobError(
        f"{Path(part.path).name} changed while the Dask cluster was reading it (or its workers see another "
        f"file at {part.path}); run the prediction again once the file is complete."
    )


def read_part(part: Part) -> pd.DataFrame:
    """The rows of one partition, typed as pandas types them for the local ``predict``'s chunks."""
    try:  # never through a final link, never blocking on a FIFO put there meanwhile
        fd = open_nofollow(part.path, os.O_RDONLY)
    except OSError as exc:
        raise JobError(
            f"A worker of the Dask cluster cannot open {part.path} ({exc.strerror or exc}); the file must be "
            "at the same path on every worker (a folder given with --dask-shared-dir)."
        ) from exc
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not part.identity.matches(st):
            raise _changed(part)
        os.set_blocking(fd, True)
        try:
            if part.suffix == ".parquet":
                import pyarrow.parquet as pq

                with pq.ParquetFile(fh) as pf:
                    table = pf.read_row_group(part.offset, columns=list(part.columns))
                return table.to_pandas(ignore_metadata=True)[list(part.columns)]
            return _read_block(fh, part)
        except (JobError, NotUtf8):
            raise
        except Exception as exc:
            detail = exception_line(exc, 200)
            raise JobError(
                f"Partition {part.index + 1} of {Path(part.path).name} could not be read ({detail}); check the "
                "file is complete. A quoted value that spans lines cannot be cut into partitions: predict "
                "such a file without Dask."
            ) from exc


def _read_block(fh: Any, part: Part) -> pd.DataFrame:
    from fsspec.utils import read_block

    block = read_block(fh, part.offset, part.length, delimiter=b"\n")
    data = block if part.offset == 0 else part.header + block
    columns = list(part.columns)
    try:
        frame = pd.read_csv(io.BytesIO(data), sep=_DELIMITERS[part.suffix], usecols=columns, encoding=part.encoding)
    except UnicodeDecodeError as exc:
        raise NotUtf8() from exc
    except pd.errors.EmptyDataError:  # a block without any line of its own
        frame = pd.DataFrame(columns=columns)
    return frame[columns].reset_index(drop=True)


def predicted(predictor: Predictor, frame: pd.DataFrame) -> tuple[list[pd.DataFrame], pd.DataFrame, pd.DataFrame]:
    """The output rows of ``frame`` (input columns and predictions, in slices of the local chunk size) and
    the first rows of its input and of its prediction columns (for the job's result)."""
    out: list[pd.DataFrame] = []
    head_input, head_extra = frame.iloc[:0], pd.DataFrame()
    for start in range(0, len(frame), CHUNK_ROWS):
        chunk = frame.iloc[start : start + CHUNK_ROWS]
        extra = predictor.predict(chunk)
        if start == 0:
            head_input, head_extra = chunk.iloc[:SAMPLE_ROWS], extra.iloc[:SAMPLE_ROWS]
        out.append(with_predictions(chunk, extra))
    return out, head_input, head_extra


def open_sink(sink: PartSink, name: str) -> OutputFolder:
    """The job's output folder opened on a worker (or here) and checked to be that folder, for ``name``."""
    try:
        fd = os.open(sink.folder, os.O_RDONLY | DIRECTORY | NOFOLLOW | CLOEXEC)
    except OSError as exc:
        raise JobError(
            f"A worker of the Dask cluster cannot open the output folder {sink.folder} ({exc.strerror or exc})."
        ) from exc
    try:
        st = os.fstat(fd)
        same = sink.dev is None or (st.st_dev, st.st_ino) == (sink.dev, sink.ino)
        try:
            marked = stat.S_ISREG(os.stat(sink.marker, dir_fd=fd, follow_symlinks=False).st_mode)
        except OSError:
            marked = False
        if not (same and marked):
            raise JobError(
                f"The output folder {sink.folder} was replaced while the job ran, so nothing was written "
                "there; run the prediction again."
            )
    except BaseException:
        os.close(fd)
        raise
    return OutputFolder(fd, Path(sink.folder) / name, None)


def write_part(frames: list[pd.DataFrame], sink: PartSink, index: int) -> str:
    """Write one partition's output rows as ``part-NNNNN.csv`` in the checked folder; its name."""
    name = part_name(index)
    with open_sink(sink, name) as folder, AtomicTableWriter(folder, replace="never") as writer:
        for frame in frames:
            writer.write(frame)
    return name


def predict_part(part: Part, predictor: Predictor, sink: PartSink | None) -> dict[str, Any]:
    """One cluster task: read, predict, and write the part (``sink``) or return its rows (no sink).

    Returns ``rows``, the first rows (``head_input``, ``head_extra``), and ``file`` (written) or ``frames``
    (to gather); ``not_utf8`` when the block is not UTF-8. A partition without rows writes no file.
    """
    try:
        frame = read_part(part)
    except NotUtf8:
        return {"not_utf8": True}
    frames, head_input, head_extra = predicted(predictor, frame)
    result: dict[str, Any] = {"rows": len(frame), "head_input": head_input, "head_extra": head_extra}
    if sink is None:
        result["frames"] = frames
    elif len(frame):
        result["file"] = write_part(frames, sink, part.index)
    return result


def remove_parts(folder: OutputFolder, marker: str) -> None:
    """After a failed job: remove the parts and temporary parts it wrote, its marker, and the folder if empty."""
    with contextlib.suppress(OSError):
        for name in os.listdir(folder.dir_fd):
            if is_part_file(name) or name == marker:
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=folder.dir_fd)


__all__ = [
    "FileIdentity",
    "NotUtf8",
    "Part",
    "PartSink",
    "is_part_file",
    "part_name",
    "predict_part",
    "read_part",
    "remove_parts",
    "write_part",
]
