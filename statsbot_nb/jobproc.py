"""Job processes: what runs inside one, and the warm ones started ahead of the next job.

A job process runs exactly one job and then exits, so a crash, a kill, a cancel or a limit stops that one
job and nothing else. Starting one costs a fork of the forkserver (which has pandas and scikit-learn
imported) and multiprocessing's preparation of the child; on the path from a job's arrival to its result
that was most of what a small job cost. A :class:`StandbyPool` therefore keeps a process *started ahead*:
it has done all of that, leads its own process group, and blocks reading its job pipe. When a job comes,
the runner sends it down that pipe and starts the next standby in the background. A standby never
runs a second job: after its one job it exits, as a freshly started process would.

Messages a job process sends on its output pipe, in order: any number of ``("progress", (percent,
message, stage), None)`` and ``("curve", chunk, None)`` (a learning curve's newest rounds, for the job's
chart: see :meth:`JobContext.curve_point`), one ``("peak", bytes_or_None, None)``, then exactly one
outcome — ``("result", data, None)``, ``("error", sentence, None)``, ``("cancelled", sentence, None)`` or
``("crash", sentence, traceback)`` — and nothing after it, so the runner can hand the outcome on as soon as it
arrives and reap the process afterwards.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import tempfile
import threading
import traceback
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .context import JobContext, JobSettings
from .errors import JobCancelled, JobError
from .jobguard import PROCESS_LOCK, die_with_parent, join_process, kill_job_process, process_alive

log = logging.getLogger("statsbot_nb.runner")

Connection = multiprocessing.connection.Connection
Message = tuple[str, Any, Any]


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


def call_handler(target: str, params: dict[str, Any], ctx: JobContext) -> Message:
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


def peak_rss_bytes() -> int | None:
    """This process's peak resident memory in bytes (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


@dataclass(frozen=True)
class JobOrder:
    """What a standby is sent: the handler, its parameters and settings, the job id, its scratch folder."""

    target: str
    params: dict[str, Any]
    settings: JobSettings
    job_id: str
    scratch: str


def standby_main(orders: Connection, conn: Connection, with_parent: bool = False) -> None:
    """Entry point of a job process: get ready, wait for one :class:`JobOrder`, run it, exit.

    Ctrl-C is the parent's to handle; the process leads its own group (a kill reaches what the job starts)
    and, with a forkserver on Linux, dies with it. A closed order pipe (the runner shut down or was
    dropped) ends the process without running anything.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(os, "setpgid"):
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)
    if with_parent and sys.platform.startswith("linux"):
        die_with_parent()
    try:
        order = orders.recv()
    except (EOFError, OSError):
        conn.close()
        return
    finally:
        orders.close()
    run_order(order, conn)


def run_order(order: JobOrder, conn: Connection) -> None:
    """Run one job in this process: its scratch folder is the working and temporary folder of everything
    it runs (made and removed by the parent, so a bare file name a library writes lands there and goes
    even if this process is killed); handlers resolve paths against ``settings.cwd``."""
    os.chdir(order.scratch)
    os.environ["TMPDIR"] = order.scratch
    tempfile.tempdir = order.scratch

    def sink(percent: float, message: str, stage: str) -> None:
        conn.send(("progress", (percent, message, stage), None))

    def curve(chunk: dict[str, Any]) -> None:
        conn.send(("curve", chunk, None))

    try:
        from . import jobwarm  # imported by the forkserver already: its BLAS controller comes with the fork

        ctx = JobContext(
            order.settings,
            sink,
            job_id=order.job_id,
            own_process=True,
            limiter=jobwarm.limit_threads,
            curve_sink=curve,
        )
        outcome = call_handler(order.target, order.params, ctx)
        with contextlib.suppress(Exception):
            ctx.flush_curve()
    except BaseException as exc:  # pragma: no cover - call_handler catches Exception; this is SystemExit & co
        outcome = ("crash", describe_crash(exc), traceback.format_exc())
    try:
        with contextlib.suppress(Exception):
            conn.send(("peak", peak_rss_bytes(), None))
        try:
            conn.send(outcome)
        except Exception as exc:  # e.g. a result that cannot be pickled
            conn.send(("crash", describe_crash(exc), traceback.format_exc()))
    finally:
        conn.close()


@dataclass
class Standby:
    """A started job process waiting for its order, with the parent's ends of its two pipes."""

    proc: multiprocessing.process.BaseProcess
    orders: Connection
    output: Connection

    def close(self) -> None:
        """Stop the waiting process (it has no job, so nothing is lost) and reap it."""
        for end in (self.orders, self.output):
            with contextlib.suppress(OSError):
                end.close()
        if process_alive(self.proc):  # it holds no job: stopping it at once loses nothing
            kill_job_process(self.proc)
        join_process(self.proc, 1)


#: Every pool not yet closed: closed at exit, before multiprocessing joins its children (a process waiting
#: for an order would otherwise hold the exit up).
_POOLS: weakref.WeakSet[StandbyPool] = weakref.WeakSet()
#: Every job process started: one still alive at exit is stopped too. A worker stops its jobs before
#: that (``session``'s exit hook cancels and reports them); what is left is a process started for a job
#: or a drawing that the exiting interpreter will never hand its order or read, and multiprocessing
#: would wait for it forever.
_STARTED: weakref.WeakSet[multiprocessing.process.BaseProcess] = weakref.WeakSet()


@atexit.register
def _close_pools() -> None:
    for pool in list(_POOLS):
        pool.close()
    for proc in list(_STARTED):
        if process_alive(proc):
            kill_job_process(proc)
            join_process(proc, 1)


class StandbyPool:
    """Job processes started ahead (``size`` of them once :meth:`fill` was called), handed out one per job.

    Thread-safe: processes are started from threads (starting one blocks for milliseconds) while the
    event loop takes them.
    """

    def __init__(self, ctx: multiprocessing.context.BaseContext, size: int = 1) -> None:
        self._ctx = ctx
        self.size = size
        self._ready: list[Standby] = []
        self._lock = threading.Lock()
        self._starting = 0
        self._enabled = False
        self._closed = False
        _POOLS.add(self)

    def start(self) -> Standby:
        """A new job process, started now and waiting for its order (blocks: call it from a thread)."""
        orders_r, orders_w = self._ctx.Pipe(duplex=False)
        out_r, out_w = self._ctx.Pipe(duplex=False)
        with_parent = self._ctx.get_start_method() == "forkserver"
        proc = self._ctx.Process(
            target=standby_main, args=(orders_r, out_w, with_parent), name="statsbot-job", daemon=False
        )
        try:
            with PROCESS_LOCK:  # start() looks at every child's status (see jobguard.PROCESS_LOCK)
                proc.start()
            _STARTED.add(proc)
        finally:
            orders_r.close()
            out_w.close()
        return Standby(proc, orders_w, out_r)

    def fill(self) -> None:
        """Keep ``size`` processes ready from now on and start the missing ones (blocks: call from a thread)."""
        self._enabled = True
        while True:
            with self._lock:
                if self._closed or len(self._ready) + self._starting >= self.size:
                    return
                self._starting += 1
            standby: Standby | None = None
            try:
                standby = self.start()
            except Exception:
                log.warning("Could not start a job process ahead of time", exc_info=True)
                return
            finally:
                with self._lock:
                    self._starting -= 1
                    keep = standby is not None and not self._closed
                    if keep and standby is not None:
                        self._ready.append(standby)
            if standby is not None and not keep:
                standby.close()
                return

    def take(self) -> Standby | None:
        """A ready process (None if there is none); the caller refills with :meth:`fill` afterwards."""
        with self._lock:
            while self._ready:
                standby = self._ready.pop(0)
                if process_alive(standby.proc):
                    return standby
                standby.close()
        return None

    @property
    def enabled(self) -> bool:
        """True once :meth:`fill` was called and until :meth:`close`."""
        return self._enabled and not self._closed

    def close(self) -> None:
        """Stop every waiting process; none is started after this."""
        with self._lock:
            self._closed = True
            ready, self._ready = self._ready, []
        for standby in ready:
            standby.close()
