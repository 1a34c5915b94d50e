"""The plumbing of the worker's driver: feed the core, carry out its actions, in order.

:class:`Driver` is the asyncio half of :class:`~statsbot_nb.worker.Worker`: it hands every event to the
pure core (:mod:`statsbot_nb.core`) with the current time and carries out what comes back — journal writes
on the recorder's thread (:mod:`statsbot_nb.recorder`: a job starts once its reservation is answered, a
result frame leaves once its record is written), frames through the connection's
:class:`~statsbot_nb.link.Link`, job tasks on the runners, timers, events for observers. It decides
nothing itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .context import JobSettings
from .core import (
    Action,
    CancelJob,
    CloseConnection,
    Ended,
    Event,
    Finish,
    JobEnded,
    JobProgressed,
    JobReserved,
    JournalConfirmed,
    JournalResult,
    JournalStarted,
    Log,
    OpenConnection,
    Publish,
    ReserveJob,
    ScheduleTimer,
    SendFrame,
    SendPing,
    Start,
    StartJob,
    TimerFired,
    WorkerCore,
)
from .errors import TokenRejectedError
from .events import EventBus, LogLine
from .inert import SHOWN
from .journal import Existing, Journal
from .ledgerdb import Ledger
from .link import Link
from .livecurves import CurveBook
from .outcomes import ended_by
from .recorder import JournalWriter, Recorder, call_soon

log = logging.getLogger(__name__)


class Driver:
    """Event-in, action-out plumbing around a :class:`WorkerCore` (the attributes are set by the Worker)."""

    core: WorkerCore
    url: str
    settings: JobSettings
    events: EventBus
    journal: Journal | None
    ledger: Ledger | None
    rejection: TokenRejectedError | None
    fatal_error: BaseException | None
    _proxy: str | None
    _journal_broken: bool
    _journal_warned: float
    _records: Recorder  # the journal's writes, off the loop
    _journal_writer: JournalWriter | None
    _inbox: deque[Event]
    _draining: bool
    _claimed_for: int | None
    _claim_retry_at: float
    _process_runner: Any
    _thread_runner: Any
    _confirm_timeout: float
    _tasks: dict[str, asyncio.Task[None]]
    _progress_due: dict[str, JobProgressed]
    curve_book: CurveBook
    _background: set[asyncio.Task[Any]]
    _timers: set[asyncio.TimerHandle]
    _links: dict[int, tuple[Link, asyncio.Task[None]]]
    _link_options: dict[str, Any]
    _began: bool
    _finished: asyncio.Event
    _connected: asyncio.Event
    _ended: asyncio.Event
    _idle: asyncio.Event

    # ------------------------------------------------------------------ feeding the core

    def _begin(self) -> None:
        """Open the journal, warm the job processes up (seconds, in a thread: the forkserver's imports, the
        processes kept ahead; the CLI's ``run()`` used to skip it) and start connecting (once)."""
        if self._began:
            return
        self._began = True
        warm_up = getattr(self._process_runner, "warm_up", None)
        if callable(warm_up):
            self._spawn(asyncio.to_thread(warm_up))
        if self.journal is not None:
            try:
                self.journal.open()
            except (sqlite3.Error, OSError) as exc:
                self._journal_broken = True
                self._journal_failed("open", exc)
            else:
                if self.journal.note:
                    self.events.publish(LogLine("warning", self.journal.note))
                failed = functools.partial(self._journal_failed, "write")
                self._journal_writer = JournalWriter(self.journal, self._records, lambda: self.core.user_id, failed)
        self._feed(Start())

    def _feed(self, event: Event) -> None:
        """Hand one event to the core and carry out its answer; events raised meanwhile run after it, in order.

        Run to completion: an action may produce a new event (the journal's answer to a reservation, what it
        restored after authenticating); it is queued, never handled in the middle of another event's actions.
        """
        self._inbox.append(event)
        self._drain()

    def _apply(self, actions: list[Action]) -> None:
        """Carry out actions the core returned from a direct call (cancel, approve), then what they led to."""
        self._execute(actions)
        self._after_events()
        self._drain()

    def _drain(self) -> None:
        if self._draining or not self._inbox:
            return
        self._draining = True
        try:
            while self._inbox:
                current = self._inbox.popleft()
                try:
                    self._execute(self.core.handle(current, time.time()))
                except Exception:  # a bug must not kill the task that fed the event (a job, a connection)
                    log.exception("The worker core failed on %s", type(current).__name__)
                self._after_events()
        finally:
            self._draining = False

    def _after_events(self) -> None:
        """Mirror the core's state into awaitables, and claim the journal once per authenticated connection."""
        if self.core.connected:
            self._connected.set()
            conn = self.core.live_connection
            due = time.monotonic() >= self._claim_retry_at
            if self.journal is not None and not self._journal_broken and conn != self._claimed_for and due:
                try:
                    self._inbox.append(self._records.call(self.journal.claim, self.core.user_id))
                    self._claimed_for = conn
                except (sqlite3.Error, OSError) as exc:  # tried again on a later event, not before 2 s
                    self._claim_retry_at = time.monotonic() + 2.0
                    self._journal_failed("read what ended workers left", exc)
        else:
            self._connected.clear()
        if self.core.idle:
            self._idle.set()
        else:
            self._idle.clear()

    def _execute(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, SendFrame | SendPing):
                entry = self._links.get(action.conn)
                if entry is not None:  # a result waits for its journal record to be written
                    writer = self._journal_writer
                    entry[0].send(action, after=writer.barrier(action) if writer is not None else None)
            elif isinstance(action, Publish):
                self.events.publish(action.event)
            elif isinstance(action, Log):
                log.log(action.level, "%s", action.message, extra={SHOWN: True} if action.shown else None)
            elif isinstance(action, ReserveJob):
                self._reserve(action)
            elif isinstance(action, JournalStarted | JournalResult | JournalConfirmed):
                self._journal(action)
            elif isinstance(action, StartJob):
                self._note_job(action)
                if self._run_inline(action):
                    continue
                task = asyncio.get_running_loop().create_task(
                    self._run_job(action), name=f"statsbot-job-{action.job_id}"
                )
                self._tasks[action.job_id] = task
            elif isinstance(action, CancelJob):
                task = self._tasks.get(action.job_id)
                if task is not None:
                    task.cancel()
            elif isinstance(action, OpenConnection):
                self._open(action.conn)
            elif isinstance(action, CloseConnection):
                entry = self._links.get(action.conn)
                if entry is not None:
                    self._spawn(entry[0].close())
            elif isinstance(action, ScheduleTimer):
                self._schedule(action)
            elif isinstance(action, Finish):
                if action.rejection is not None:
                    self.rejection = TokenRejectedError(action.rejection)
                if action.fatal is not None:
                    errors = [link.fatal_error for link, _ in self._links.values() if link.fatal_error]
                    self.fatal_error = errors[-1] if errors else ConnectionError(action.fatal)
                self._finished.set()

    def _open(self, conn: int) -> None:
        link = Link(
            conn,
            self.url,
            self._link_options,
            self._feed,
            proxy=self._proxy,
            confirm_timeout=self._confirm_timeout,
            on_written=self._written,
        )
        task = asyncio.get_running_loop().create_task(link.run(), name=f"statsbot-connection-{conn}")
        self._links[conn] = (link, task)
        task.add_done_callback(lambda _: self._links.pop(conn, None))

    # ------------------------------------------------------------------ the ledger

    def _note_job(self, action: StartJob) -> None:
        """Tell the ledger a job starts (its action names its frames); show its warning if the pattern appears."""
        if self.ledger is None:
            return
        try:
            warning = self.ledger.note_job(action.job_id, action.action, action.params)
        except Exception:  # the ledger observes; it never stops a job
            log.exception("The ledger failed to note job %s", action.job_id)
            return
        if warning:
            self.events.publish(LogLine("warning", warning))
            log.warning("%s", warning)

    def _written(self, frame: SendFrame) -> None:
        """A frame left through the socket: record it (called by the connection's writer after ``ws.send``)."""
        if self.ledger is None:
            return
        action = self.ledger.action_of(frame.job_id)
        record = self.core.jobs.get(frame.job_id) if frame.job_id is not None else None
        if action is None and record is not None:
            action = record.action
        # The result's data, while this worker holds it, spares the ledger parsing a large frame again.
        data = record.result if frame.kind == "result" and record is not None and record.status == "done" else None
        self.ledger.record(frame.frame, frame.job_id, action, data)

    def _schedule(self, action: ScheduleTimer) -> None:
        loop = asyncio.get_running_loop()
        event = TimerFired(action.name, action.key)

        def fire() -> None:
            self._timers.discard(handle)
            self._feed(event)

        handle = loop.call_later(action.delay, fire)
        self._timers.add(handle)

    def _reserve(self, action: ReserveJob) -> None:
        """Ask the journal whether ``action.job_id`` is new (None: run it) or how it already stands; the
        answer is fed to the core as :class:`JobReserved` once the recorder's thread has it (a burst of
        jobs makes a burst of commits, which must not hold the loop; the core waits for each answer).

        A journal that cannot answer right now (locked, disk trouble) answers "unknown": the core holds the
        job and asks again, rather than risk running a job another worker of this home already runs.
        """
        if self.journal is None or self._journal_broken:  # no journal: this worker's memory is all there is
            self._inbox.append(JobReserved(action.job_id, None))
            return
        loop = asyncio.get_running_loop()
        asking = self._records.submit(self._reserve_now, self.journal, self.core.user_id, action)
        asking.add_done_callback(lambda f: call_soon(loop, self._reserved, action.job_id, f))

    def _reserve_now(self, journal: Journal, user_id: int | None, action: ReserveJob) -> Existing | None:
        with self._records.lock:  # (the recorder's thread)
            journal.set_user(user_id)
            return journal.reserve(action.job_id, action.action)

    def _reserved(self, job_id: str, asking: concurrent.futures.Future[Existing | None]) -> None:
        try:
            existing = asking.result()
        except (sqlite3.Error, OSError, RuntimeError) as exc:  # RuntimeError: the journal was closed
            self._journal_failed("record a job", exc)
            existing = Existing("unknown", None, owner_alive=True)
        self._feed(JobReserved(job_id, existing))

    def _journal(self, action: JournalStarted | JournalResult | JournalConfirmed) -> None:
        """Write one record (off the loop); one that fails is kept and written again with the next ones."""
        if self._journal_writer is not None:
            self._journal_writer.add(action)

    def _journal_failed(self, what: str, exc: BaseException) -> None:
        """Tell the user (at most once a minute); the worker goes on, and keeps trying to write."""
        now = time.monotonic()
        if now - self._journal_warned < 60.0:
            return
        self._journal_warned = now
        log.warning("The job journal could not %s (%s)", what, exc, exc_info=True)
        path = self.journal.path if self.journal is not None else "?"
        self.events.publish(
            LogLine(
                "warning",
                f"The job journal at {path} could not {what} ({type(exc).__name__}: {exc}); the worker goes on, "
                "but results not yet confirmed by the server would be lost if its process ended now. Check "
                "that the disk has space and the folder can be written.",
            )
        )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ jobs

    def _progress_of(self, job_id: str) -> Callable[[float, str, str], None]:
        return lambda p, m, s: self._progress(JobProgressed(job_id, p, m, s))

    async def _run_job(self, action: StartJob) -> None:
        runner = self._process_runner if action.spec.isolated else self._thread_runner
        job_id, curve = action.job_id, self.curve_book.sink(action.job_id, action.action)  # local: never sent
        try:
            data = await runner.run(
                action.spec.target, action.params, self.settings, self._progress_of(job_id), job_id, curve
            )
            ended = JobEnded(job_id, "ok", data=data)
        except BaseException as exc:
            ended = ended_by(action, exc)
        self._tasks.pop(job_id, None)
        self._feed_progress(job_id)  # the last report before the result
        self._feed(ended)

    def _run_inline(self, action: StartJob) -> bool:
        """Run a quick light job (the store's listing) right here, its result fed next with no task and no
        turn of the loop between (those were a third of a listing's time); False when it is not one."""
        runner, spec, job_id = self._thread_runner, action.spec, action.job_id
        if spec.isolated or not hasattr(runner, "runs_inline") or not runner.runs_inline(spec.target):
            return False
        try:
            data = runner.run_inline(spec.target, action.params, self.settings, self._progress_of(job_id), job_id)
            ended = JobEnded(job_id, "ok", data=data)
        except Exception as exc:
            ended = ended_by(action, exc)
        progress = self._progress_due.pop(job_id, None)  # the last report before the result
        self._inbox.extend([progress, ended] if progress is not None else [ended])
        return True

    def _progress(self, event: JobProgressed) -> None:
        """A job reported progress: fed to the core on the loop's next turn, only the newest report of each
        job since the last turn (a chatty job's backlog becomes one event, not one stall of thousands)."""
        first = event.job_id not in self._progress_due
        self._progress_due[event.job_id] = event
        if first:
            asyncio.get_running_loop().call_soon(self._feed_progress, event.job_id)

    def _feed_progress(self, job_id: str) -> None:
        event = self._progress_due.pop(job_id, None)
        if event is not None:
            self._feed(event)

    # ------------------------------------------------------------------ ending

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
        links = list(self._links.values())
        for link, _ in links:
            await link.close()
        for _, task in links:
            task.cancel()
        if links:
            await asyncio.gather(*(task for _, task in links), return_exceptions=True)
        for task in list(self._background):
            task.cancel()
        if hasattr(self._process_runner, "shutdown"):
            self._process_runner.shutdown()
        self._feed(Ended())
        if self._journal_writer is not None:
            await self._journal_writer.settle()  # a write that failed earlier gets a last chance
        if self.journal is not None:
            await asyncio.wrap_future(self._records.submit(lambda: None))  # the reservations asked so far
            self._records.call(self.journal.close)
        if self.ledger is not None:
            self.ledger.close()
        self._ended.set()
