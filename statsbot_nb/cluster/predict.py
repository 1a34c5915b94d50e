"""A ``predict`` job on a Dask cluster: which jobs go there, the partitions, and the one or many output files.

When the worker has a scheduler (``JobSettings.dask_scheduler``) the ``predict`` handler asks
:func:`why_not_predict_on_cluster`; a CSV/TSV/Parquet input then predicts on the cluster, after the file
policy and the cluster path rule (:func:`statsbot_nb.cluster.connect.check_cluster_path`) as for training.
The model is loaded here by the store's checksum-checking loader and sent to the workers as the fitted
object; each worker predicts whole partitions (:mod:`.parts`) exactly as the local ``predict`` does chunks.

The output, as the job's ``output_layout`` parameter chooses (:func:`output_layout`):

- ``one_file`` (the default, what the bot gets): the file the local ``predict`` writes, same name, same
  folder, rows in input order. Partitions come back here in order (a few ahead at a time, so memory stays
  bounded on both sides) and are written through the policy's opened folder and the atomic writer.
- ``per_partition``: a new folder of that name (without ``.csv``) beside the input holding
  ``part-00000.csv``, ``part-00001.csv``... in input order (a partition without rows gets no file). The
  cluster's workers write the parts themselves when the cluster runs on this machine or the folder is under
  a ``--dask-shared-dir`` (the rows never travel here); otherwise the parts come back and are written here.
  A failed job removes the parts it wrote and the folder.

A file under :data:`SMALL_FILE_BYTES` is one partition anyway, so with the default layout it predicts here
(the cluster would only add its overhead); the job's notes say so.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import JobError
from ..ml.constants import Progress
from ..ml.data import AtomicTableWriter
from ..ml.predict import Predictor
from ..safefiles import CLOEXEC, DIRECTORY, NOFOLLOW, OpenedTable, OutputFolder, open_nofollow, record_output
from . import CLUSTER_FORMATS
from .connect import bounded_result, check_cluster_path, cluster_failure, open_client, run_partitions, watch_for
from .parts import FileIdentity, NotUtf8, Part, PartSink, predict_part, remove_parts, write_part

ONE_FILE = "one_file"
PER_PARTITION = "per_partition"
OUTPUT_LAYOUTS = (ONE_FILE, PER_PARTITION)
#: bytes of CSV/TSV per partition (Parquet files are cut by row group)
BLOCK_BYTES = 64 * 2**20
#: a file below this is one partition: with the default layout it predicts here, faster than on a cluster
SMALL_FILE_BYTES = BLOCK_BYTES
MARKER_PREFIX = ".statsbot-parts-"
DURING = "the prediction"


def output_layout(raw: object) -> str:
    """The ``output_layout`` parameter: ``one_file`` (also when left out) or ``per_partition``."""
    if raw is None or raw == "":
        return ONE_FILE
    if isinstance(raw, str) and raw in OUTPUT_LAYOUTS:
        return raw
    raise JobError(
        "output_layout must be 'one_file' (the default: one CSV beside the input) or 'per_partition' (a "
        f"folder beside the input with one CSV per partition of the Dask cluster), not {raw!r}."
    )


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def why_not_predict_on_cluster(path: Path, size: int, model_type: object, layout: str) -> str | None:
    """None when this prediction runs on the cluster, else the sentence saying why it runs here."""
    if path.suffix.lower() not in CLUSTER_FORMATS:
        return f"the cluster reads CSV, TSV and Parquet files, and {path.name} is not one."
    if str(model_type).startswith("keras_"):
        return "keras_* models predict here (the cluster's workers would need Keras and its backend)."
    if layout == ONE_FILE and size < SMALL_FILE_BYTES:
        return (
            f"{path.name} ({_mb(size)}) is under {_mb(SMALL_FILE_BYTES)}, a single partition, where the "
            "cluster would only add its overhead."
        )
    return None


@dataclass
class ClusterPrediction:
    """What the handler builds the job's result from."""

    rows: int
    output: Path  # the predictions file, or the folder of parts
    head_input: pd.DataFrame
    head_extra: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def plan_parts(source: OpenedTable, columns: list[str], blocksize: int, local: bool, encoding: str) -> list[Part]:
    """The partitions of the opened input: byte blocks of a CSV/TSV, row groups of a Parquet file."""
    identity = FileIdentity.of(source.stat, local)
    path, cols = str(source.path), tuple(columns)
    if source.suffix == ".parquet":
        import pyarrow.parquet as pq

        with source.open() as fh, pq.ParquetFile(fh) as pf:
            groups = [pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)]
        return [Part(path, ".parquet", i, i, rows, cols, identity) for i, rows in enumerate(groups)]
    with source.open() as fh:
        header = fh.readline()
    offsets = range(0, source.stat.st_size, max(1, blocksize))
    return [Part(path, source.suffix, i, o, blocksize, cols, identity, header, encoding) for i, o in enumerate(offsets)]


def _one_thread(predictor: Predictor) -> None:
    """Let each cluster task predict on one thread (the cluster's worker threads are the parallelism)."""
    model = predictor.model
    final = model.steps[-1][1] if isinstance(getattr(model, "steps", None), list) else model
    with contextlib.suppress(Exception):
        if final.get_params(deep=False).get("n_jobs") not in (None, 1):
            final.set_params(n_jobs=1)


def predict_on_cluster(
    source: OpenedTable,
    columns: list[str],
    predictor: Predictor,
    output: OutputFolder,
    progress: Progress,
    *,
    address: str,
    layout: str = ONE_FILE,
    local: bool = False,
    shared_dirs: tuple[Path, ...] = (),
    timeout: float = 30.0,
    blocksize: int | None = None,
    workers_write: bool | None = None,
) -> ClusterPrediction:
    """Predict ``source`` with ``predictor`` on the cluster at ``address`` into ``output`` (the folder the
    policy opened for the one-file output; ``per_partition`` makes its folder there).

    ``blocksize``: bytes per CSV/TSV partition (None: :data:`BLOCK_BYTES`). ``workers_write`` (None:
    decided by the rule in the module docstring) says who writes the parts.
    Raises :class:`JobError` with a sentence, also for a cluster that went away.
    """
    _one_thread(predictor)
    with open_client(address, timeout) as client:
        try:  # the fitted model goes to the workers once, as an object
            workers = client.scheduler_info().get("workers", {})
            shipped = client.scatter(predictor, hash=False)
        except Exception as exc:
            raise cluster_failure(address, exc, DURING) from exc
        threads = sum(int(w.get("nthreads", 1)) for w in workers.values()) or 1
        notes: list[str] = []
        for encoding in ("utf-8", "latin-1"):
            parts = plan_parts(source, columns, blocksize or BLOCK_BYTES, local, encoding)
            try:
                if layout == PER_PARTITION:
                    write_here = not (
                        workers_write
                        if workers_write is not None
                        else _workers_can_write(output, address, local, shared_dirs)
                    )
                    result = _per_partition(
                        client, address, parts, shipped, output, progress, local, write_here, threads, source.name
                    )
                else:
                    result = _one_file(client, address, parts, shipped, output, progress, threads, source.name)
            except NotUtf8:
                notes = [f"{source.name} is not UTF-8, so it was read as Latin-1 (as on this machine)."]
                continue
            break
        else:  # pragma: no cover - Latin-1 decodes every byte
            raise JobError(f"{source.name} could not be decoded; save it as UTF-8.")
    where = (
        f"Predicted on the Dask cluster at {address} ({len(workers)} worker(s), {len(parts)} partition(s), "
        f"{result.rows:,} rows)."
    )
    result.notes[:0] = [where, *notes]
    return result


def _workers_can_write(output: OutputFolder, address: str, local: bool, shared_dirs: tuple[Path, ...]) -> bool:
    """True when the cluster's workers see the output folder at the same path (the path rule of inputs)."""
    try:
        check_cluster_path(output.path.parent, address, local, shared_dirs)
    except JobError:
        return False
    return True


def _heads(results: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The first rows of the input and of the predictions, over partitions in input order."""
    from ..ml.predict import SAMPLE_ROWS

    inputs = [r["head_input"] for r in results if r.get("rows")]
    extras = [r["head_extra"] for r in results if r.get("rows")]
    if not inputs:
        return pd.DataFrame(), pd.DataFrame()
    return pd.concat(inputs).iloc[:SAMPLE_ROWS], pd.concat(extras).iloc[:SAMPLE_ROWS]


def _in_order(
    client: Any,
    address: str,
    parts: list[Part],
    submit: Callable[[Part], Any],
    window: int,
    handle: Callable[[int, dict[str, Any]], None],
) -> None:
    """Run one task per part, at most ``window`` ahead, and ``handle`` each result in input order."""
    pending: dict[int, Any] = {}
    ahead = 0
    watch = watch_for(client, address, DURING)  # a cluster gone or without workers: a sentence, never a hang
    try:
        for i in range(len(parts)):
            while ahead < len(parts) and ahead < i + window:
                pending[ahead] = submit(parts[ahead])
                ahead += 1
            future = pending.pop(i)
            try:
                result = bounded_result(future, watch)
                watch.progressed()
            except JobError:
                raise
            except Exception as exc:
                raise cluster_failure(address, exc, DURING) from exc
            finally:
                future.release()
            if result.get("not_utf8"):
                raise NotUtf8()
            handle(i, result)
    finally:
        with contextlib.suppress(Exception):
            client.cancel(list(pending.values()), force=True)


def _gather(
    client: Any,
    address: str,
    parts: list[Part],
    shipped: Any,
    threads: int,
    progress: Progress,
    write: Callable[[int, list[pd.DataFrame], dict[str, Any]], None],
) -> tuple[list[dict[str, Any]], int]:
    """Predict every part on the cluster and bring the results back in input order, a few ahead at a time;
    ``write(i, frames, result)`` stores each part's frames here. Returns the results (without frames) and rows."""
    results: list[dict[str, Any]] = []
    rows = 0

    def handle(i: int, result: dict[str, Any]) -> None:
        nonlocal rows
        write(i, result.pop("frames"), result)
        rows += result["rows"]
        results.append(result)
        _report(progress, len(parts), rows, i)

    def submit(part: Part) -> Any:
        return client.submit(predict_part, part, shipped, None, pure=False)

    _in_order(client, address, parts, submit, max(2, min(16, 2 * threads)), handle)
    return results, rows


def _report(progress: Progress, total: int, rows: int, i: int) -> None:
    progress(5 + 90 * (i + 1) / max(total, 1), f"Predicted partition {i + 1} of {total} ({rows:,} rows)", "predicting")


def _no_rows(name: str) -> JobError:
    return JobError(f"{name} has no rows to predict on.")


def _one_file(
    client: Any,
    address: str,
    parts: list[Part],
    shipped: Any,
    output: OutputFolder,
    progress: Progress,
    threads: int,
    source_name: str,
) -> ClusterPrediction:
    """Gather the partitions in order and write them into the one predictions file."""
    with AtomicTableWriter(output, replace="never") as writer:

        def write(_i: int, frames: list[pd.DataFrame], _result: dict[str, Any]) -> None:
            for frame in frames:
                writer.write(frame)

        results, rows = _gather(client, address, parts, shipped, threads, progress, write)
        if rows == 0:
            raise _no_rows(source_name)
        progress(97, f"Writing {output.name}", "saving")
    head_input, head_extra = _heads(results)
    return ClusterPrediction(rows, output.path, head_input, head_extra)


def _new_folder(output: OutputFolder) -> tuple[str, int]:
    """Create the parts folder (a new name beside the one-file output) in the opened folder; its name and fd."""
    stem = output.path.stem
    for n in range(1, 1000):
        name = stem if n == 1 else f"{stem}_{n}"
        try:
            os.mkdir(name, dir_fd=output.dir_fd)
        except FileExistsError:
            continue
        except OSError as exc:
            raise JobError(f"Cannot create the folder {name} in {output.path.parent}: {exc.strerror or exc}.") from exc
        return name, os.open(name, os.O_RDONLY | DIRECTORY | NOFOLLOW | CLOEXEC, dir_fd=output.dir_fd)
    raise JobError(f"No free folder name beside {output.path}; move older prediction folders away.")


def _per_partition(
    client: Any,
    address: str,
    parts: list[Part],
    shipped: Any,
    output: OutputFolder,
    progress: Progress,
    local: bool,
    write_here: bool,
    threads: int,
    source_name: str,
) -> ClusterPrediction:
    """One ``part-NNNNN.csv`` per partition in a new folder, written by the workers or gathered and written here."""
    name, fd = _new_folder(output)
    folder = OutputFolder(fd, output.path.parent / name, output.home)
    marker = MARKER_PREFIX + secrets.token_hex(16)
    done = False
    try:
        os.close(open_nofollow(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, dir_fd=fd, mode=0o600))
        st = os.fstat(fd)
        sink = PartSink(str(folder.path), marker, st.st_dev if local else None, st.st_ino if local else None)
        if write_here:

            def write(i: int, frames: list[pd.DataFrame], result: dict[str, Any]) -> None:
                if result["rows"]:
                    result["file"] = write_part(frames, sink, parts[i].index)

            results, _ = _gather(client, address, parts, shipped, threads, progress, write)
        else:
            from dask import delayed

            tasks = [delayed(predict_part, pure=False)(part, shipped, sink) for part in parts]

            def step(n: int, total: int, what: str) -> None:
                progress(5 + 90 * n / max(total, 1), f"{what}: partition {n} of {total}", "predicting")

            results = run_partitions(client, address, tasks, step, "Predicted and written", DURING)
            if any(r.get("not_utf8") for r in results):
                raise NotUtf8()
        if not any(r.get("rows") for r in results):
            raise _no_rows(source_name)
        files = [r["file"] for r in results if r.get("file")]
        for part_file in files:
            with contextlib.suppress(OSError):
                record_output(
                    output.home, os.stat(part_file, dir_fd=fd, follow_symlinks=False), folder.path / part_file
                )
        done = True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(marker, dir_fd=fd)
        if not done:
            remove_parts(folder, marker)
        folder.close()
        if not done:
            with contextlib.suppress(OSError):
                os.rmdir(name, dir_fd=output.dir_fd)
    rows = sum(int(r.get("rows", 0)) for r in results)
    head_input, head_extra = _heads(results)
    who = "gathered and written here" if write_here else "written by the cluster's workers"
    note = (
        f"One file per partition in {name}/: {len(files)} file(s), part-00000.csv on in input order (a partition "
        f"without rows has none), {who}."
    )
    return ClusterPrediction(rows, folder.path, head_input, head_extra, [note])


__all__ = [
    "BLOCK_BYTES",
    "ONE_FILE",
    "OUTPUT_LAYOUTS",
    "PER_PARTITION",
    "SMALL_FILE_BYTES",
    "ClusterPrediction",
    "output_layout",
    "plan_parts",
    "predict_on_cluster",
    "why_not_predict_on_cluster",
]
