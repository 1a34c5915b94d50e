"""The worker's asyncio driver: sockets, tasks, timers and the journal, around a pure core.

Every decision — what to send, when to start or cancel a job, how to treat a duplicate id, when to
reconnect and how the token is used — is made by :class:`~statsbot_nb.core.WorkerCore`. This module turns
the outside world into the core's events (frames, job progress and outcomes, connections opening and
dropping, timers) and carries out the actions it returns, in order: journal writes before the jobs start
and before results leave, frames through one ordered sender per connection, heavy jobs in their own
processes (:mod:`~statsbot_nb.runner`), so pings, progress and a quick ``list_models`` are answered while a
model trains.

One :class:`Worker` runs as a task on an asyncio loop (the CLI's own, or a notebook kernel's). This module
is its public face; the event/action plumbing is :mod:`~statsbot_nb.driver`, the socket
:mod:`~statsbot_nb.link`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from . import __version__
from .config import default_machine_id, is_loopback_url, require_encryption, validate_ws_url
from .context import JobSettings
from .core import (
    REJECTED_HINT,
    AskChanged,
    CoreConfig,
    JobProgressed,
    JobRecord,
    StopRequested,
    WorkerCore,
)
from .driver import Driver
from .errors import ConfigError, TokenRejectedError
from .events import EventBus, LogLine, WorkerState
from .jobs import ACTIONS, ActionSpec, capabilities
from .journal import Journal
from .ledgerdb import Ledger
from .link import DEFAULT_MAX_FRAME_BYTES, Link, connect_options
from .livecurves import CurveBook
from .ml.curves import LiveCurve
from .privacy import describe
from .recorder import Recorder
from .retry import Backoff, proxy_for
from .runner import ProcessRunner, ThreadRunner

__all__ = ["REJECTED_HINT", "JobRecord", "Worker"]

log = logging.getLogger(__name__)


class Worker(Driver):
    """A StatsBot local worker.

    ``start()`` schedules it on the running loop; ``await run()`` runs it until :meth:`stop` or until the
    token is rejected (then :class:`TokenRejectedError` is raised). Observe it through ``events``,
    ``state`` and ``jobs``. ``journal`` (default on) keeps accepted jobs and unconfirmed results in the
    StatsBot home, so a restart re-sends them; pass ``False`` to keep them in memory only. Plain ``ws://``
    is refused for any host but this one unless ``insecure_ws`` is set (the token would travel in cleartext).
    With ``ask`` each job waits for :meth:`approve` (the panel's Allow / Deny / Always, or the terminal).
    ``ledger`` (default on) records every frame sent in ``<home>/ledger.sqlite3`` (see :mod:`statsbot_nb.ledgerdb`).
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
        insecure_ws: bool = False,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        ask: bool = False,
        ledger: bool | Ledger = True,
    ) -> None:
        if not isinstance(token, str) or not token.strip():
            raise TokenRejectedError("No token given. " + REJECTED_HINT)
        if not isinstance(max_jobs, int) or isinstance(max_jobs, bool) or max_jobs < 1:
            raise ConfigError(f"max_jobs must be a whole number of at least 1, not {max_jobs!r}.")
        self.url = validate_ws_url(url)
        require_encryption(self.url, insecure_ws=insecure_ws)
        if insecure_ws and self.url.startswith("ws://") and not is_loopback_url(self.url):
            log.warning("--insecure-ws: the token and results go to %s unencrypted", self.url)
        self._proxy = None if is_loopback_url(self.url) else proxy_for(self.url)
        if settings.blas_threads is None:  # share the cores between the job slots (see JobSettings)
            settings = dataclasses.replace(settings, blas_threads=max(1, (os.cpu_count() or 1) // max_jobs))
        self.settings = settings
        self.machine_id = machine_id or default_machine_id()
        self.max_jobs = max_jobs
        self.events = EventBus()
        table = dict(ACTIONS if actions is None else actions)
        config = CoreConfig(
            url=self.url,
            machine_id=self.machine_id,
            worker_version=__version__,
            capabilities=capabilities(table, max_jobs),
            actions=table,
            max_jobs=max_jobs,
            auth_timeout=auth_timeout,
            backoff=backoff or Backoff(),
            ask=ask,
        )
        self.core = WorkerCore(token.strip(), config)
        if journal is True:
            journal = Journal(Path(settings.home), self.url)
        self.journal: Journal | None = journal or None
        if ledger is True:
            ledger = Ledger(Path(settings.home))
        #: Every frame sent is recorded here (``statsbot_nb.ledger()`` reads it); ``ledger=False`` turns it off.
        self.ledger: Ledger | None = ledger or None
        self._journal_broken = False
        self._journal_warned = -1e9
        self._records = Recorder("statsbot-journal")
        self._journal_writer = None
        self._inbox = deque()
        self._draining = False
        self._claimed_for = None
        self._claim_retry_at = 0.0
        self._process_runner = process_runner or ProcessRunner()
        self._thread_runner = thread_runner or ThreadRunner()
        self._confirm_timeout = confirm_timeout
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._progress_due: dict[str, JobProgressed] = {}
        self.curve_book = CurveBook(self.events)
        self._background: set[asyncio.Task[Any]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._links: dict[int, tuple[Link, asyncio.Task[None]]] = {}
        if not isinstance(max_frame_bytes, int) or max_frame_bytes < 2**16:
            raise ConfigError(f"max_frame_bytes must be at least 65536 (64 KB), not {max_frame_bytes!r}.")
        self._link_options = connect_options(
            self.url,
            open_timeout=open_timeout,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            max_frame_bytes=max_frame_bytes,
        )
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
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop this worker runs on (None before it started)."""
        return self._loop

    @property
    def jobs(self) -> dict[str, JobRecord]:
        """Job id -> record, for the jobs this worker accepted (bounded; oldest finished ones dropped)."""
        return self.core.jobs

    @property
    def curves(self) -> Mapping[str, LiveCurve]:
        """Job id -> the learning curve of a running job that records one (local only; gone when it ends)."""
        return self.curve_book.curves

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
            if self.core.finished_connecting:
                raise RuntimeError(f"This worker has ended ({self.status_message}); connect again with a new one.")
            self._loop = asyncio.get_running_loop()
            self._begin()
            self._main_task = self._loop.create_task(self._run_quietly(), name="statsbot-worker")
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
        """Change what jobs may do (allowed folders, privacy level); applies to jobs that start later.

        ``privacy="strict"|"standard"|"share"`` changes the level; ``share_data=True/False`` alone is the
        older switch (share, or back to standard).
        """
        privacy, share = changes.pop("privacy", None), changes.pop("share_data", None)
        settings = dataclasses.replace(self.settings, **changes) if changes else self.settings
        if privacy is not None or share is not None:
            settings = settings.with_privacy(privacy, share)
        self.settings = settings
        named = sorted([*changes, *(["privacy"] if privacy is not None or share is not None else [])])
        self.events.publish(LogLine("info", "Settings changed: " + ", ".join(named)))
        if privacy is not None or share is not None:
            self.events.publish(LogLine("info", f"Privacy is now {settings.privacy}: {describe(settings.privacy)}."))
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
        for link, _ in list(self._links.values()):  # let the cancelled results leave
            await link.drain(2.0)
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

    @property
    def awaiting_approval(self) -> list[JobRecord]:
        """Jobs waiting for the user to allow or deny them (ask-before-running), oldest first."""
        ids = self.core.awaiting_approval
        return sorted((r for j, r in self.jobs.items() if j in ids), key=lambda r: r.accepted_at)

    def approve(self, job_id: str, answer: Literal["allow", "deny", "always"] = "allow") -> bool:
        """Answer a job waiting for approval: run it, refuse it, or run it and every later job of its action."""
        if answer not in ("allow", "deny", "always"):
            raise ValueError(f"answer must be 'allow', 'deny' or 'always', not {answer!r}")
        ok, actions = self.core.approve(job_id, answer, time.time())
        self._apply(actions)
        return ok

    def set_ask(self, ask: bool) -> None:
        """Turn ask-before-running on or off (off runs every job now waiting)."""
        self._feed(AskChanged(bool(ask)))

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job (its process is killed); False if it is not active."""
        ok, actions = self.core.cancel(job_id, time.time())
        self._apply(actions)
        return ok

    # ------------------------------------------------------------------ ending

    async def _run_quietly(self) -> None:
        try:
            await self.run()
        except TokenRejectedError:
            pass  # state "rejected" and the event already tell the user
        except Exception:
            log.exception("The worker stopped on an unexpected error")
