"""Run job handlers off the event loop: heavy ones in their own process, light ones in a thread.

Why a process per job (not a shared ``ProcessPoolExecutor``): a job that crashes or is killed (cancel,
out of memory) must give one failed result and leave the worker, the other jobs and a notebook kernel
untouched; a shared pool breaks as a whole when one of its processes dies. Processes come from a
*forkserver* that has pandas and scikit-learn imported already, so starting one costs milliseconds, and
forking never happens from the threaded notebook kernel itself. Where forkserver does not exist
(Windows, macOS default) ``spawn`` is used.

Progress travels over a pipe; a small reader thread per job hands each message to the event loop with
``call_soon_threadsafe``, so the loop never blocks on the child.

Per-job limits, the scratch folders and the job's process group are :mod:`.jobguard`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .context import JobContext, JobSettings
from .errors import JobCancelled, JobError
from .jobguard import (
    SCRATCH_PREFIX,
    WATCH_INTERVAL,
    Watchdog,
    die_with_parent,
    kill_job_process,
    make_scratch,
    sweep_scratch,
)

log = logging.getLogger("statsbot_nb.runner")

ProgressCallback = Callable[[float, str, str], None]

#: Modules imported once in the forkserver so each job process starts warm. Callers above the runner add
#: their own job modules through ``ProcessRunner(preload=...)`` (the model browser adds its renderer), so
#: this list names nothing above the runner's layer.
PRELOAD = (
    "statsbot_nb.jobs",
    "pandas",
    "sklearn",
    "statsbot_nb.handlers.train",
    "statsbot_nb.handlers.predict",
    "statsbot_nb.handlers.files",
    "matplotlib.backends.backend_agg",
    "statsbot_nb.ml.warm",  # scikit-learn's estimators, metrics and preprocessing, xgboost, lightgbm
)


def resolve_target(target: str) -> Callable[[dict[str, Any], JobContext], dict[str, Any]]:
    """Import ``"package.module:function"`` and return the function."""
    module_name, _, func_name = target.partition(":")
    module = importlib.import_module(module_name)
    func = getattr(module, func_name)
    if not callable(func):
        raise TypeError(f"{target} is not callable")
    return func  # type: ignore[no-any-return]


def describe_crash(exc: BaseException) -> str:
    """A sentence for an unexpected exception inside a handler (details stay in the local log)."""
    if isinstance(exc, MemoryError):
        return "The job ran out of memory; try a smaller file or fewer columns."
    return (
        f"The job failed with an unexpected error ({type(exc).__name__}: {str(exc)[:200]}); "
        "the full details are in the worker's local log."
    )


def _call_handler(target: str, params: dict[str, Any], ctx: JobContext) -> tuple[str, Any, Any]:
    """Run a handler and turn its outcome into a message tuple (shared by both runners)."""
    try:
        data = resolve_target(target)(params, ctx)
    except JobCancelled as exc:
        return ("cancelled", str(exc), None)
    except JobError as exc:
        return ("error", str(exc), None)
    except Exception as exc:
        return ("crash", describe_crash(exc), traceback.format_exc())
    if not isinstance(data, dict):
        return ("crash", "The job handler returned no result data.", f"{target} returned {type(data)}")
    return ("result", data, None)


def _child_main(
    target: str,
    params: dict[str, Any],
    settings: JobSettings,
    conn: multiprocessing.connection.Connection,
    job_id: str = "",
    scratch: str = "",
    with_parent: bool = False,
) -> None:
    """Entry point of a job process: run the handler, stream progress, send one outcome.

    ``scratch`` is the job's private folder, made (and later removed) by the parent: the working folder
    and the temporary folder of everything the job runs, so a library option that writes a bare file
    name or a temporary file lands there and is deleted even if this process is killed. Handlers resolve
    paths against ``settings.cwd``, not the process's working folder.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if hasattr(os, "setpgid"):
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)  # lead a group, so a kill reaches the processes this job starts too
    if with_parent and sys.platform.startswith("linux"):
        die_with_parent()
    own_scratch = not scratch
    scratch = scratch or tempfile.mkdtemp(prefix=SCRATCH_PREFIX)
    os.chdir(scratch)
    os.environ["TMPDIR"] = scratch
    tempfile.tempdir = scratch

    def sink(percent: float, message: str, stage: str) -> None:
        conn.send(("progress", (percent, message, stage), None))

    try:
        conn.send(_call_handler(target, params, JobContext(settings, sink, job_id=job_id, own_process=True)))
    except BaseException as exc:  # e.g. a result that cannot be pickled
        conn.send(("crash", describe_crash(exc), traceback.format_exc()))
    finally:
        with contextlib.suppress(Exception):
            conn.send(("peak", _peak_rss_bytes(), None))
        conn.close()
        if own_scratch:
            os.chdir("/")
            shutil.rmtree(scratch, ignore_errors=True)


def _peak_rss_bytes() -> int | None:
    """This process's peak resident memory in bytes (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _outcome(kind: str, payload: Any, details: Any, target: str) -> dict[str, Any]:
    """Turn a message tuple into the result dict or the right exception."""
    if kind == "result":
        return payload  # type: ignore[no-any-return]
    if kind == "cancelled":
        raise JobCancelled(payload)
    if kind == "crash":
        log.error("Job handler %s crashed:\n%s", target, details)
    raise JobError(payload)


class ProcessRunner:
    """Runs each job in a fresh process; cancelling the awaiting task kills that process."""

    def __init__(
        self,
        start_method: str | None = None,
        preload: tuple[str, ...] = PRELOAD,
        watch_interval: float = WATCH_INTERVAL,
    ) -> None:
        self.watch_interval = watch_interval
        methods = multiprocessing.get_all_start_methods()
        method = start_method or ("forkserver" if "forkserver" in methods else "spawn")
        self._ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            self._ctx.set_forkserver_preload(list(preload))
        self._procs: set[multiprocessing.process.BaseProcess] = set()

    def warm_up(self) -> None:
        """Start the forkserver (blocking, seconds: call it from a thread) so the first job starts fast.

        Also sweeps scratch folders left by workers that were killed (see :func:`sweep_scratch`).
        """
        removed = sweep_scratch()
        if removed:
            log.info("Removed %d scratch folder(s) left by workers that ended abruptly", len(removed))
        if self._ctx.get_start_method() == "forkserver":
            from multiprocessing import forkserver

            forkserver.ensure_running()

    async def run(
        self,
        target: str,
        params: dict[str, Any],
        settings: JobSettings,
        on_progress: ProgressCallback,
        job_id: str = "",
    ) -> dict[str, Any]:
        """Run ``target(params, ctx)`` in its own process and return its result data.

        Raises :class:`JobError` (a sentence) on failure, :class:`JobCancelled` if the handler cancelled,
        and kills the process if the awaiting task is cancelled.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any, Any]] = asyncio.Queue()
        scratch = make_scratch()
        try:
            return await self._run(target, params, settings, on_progress, job_id, loop, queue, scratch)
        finally:
            await asyncio.to_thread(shutil.rmtree, scratch, True)

    async def _run(
        self,
        target: str,
        params: dict[str, Any],
        settings: JobSettings,
        on_progress: ProgressCallback,
        job_id: str,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[tuple[str, Any, Any]],
        scratch: Path,
    ) -> dict[str, Any]:
        reader, writer = self._ctx.Pipe(duplex=False)
        with_parent = self._ctx.get_start_method() == "forkserver"
        proc = self._ctx.Process(
            target=_child_main,
            args=(target, params, settings, writer, job_id, str(scratch), with_parent),
            name=f"statsbot-job-{target.rpartition(':')[2]}",
        )
        starter = asyncio.ensure_future(asyncio.to_thread(proc.start))
        try:
            await asyncio.shield(starter)  # a cancel must not leave a half-started process behind
        except BaseException:
            with contextlib.suppress(BaseException):
                await starter
            if proc.pid is not None:
                kill_job_process(proc)
                await asyncio.to_thread(proc.join, 5)
            reader.close()
            writer.close()
            raise
        writer.close()
        self._procs.add(proc)
        watchdog = Watchdog(
            proc,
            getattr(settings, "max_job_memory_bytes", None),
            getattr(settings, "max_job_seconds", None),
            interval=self.watch_interval,
        ).start()

        def pump() -> None:
            try:
                while True:
                    msg = reader.recv()
                    loop.call_soon_threadsafe(queue.put_nowait, msg)
            except (EOFError, OSError):
                pass
            except Exception as exc:  # an unpicklable message: report it as a crash
                loop.call_soon_threadsafe(queue.put_nowait, ("crash", describe_crash(exc), repr(exc)))
            finally:
                reader.close()
                try:
                    loop.call_soon_threadsafe(queue.put_nowait, ("eof", None, None))
                except RuntimeError:  # loop closed
                    pass

        threading.Thread(target=pump, name="statsbot-job-pipe", daemon=True).start()
        outcome: tuple[str, Any, Any] | None = None
        try:
            while True:
                kind, payload, details = await queue.get()
                if kind == "progress":
                    on_progress(*payload)
                elif kind == "eof":
                    break
                elif kind == "peak":
                    if payload:
                        log.info("Job %s (%s) peak memory %.0f MB", job_id, target, payload / 2**20)
                elif outcome is None:
                    outcome = (kind, payload, details)
            await asyncio.to_thread(proc.join)
        except BaseException:
            if proc.is_alive():
                kill_job_process(proc)
            await asyncio.shield(asyncio.to_thread(proc.join, 5))
            raise
        finally:
            watchdog.stop()
            self._procs.discard(proc)
        if watchdog.reason is not None and (outcome is None or outcome[0] != "result"):
            log.warning("Job %s (%s) stopped: %s", job_id, target, watchdog.reason)
            raise JobError(watchdog.reason)
        if outcome is None:
            code = proc.exitcode
            how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited ({code})"
            log.error("Job process for %s %s without a result", target, how)
            raise JobError(
                f"The job's process {how} before finishing (out of memory or killed?); "
                "the worker is still running and will take new jobs."
            )
        return _outcome(*outcome, target)

    def shutdown(self) -> None:
        """Kill any job process still running (used when the worker stops)."""
        for proc in list(self._procs):
            if proc.is_alive():
                kill_job_process(proc)


class ThreadRunner:
    """Runs quick, light handlers (the model store's listing and renames) in a thread; they cannot be killed.

    Nothing that parses a user's file belongs here: such actions are ``isolated`` (see :mod:`.jobs`), so
    a hostile file costs a job process that limits bound and a cancel kills, never the worker.
    """

    async def run(
        self,
        target: str,
        params: dict[str, Any],
        settings: JobSettings,
        on_progress: ProgressCallback,
        job_id: str = "",
    ) -> dict[str, Any]:
        """Run ``target(params, ctx)`` in a worker thread and return its result data."""
        loop = asyncio.get_running_loop()

        def sink(percent: float, message: str, stage: str) -> None:
            loop.call_soon_threadsafe(on_progress, percent, message, stage)

        kind, payload, details = await asyncio.to_thread(
            _call_handler, target, params, JobContext(settings, sink, job_id=job_id)
        )
        return _outcome(kind, payload, details, target)
