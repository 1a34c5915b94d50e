"""Run job handlers off the event loop: heavy ones in their own process, light ones in a thread.

Why a process per job (not a shared ``ProcessPoolExecutor``): a job that crashes or is killed (cancel,
out of memory) must give one failed result and leave the worker, the other jobs and a notebook kernel
untouched; a shared pool breaks as a whole when one of its processes dies. Processes come from a
*forkserver* that has pandas and scikit-learn imported already, so starting one costs milliseconds, and
forking never happens from the threaded notebook kernel itself. Where forkserver does not exist
(Windows, macOS default) ``spawn`` is used.

Progress (and a learning curve's newest rounds, for the job's chart) travels over a pipe; a small reader
thread per job hands each message to the event loop with ``call_soon_threadsafe``, so the loop never blocks
on the child. Processes are started ahead of the job that will use them (one job each, see
:mod:`.jobproc`), and a result is handed on as soon as it arrives.

Per-job limits, the scratch folders and the job's process group are :mod:`.jobguard`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import threading
import time
import types
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .context import CurveSink, JobContext, JobSettings
from .errors import JobCancelled, JobError
from .jobguard import (
    WATCH_INTERVAL,
    Watchdog,
    join_process,
    kill_job_process,
    make_scratch,
    process_alive,
    sweep_scratch,
)
from .jobproc import Connection, JobOrder, Message, Standby, StandbyPool, call_handler, describe_crash, resolve_target

__all__ = ["PRELOAD", "ProcessRunner", "ThreadRunner", "describe_crash", "resolve_target"]

log = logging.getLogger("statsbot_nb.runner")

ProgressCallback = Callable[[float, str, str], None]

#: Seconds a job process may take to exit after sending its outcome before it (and its group) is killed.
REAP_GRACE = 10.0

#: Modules imported once in the forkserver so each job process starts warm. Callers above the runner add
#: their own job modules through ``ProcessRunner(preload=...)`` (the model browser adds its renderer), so
#: this list names nothing above the runner's layer.
PRELOAD = (
    "statsbot_nb.blasenv",  # first, before any library loads: job processes start with one BLAS thread
    "statsbot_nb.jobs",
    "pandas",
    "sklearn",
    "statsbot_nb.handlers.train",
    "statsbot_nb.handlers.predict",
    "statsbot_nb.handlers.files",
    "matplotlib.backends.backend_agg",
    "statsbot_nb.ml.warm",  # scikit-learn's estimators, metrics and preprocessing, xgboost, lightgbm
    "pandas.io.formats.csvs",  # every predict writes a CSV; imported on first use in each job process
    "encodings.utf_8_sig",  # reading a CSV that may start with a byte-order mark
    "statsbot_nb.jobwarm",  # the BLAS libraries those loaded, found once (after them)
)


def main_module_names() -> list[str]:
    """What a new job process should find imported for this process's ``__main__``: multiprocessing re-runs
    the main module in every child it starts (by name for ``python -m statsbot_nb.cli`` or a notebook's
    ``ipykernel_launcher``, from its file for the ``statsbot-worker`` script), and what that main imported
    from this package (the worker, websockets, asyncio) cost 45 ms of every job process when the forkserver
    did not have it. The main module itself is not preloaded (runpy warns when it re-runs a module that is
    already imported).
    """
    import __main__

    own = getattr(getattr(__main__, "__spec__", None), "name", None)
    names: list[str] = []
    for value in list(vars(__main__).values()):
        module = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
        if isinstance(module, str) and module.startswith("statsbot_nb") and module not in (own, *names):
            names.append(module)
    return names


def _outcome(kind: str, payload: Any, details: Any, target: str) -> dict[str, Any]:
    """Turn a message tuple into the result dict or the right exception."""
    if kind == "result":
        return payload  # type: ignore[no-any-return]
    if kind == "cancelled":
        raise JobCancelled(payload)
    if kind == "crash":
        log.error("Job handler %s crashed:\n%s", target, details)
    raise JobError(payload)


def _pump(output: Connection, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Message]) -> None:
    """Hand every message of a job process to the loop (a thread: the loop never blocks on the child)."""
    try:
        while True:
            msg = output.recv()
            loop.call_soon_threadsafe(queue.put_nowait, msg)
    except (EOFError, OSError):
        pass
    except Exception as exc:  # an unpicklable message: report it as a crash
        loop.call_soon_threadsafe(queue.put_nowait, ("crash", describe_crash(exc), repr(exc)))
    finally:
        output.close()
        try:
            loop.call_soon_threadsafe(queue.put_nowait, ("eof", None, None))
        except RuntimeError:  # loop closed
            pass


class ProcessRunner:
    """Runs each job in a process of its own; cancelling the awaiting task kills that process.

    After :meth:`warm_up`, ``warm`` processes wait started ahead (:class:`~statsbot_nb.jobproc.StandbyPool`),
    so a job skips the process start; without it (a runner made for one job) each job starts its own.
    A job's result is returned as soon as its process sends it; the process is reaped and its scratch
    folder removed in the background.
    """

    def __init__(
        self,
        start_method: str | None = None,
        preload: tuple[str, ...] = PRELOAD,
        watch_interval: float = WATCH_INTERVAL,
        warm: int = 2,
    ) -> None:
        self.watch_interval = watch_interval
        methods = multiprocessing.get_all_start_methods()
        method = start_method or ("forkserver" if "forkserver" in methods else "spawn")
        self._ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            self._ctx.set_forkserver_preload([*preload, *main_module_names()])
        self._pool = StandbyPool(self._ctx, warm)
        self._procs: set[multiprocessing.process.BaseProcess] = set()
        self._background: set[asyncio.Future[Any]] = set()

    def warm_up(self) -> None:
        """Start the forkserver and the processes kept ahead (blocking, seconds: call it from a thread).

        Also sweeps scratch folders left by workers that were killed (see :func:`sweep_scratch`).
        """
        removed = sweep_scratch()
        if removed:
            log.info("Removed %d scratch folder(s) left by workers that ended abruptly", len(removed))
        if self._ctx.get_start_method() == "forkserver":
            from multiprocessing import forkserver

            forkserver.ensure_running()
        self._pool.fill()

    async def run(
        self,
        target: str,
        params: dict[str, Any],
        settings: JobSettings,
        on_progress: ProgressCallback,
        job_id: str = "",
        on_curve: CurveSink | None = None,
    ) -> dict[str, Any]:
        """Run ``target(params, ctx)`` in its own process and return its result data (``on_curve`` gets
        the chunks of a learning curve the job records).

        Raises :class:`JobError` (a sentence) on failure, :class:`JobCancelled` if the handler cancelled,
        and kills the process if the awaiting task is cancelled.
        """
        scratch = make_scratch()
        try:
            standby = await self._launch(JobOrder(target, params, settings, job_id, str(scratch)))
        except BaseException:
            await asyncio.shield(asyncio.to_thread(shutil.rmtree, scratch, True))
            raise
        self._procs.add(standby.proc)
        try:
            kind, payload, details = await self._follow(standby, settings, (on_progress, on_curve), job_id, target)
        except BaseException:
            await self._reap(standby.proc, kill=True, scratch=scratch)
            self._refill()
            raise
        # The scratch folder goes before the outcome is handed on (usually empty: one call on the loop); the
        # process, which only exits from here on, is reaped in the background.
        try:
            os.rmdir(scratch)
        except OSError:
            await asyncio.shield(asyncio.to_thread(shutil.rmtree, scratch, True))
        self._later(self._reap(standby.proc, scratch=scratch))
        self._refill()
        return _outcome(kind, payload, details, target)

    async def _launch(self, order: JobOrder) -> Standby:
        """A process that has received ``order``: one started ahead if there is one, else a new one."""
        standby = self._pool.take()
        for attempt in (1, 2):
            if standby is None:
                starter = asyncio.ensure_future(asyncio.to_thread(self._pool.start))
                try:
                    standby = await asyncio.shield(starter)  # a cancel must not leave a process behind
                except BaseException:
                    with contextlib.suppress(BaseException):
                        (await starter).close()
                    raise
            sender = asyncio.ensure_future(asyncio.to_thread(standby.orders.send, order))
            try:
                await asyncio.shield(sender)
            except (BrokenPipeError, ConnectionError, EOFError) as exc:  # it died while waiting: start anew
                standby.close()
                standby = None
                if attempt == 2:
                    raise JobError("The job's process could not be started; try again.") from exc
                continue
            except BaseException:
                with contextlib.suppress(BaseException):
                    await sender
                standby.close()
                raise
            finally:
                if standby is not None:
                    with contextlib.suppress(OSError):
                        standby.orders.close()
            break
        assert standby is not None
        return standby

    async def _follow(
        self,
        standby: Standby,
        settings: JobSettings,
        relays: tuple[ProgressCallback, CurveSink | None],
        job_id: str,
        target: str,
    ) -> Message:
        """Relay progress and curve chunks until the job's outcome (returned at once) or its process's end
        without one."""
        on_progress, on_curve = relays
        proc = standby.proc
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Message] = asyncio.Queue()
        watchdog = Watchdog(
            proc,
            getattr(settings, "max_job_memory_bytes", None),
            getattr(settings, "max_job_seconds", None),
            interval=self.watch_interval,
        ).start()
        threading.Thread(
            target=_pump, args=(standby.output, loop, queue), name="statsbot-job-pipe", daemon=True
        ).start()
        try:
            while True:
                kind, payload, details = await queue.get()
                if kind == "progress":
                    on_progress(*payload)
                elif kind == "curve":
                    if on_curve is not None:
                        on_curve(payload)
                elif kind == "peak":
                    if payload:
                        log.info("Job %s (%s) peak memory %.0f MB", job_id, target, payload / 2**20)
                elif kind == "eof":
                    break
                elif kind == "result" or watchdog.reason is None:  # a result that arrived counts
                    return (kind, payload, details)
            await asyncio.to_thread(join_process, proc)
        finally:
            watchdog.stop()
        if watchdog.reason is not None:
            log.warning("Job %s (%s) stopped: %s", job_id, target, watchdog.reason)
            raise JobError(watchdog.reason)
        code = proc.exitcode
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited ({code})"
        log.error("Job process for %s %s without a result", target, how)
        raise JobError(
            f"The job's process {how} before finishing (out of memory or killed?); "
            "the worker is still running and will take new jobs."
        )

    async def _reap(
        self, proc: multiprocessing.process.BaseProcess, kill: bool = False, scratch: Path | None = None
    ) -> None:
        """Wait for a job process to end (killing it, and what it started, if asked or if it lingers past
        :data:`REAP_GRACE` seconds after its outcome), then remove its scratch folder."""
        try:
            if kill and process_alive(proc):
                kill_job_process(proc)
            await asyncio.shield(asyncio.to_thread(join_process, proc, 5 if kill else REAP_GRACE))
            if process_alive(proc):
                kill_job_process(proc)
                await asyncio.shield(asyncio.to_thread(join_process, proc, 5))
        finally:
            self._procs.discard(proc)
            if scratch is not None:
                await asyncio.shield(asyncio.to_thread(shutil.rmtree, scratch, True))

    def _refill(self) -> None:
        """Start the processes taken since the last refill, once a job has ended: starting one while a job
        runs (a fork, then finding the BLAS libraries) took CPU from that job on a machine of two cores."""
        if self._pool.enabled:
            self._later(asyncio.to_thread(self._pool.fill))

    def _later(self, work: Awaitable[Any]) -> None:
        """Run ``work`` in the background, keeping a reference until it is done."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def shutdown(self) -> None:
        """Kill any job process still running and those waiting for a job (used when the worker stops)."""
        self._pool.close()
        for proc in list(self._procs):
            if process_alive(proc):
                kill_job_process(proc)


#: Light handlers that only read the worker's own model store. While their last run was quicker than
#: :data:`INLINE_LIMIT` they run on the event loop itself: handing a ~0.05 ms listing to a thread and back
#: (two thread wake-ups and the GIL changing hands) cost 0.1-0.4 ms, most of a listing's time to result.
INLINE = frozenset({"statsbot_nb.handlers.models:list_models"})
#: Seconds; a run slower than this (the first listing reads every metadata.json) sends the next to a thread.
INLINE_LIMIT = 0.002


class ThreadRunner:
    """Runs quick, light handlers (the model store's listing and renames) in a thread; they cannot be killed.

    Nothing that parses a user's file belongs here: such actions are ``isolated`` (see :mod:`.jobs`), so
    a hostile file costs a job process that limits bound and a cancel kills, never the worker. The
    ``inline`` targets run on the loop while they stay quick (see :data:`INLINE`), so the loop waits at
    most one slow run (a store whose every model changed at once) before the next goes to a thread again.
    """

    def __init__(self, inline: frozenset[str] = INLINE, limit: float = INLINE_LIMIT) -> None:
        self._inline = inline
        self._limit = limit
        self._last: dict[str, float] = {}  # target -> seconds its last run took (inline or in a thread)

    async def run(
        self,
        target: str,
        params: dict[str, Any],
        settings: JobSettings,
        on_progress: ProgressCallback,
        job_id: str = "",
        on_curve: CurveSink | None = None,
    ) -> dict[str, Any]:
        """Run ``target(params, ctx)`` (in a worker thread, or inline while quick) and return its result data."""
        loop = asyncio.get_running_loop()
        if self.runs_inline(target):
            return self.run_inline(target, params, settings, on_progress, job_id)

        def sink(percent: float, message: str, stage: str) -> None:
            loop.call_soon_threadsafe(on_progress, percent, message, stage)

        def curve(chunk: dict[str, Any]) -> None:
            if on_curve is not None:
                loop.call_soon_threadsafe(on_curve, chunk)

        ctx = JobContext(settings, sink, job_id=job_id, curve_sink=curve if on_curve is not None else None)
        kind, payload, details = await asyncio.to_thread(self._timed, target, params, ctx)
        return _outcome(kind, payload, details, target)

    def runs_inline(self, target: str) -> bool:
        """Whether the next run of ``target`` happens on the loop (an inline target whose last run was quick)."""
        return target in self._inline and self._last.get(target, self._limit) < self._limit

    def run_inline(
        self,
        target: str,
        params: dict[str, Any],
        settings: JobSettings,
        on_progress: ProgressCallback,
        job_id: str = "",
    ) -> dict[str, Any]:
        """Run ``target(params, ctx)`` here and now, on the caller's thread (the loop; see :meth:`runs_inline`)."""
        ctx = JobContext(settings, on_progress, job_id=job_id)
        kind, payload, details = self._timed(target, params, ctx)
        return _outcome(kind, payload, details, target)

    def _timed(self, target: str, params: dict[str, Any], ctx: JobContext) -> Message:
        started = time.perf_counter()
        try:
            outcome = call_handler(target, params, ctx)
            ctx.flush_curve()
            return outcome
        finally:
            self._last[target] = time.perf_counter() - started
