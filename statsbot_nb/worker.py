"""The worker's asyncio driver: sockets, tasks, timers and the journal, around a pure core.

Every decision — what to send, when to start or cancel a job, how to treat a duplicate id, when to
reconnect and how the token is used — is made by :class:`~statsbot_nb.core.WorkerCore`. This module turns
the outside world into the core's events (frames, job progress and outcomes, connections opening and
dropping, timers) and carries out the actions it returns, in order: journal writes before the jobs start
and before results leave, frames through one ordered sender per connection, heavy jobs in their own
processes (:mod:`~statsbot_nb.runner`), so pings, progress and a quick ``list_models`` are answered while a
model trains.

One :class:`Worker` runs as a task on an asyncio loop (the CLI's own, or a notebook kernel's).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import importlib.util
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from . import __version__, protocol
from .config import default_machine_id, is_loopback_url, validate_ws_url
from .context import JobSettings
from .core import (
    REJECTED_HINT,
    Action,
    CancelJob,
    CloseConnection,
    ConnectionLost,
    ConnectionOpened,
    CoreConfig,
    Ended,
    Event,
    Finish,
    FrameReceived,
    JobEnded,
    JobProgressed,
    JobRecord,
    JournalAccepted,
    JournalConfirmed,
    JournalResult,
    JournalStarted,
    Log,
    OpenConnection,
    PongReceived,
    Publish,
    ScheduleTimer,
    SendFrame,
    SendPing,
    Start,
    StartJob,
    StopRequested,
    TimerFired,
    WorkerCore,
)
from .errors import ConfigError, JobCancelled, JobError, TokenRejectedError
from .events import EventBus, LogLine, WorkerState
from .jobs import ACTIONS, ActionSpec
from .journal import Journal
from .retry import Backoff, describe_connect_error, is_fatal, proxy_for
from .runner import ProcessRunner, ThreadRunner

__all__ = ["REJECTED_HINT", "JobRecord", "Worker"]

log = logging.getLogger("statsbot_nb.worker")
#: websockets logs every frame at DEBUG, the auth frame (with the token) included. Its connections log
#: through this logger, held at INFO so that a notebook's ``logging.basicConfig(level=DEBUG)`` never
#: prints a token.
_WS_LOG = logging.getLogger("statsbot_nb.websockets")
_WS_LOG.setLevel(logging.INFO)

_Outgoing = SendFrame | SendPing


def _capabilities(actions: Mapping[str, ActionSpec], max_jobs: int) -> dict[str, Any]:
    libs = {
        name: importlib.util.find_spec(name) is not None
        for name in ("sklearn", "xgboost", "lightgbm", "catboost", "tensorflow", "pyarrow")
    }
    return {"actions": sorted(actions), "libraries": libs, "max_jobs": max_jobs}


class Worker:
    """A StatsBot local worker.

    ``start()`` schedules it on the running loop; ``await run()`` runs it until :meth:`stop` or until the
    token is rejected (then :class:`TokenRejectedError` is raised). Observe it through ``events``,
    ``state`` and ``jobs``. ``journal`` (default on) keeps accepted jobs and unconfirmed results in the
    StatsBot home, so a restart re-sends them; pass ``False`` to keep them in memory only.
    """

    def __init__(
        self,
        token: str,
        url: str,
        *,
        settings: JobSettings,
        machine_id: str | None = None,
        max_jobs: int = 2,
        backoff: Backoff | None = None,
        actions: Mapping[str, ActionSpec] | None = None,
        process_runner: Any | None = None,
        thread_runner: Any | None = None,
        auth_timeout: float = 30.0,
        open_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        confirm_timeout: float = 30.0,
        journal: bool | Journal = True,
    ) -> None:
        if not isinstance(token, str) or not token.strip():
            raise TokenRejectedError("No token given. " + REJECTED_HINT)
        if not isinstance(max_jobs, int) or isinstance(max_jobs, bool) or max_jobs < 1:
            raise ConfigError(f"max_jobs must be a whole number of at least 1, not {max_jobs!r}.")
        self.url = validate_ws_url(url)
        self._proxy = None if is_loopback_url(self.url) else proxy_for(self.url)
        self.settings = settings
        self.machine_id = machine_id or default_machine_id()
        self.max_jobs = max_jobs
        self.events = EventBus()
        table = dict(ACTIONS if actions is None else actions)
        config = CoreConfig(
            url=self.url,
            machine_id=self.machine_id,
            worker_version=__version__,
            capabilities=_capabilities(table, max_jobs),
            actions=table,
            max_jobs=max_jobs,
            auth_timeout=auth_timeout,
            backoff=backoff or Backoff(),
        )
        self.core = WorkerCore(token.strip(), config)
        if journal is True:
            journal = Journal(Path(settings.home), self.url)
        self.journal: Journal | None = journal or None
        self._journal_broken = False
        self._process_runner = process_runner or ProcessRunner()
        self._thread_runner = thread_runner or ThreadRunner()
        self._open_timeout = open_timeout
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._confirm_timeout = confirm_timeout
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._connections: dict[int, asyncio.Task[None]] = {}
        self._sockets: dict[int, ClientConnection] = {}
        self._queues: dict[int, asyncio.Queue[_Outgoing]] = {}
        self._last_error: BaseException | None = None
        self._began = False
        self._finished = asyncio.Event()
        self._connected = asyncio.Event()
        self._ended = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._main_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopper: asyncio.Future[None] | None = None
        self.rejection: TokenRejectedError | None = None
        self.fatal_error: BaseException | None = None

    # ------------------------------------------------------------------ what observers read

    @property
    def jobs(self) -> dict[str, JobRecord]:
        """Job id -> record, for the jobs this worker accepted (bounded; oldest finished ones dropped)."""
        return self.core.jobs

    @property
    def state(self) -> WorkerState:
        """``idle``, ``connecting``, ``connected``, ``reconnecting``, ``rejected`` or ``stopped``."""
        return self.core.state

    @property
    def status_message(self) -> str:
        """The current state in a sentence."""
        return self.core.status_message

    @property
    def user_id(self) -> int | None:
        """The server's user id for this worker, once connected."""
        return self.core.user_id

    @property
    def server_protocol(self) -> int:
        """1 for today's StatsBot server, 2 when it speaks our extensions (acks, cancel, session token)."""
        return self.core.server_protocol

    @property
    def connected(self) -> bool:
        """True while authenticated on a live connection."""
        return self.core.connected

    @property
    def pending_results(self) -> int:
        """How many results wait for the server to confirm them."""
        return len(self.core.outbox)

    # ------------------------------------------------------------------ public API

    def start(self) -> asyncio.Task[None]:
        """Run the worker as a task on the running loop and return it (idempotent).

        The task is kept referenced by the worker; its errors end up in the state and the log.
        """
        if self._main_task is None:
            self._loop = asyncio.get_running_loop()
            self._begin()
            self._main_task = self._loop.create_task(self._run_quietly(), name="statsbot-worker")
            warm_up = getattr(self._process_runner, "warm_up", None)
            if callable(warm_up):  # start the forkserver now (seconds, off the loop): first job starts fast
                self._spawn(asyncio.to_thread(warm_up))
        return self._main_task

    def disconnect(self) -> concurrent.futures.Future[None] | asyncio.Future[None]:
        """Stop the worker from any thread; returns a future that completes once it has stopped."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("This worker was never started.")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._stopper = asyncio.ensure_future(self.stop())  # referenced: asyncio keeps weak refs only
            return self._stopper
        return asyncio.run_coroutine_threadsafe(self.stop(), loop)

    def update_settings(self, **changes: Any) -> JobSettings:
        """Change what jobs may do (allowed folders, data sharing); applies to jobs that start later."""
        self.settings = dataclasses.replace(self.settings, **changes)
        self.events.publish(LogLine("info", "Settings changed: " + ", ".join(sorted(changes))))
        return self.settings

    async def run(self) -> None:
        """Connect and serve until :meth:`stop`; raises :class:`TokenRejectedError` if the token is refused."""
        self._loop = asyncio.get_running_loop()
        self._begin()
        try:
            await self._finished.wait()
        finally:
            await self._shutdown()
        if self.rejection is not None:
            raise self.rejection
        if self.fatal_error is not None:
            raise self.fatal_error

    async def stop(self) -> None:
        """Stop: cancel running jobs (their processes are killed), send their results, close the connection."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._feed(StopRequested())
        jobs = list(self._tasks.values())
        if jobs:
            await asyncio.gather(*jobs, return_exceptions=True)
        for queue in list(self._queues.values()):  # let the cancelled results leave
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(queue.join(), 2.0)
        self._finished.set()
        task = self._main_task
        if task is not None and task is not asyncio.current_task():
            with contextlib.suppress(BaseException):
                await task
        elif task is None:
            await self._shutdown()

    async def wait_connected(self, timeout: float | None = 30.0) -> None:
        """Wait until authenticated; raises TokenRejectedError, or TimeoutError with the current status."""
        waiter = asyncio.ensure_future(self._connected.wait())
        ender = asyncio.ensure_future(self._ended.wait())
        try:
            done, _ = await asyncio.wait({waiter, ender}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            ender.cancel()
        if self.rejection is not None:
            raise self.rejection
        if self._connected.is_set():
            return
        if self.fatal_error is not None:
            raise self.fatal_error
        if not done:
            raise TimeoutError(f"Not connected after {timeout} s: {self.status_message}")
        raise RuntimeError(f"The worker stopped: {self.status_message}")

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until no job is queued or running."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job (its process is killed); False if it is not active."""
        ok, actions = self.core.cancel(job_id, time.time())
        self._execute(actions)
        return ok

    # ------------------------------------------------------------------ feeding the core

    def _begin(self) -> None:
        """Restore from the journal and start connecting (once)."""
        if self._began:
            return
        self._began = True
        if self.journal is not None:
            try:
                restored = self.journal.open()
            except (sqlite3.Error, OSError) as exc:
                self._journal_failed("open", exc)
            else:
                self._feed(restored)
        self._feed(Start())

    def _feed(self, event: Event) -> None:
        """Hand one event to the core and carry out its answer."""
        self._execute(self.core.handle(event, time.time()))

    def _execute(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, SendFrame | SendPing):
                queue = self._queues.get(action.conn)
                if queue is not None:
                    queue.put_nowait(action)
            elif isinstance(action, Publish):
                self.events.publish(action.event)
            elif isinstance(action, Log):
                log.log(action.level, "%s", action.message)
            elif isinstance(action, JournalAccepted | JournalStarted | JournalResult | JournalConfirmed):
                self._journal(action)
            elif isinstance(action, StartJob):
                task = asyncio.get_running_loop().create_task(
                    self._run_job(action), name=f"statsbot-job-{action.job_id}"
                )
                self._tasks[action.job_id] = task
            elif isinstance(action, CancelJob):
                task = self._tasks.get(action.job_id)
                if task is not None:
                    task.cancel()
            elif isinstance(action, OpenConnection):
                loop = asyncio.get_running_loop()
                task = loop.create_task(self._connection(action.conn), name=f"statsbot-connection-{action.conn}")
                self._connections[action.conn] = task
            elif isinstance(action, CloseConnection):
                ws = self._sockets.get(action.conn)
                if ws is not None:
                    self._spawn(ws.close())
                else:
                    task = self._connections.get(action.conn)
                    if task is not None:
                        task.cancel()
            elif isinstance(action, ScheduleTimer):
                self._schedule(action)
            elif isinstance(action, Finish):
                if action.rejection is not None:
                    self.rejection = TokenRejectedError(action.rejection)
                if action.fatal is not None:
                    self.fatal_error = self._last_error or ConnectionError(action.fatal)
                self._finished.set()
        if self.core.connected:
            self._connected.set()
        else:
            self._connected.clear()
        if self.core.idle:
            self._idle.set()
        else:
            self._idle.clear()

    def _schedule(self, action: ScheduleTimer) -> None:
        loop = asyncio.get_running_loop()
        event = TimerFired(action.name, action.key)

        def fire() -> None:
            self._timers.discard(handle)
            self._feed(event)

        handle = loop.call_later(action.delay, fire)
        self._timers.add(handle)

    def _journal(self, action: JournalAccepted | JournalStarted | JournalResult | JournalConfirmed) -> None:
        journal = self.journal
        if journal is None or self._journal_broken:
            return
        try:
            if isinstance(action, JournalAccepted):
                journal.accepted(action.job_id, action.action)
            elif isinstance(action, JournalStarted):
                journal.started(action.job_id)
            elif isinstance(action, JournalResult):
                journal.result(action.job_id, action.frame)
            else:
                journal.confirmed(action.job_id)
        except (sqlite3.Error, OSError) as exc:
            self._journal_failed("write", exc)

    def _journal_failed(self, what: str, exc: BaseException) -> None:
        """A journal that cannot be used is reported once; the worker goes on with results in memory only."""
        self._journal_broken = True
        log.warning("The job journal could not %s (%s); results are kept in memory only", what, exc, exc_info=True)
        path = self.journal.path if self.journal is not None else "?"
        self.events.publish(
            LogLine(
                "warning",
                f"The job journal at {path} could not {what} ({type(exc).__name__}); results not yet confirmed "
                "by the server will be lost if this worker's process ends. Check the disk and its permissions.",
            )
        )

    # ------------------------------------------------------------------ connections

    def _connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_size": protocol.MAX_FRAME_BYTES,
            "open_timeout": self._open_timeout,
            "ping_interval": self._ping_interval,
            "ping_timeout": self._ping_timeout,
            # After a failed keepalive the link is known dead, yet websockets still waits this long for a
            # closing handshake before the worker can reconnect; a clean close on a live link takes far less.
            "close_timeout": 0.5,
            "max_queue": 64,
            "logger": _WS_LOG,
        }
        if is_loopback_url(self.url):
            kwargs["proxy"] = None  # loopback never goes through an HTTP proxy
        return kwargs

    async def _connection(self, conn: int) -> None:
        """Open connection ``conn``, feed its frames to the core, report how it ended."""
        lost = ConnectionLost(conn)
        sender: asyncio.Task[None] | None = None
        try:
            async with connect(self.url, **self._connect_kwargs()) as ws:
                queue: asyncio.Queue[_Outgoing] = asyncio.Queue()
                self._sockets[conn], self._queues[conn] = ws, queue
                sender = asyncio.get_running_loop().create_task(self._sender(conn, ws, queue))
                self._feed(ConnectionOpened(conn))
                async for frame in ws:
                    self._feed(FrameReceived(conn, frame))
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            policy = isinstance(exc, ConnectionClosed) and exc.rcvd is not None and exc.rcvd.code == 1008
            if is_fatal(exc):
                self._last_error = exc
            lost = ConnectionLost(conn, describe_connect_error(exc, self.url, self._proxy), is_fatal(exc), policy)
            log.debug("connection %d ended", conn, exc_info=True)
        finally:
            if sender is not None:
                sender.cancel()
                with contextlib.suppress(BaseException):
                    await sender
            self._sockets.pop(conn, None)
            queue_left = self._queues.pop(conn, None)
            while queue_left is not None and not queue_left.empty():
                queue_left.get_nowait()
                queue_left.task_done()
            self._connections.pop(conn, None)
        self._feed(lost)

    async def _sender(self, conn: int, ws: ClientConnection, queue: asyncio.Queue[_Outgoing]) -> None:
        """The only writer of a connection: frames leave in the order the core decided them."""
        while True:
            item = await queue.get()
            try:
                if isinstance(item, SendPing):
                    pong = await ws.ping()
                    self._spawn(self._await_pong(conn, item.ping, pong))
                else:
                    await ws.send(item.frame)
            except ConnectionClosed:
                pass  # the connection's reader reports the loss; the core re-sends after reconnecting
            finally:
                queue.task_done()

    async def _await_pong(self, conn: int, ping: int, pong: asyncio.Future[float]) -> None:
        try:
            await asyncio.wait_for(pong, self._confirm_timeout)
        except (ConnectionClosed, asyncio.TimeoutError, RuntimeError):
            return  # stays pending; re-sent after the next connect
        self._feed(PongReceived(conn, ping))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ jobs

    async def _run_job(self, action: StartJob) -> None:
        runner = self._process_runner if action.spec.isolated else self._thread_runner
        job_id = action.job_id
        progress: Callable[[float, str, str], None] = lambda p, m, s: self._feed(  # noqa: E731
            JobProgressed(job_id, p, m, s)
        )
        try:
            data = await runner.run(action.spec.target, action.params, self.settings, progress, job_id=job_id)
            ended = JobEnded(job_id, "ok", data=data)
        except (asyncio.CancelledError, JobCancelled) as exc:
            error = str(exc) if isinstance(exc, JobCancelled) and str(exc) else "The job was cancelled."
            ended = JobEnded(job_id, "cancelled", error=error)
        except JobError as exc:
            ended = JobEnded(job_id, "error", error=str(exc))
        except Exception as exc:
            log.exception("Job %s (%s) failed inside the worker", job_id, action.action)
            error = (
                f"The worker hit an internal error running {action.action} "
                f"({type(exc).__name__}); details are in the worker's local log."
            )
            ended = JobEnded(job_id, "error", error=error)
        self._tasks.pop(job_id, None)
        self._feed(ended)

    # ------------------------------------------------------------------ ending

    async def _run_quietly(self) -> None:
        try:
            await self.run()
        except TokenRejectedError:
            pass  # state "rejected" and the event already tell the user
        except Exception:
            log.exception("The worker stopped on an unexpected error")

    async def _shutdown(self) -> None:
        if not self._finished.is_set():
            self._finished.set()
        for task in list(self._tasks.values()):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        for handle in list(self._timers):
            handle.cancel()
        self._timers.clear()
        for ws in list(self._sockets.values()):
            with contextlib.suppress(Exception):
                await ws.close()
        connections = list(self._connections.values())
        for task in connections:
            task.cancel()
        if connections:
            await asyncio.gather(*connections, return_exceptions=True)
        for task in list(self._background):
            task.cancel()
        if hasattr(self._process_runner, "shutdown"):
            self._process_runner.shutdown()
        self._feed(Ended())
        if self.journal is not None:
            self.journal.close()
        self._ended.set()
