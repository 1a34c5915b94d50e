"""The job journal's writes on a thread of their own, off the event loop.

A commit is usually a fraction of a millisecond, but not always: a result frame of many megabytes (20 MB:
120 ms), a WAL checkpoint that waits for the disk, another worker of the same home holding the write lock
(up to the journal's busy timeout) — each stalled the kernel's loop, and with it every widget and cell, for
as long as it took. The driver (:mod:`statsbot_nb.driver`) hands the records to a :class:`Recorder`
instead: one thread that writes in the order it was handed work, while the loop goes on (SQLite releases
the GIL as it writes). (The ledger's rows stay on the loop: a row is a few dozen bytes, written in tens of
microseconds, and readers rely on a frame's row being there once the frame was written.)

What must stay true is the journal's contract: a job is reserved before it starts, and a result is
recorded before it is sent. Reservations run on the recorder's thread too, and the core starts a job only
once its answer is back; a result frame is held back until the batch that carries its record is written
(:meth:`JournalWriter.barrier`); a record that fails stays and is written again with the next batch, or
after :data:`RETRY_S`. What ended workers left is read once per connection on the loop, under the
recorder's lock (:meth:`Recorder.call`), so it never interleaves with a write on the journal's one
connection and waits only for a write in progress, not for the queue.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

from .core import JournalConfirmed, JournalResult, JournalStarted, SendFrame, SendPing
from .journal import Journal

T = TypeVar("T")
JournalRecord = JournalStarted | JournalResult | JournalConfirmed
#: Records kept while the journal cannot be written (the oldest are dropped beyond this).
MAX_UNWRITTEN = 10000
#: A batch that failed is tried again after this many seconds, if no new record came meanwhile.
RETRY_S = 2.0


class Recorder:
    """Runs writes on one thread, in submission order; :meth:`call` runs a query now, between two writes."""

    def __init__(self, name: str) -> None:
        self.lock = threading.Lock()
        #: The thread starts with the first write and ends when the recorder is garbage collected.
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def _locked(self, fn: Callable[..., T], *args: Any) -> T:
        with self.lock:
            return fn(*args)

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Run ``fn(*args)`` on the recorder's thread after everything submitted before it; ``fn`` takes
        :attr:`lock` around each write itself (so :meth:`call` waits for one write, not a whole batch)."""
        return self._pool.submit(fn, *args)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on this thread now, waiting only for a write in progress (never for the queue)."""
        return self._locked(fn, *args)


class JournalWriter:
    """The journal's records on their way to disk, written in batches by a :class:`Recorder` (loop side)."""

    def __init__(
        self,
        journal: Journal,
        recorder: Recorder,
        user_id: Callable[[], int | None],
        failed: Callable[[BaseException], None],
    ) -> None:
        self.journal = journal
        self.recorder = recorder
        self._user_id = user_id
        self._failed = failed
        #: Job id -> its newest record not yet written (a newer record of a job replaces an older one).
        self.unwritten: OrderedDict[str, JournalRecord] = OrderedDict()
        self._flushing: asyncio.Future[None] | None = None  # the batch being written
        self._next: asyncio.Future[None] | None = None  # the batch after it (records that came meanwhile)
        self._retry: asyncio.TimerHandle | None = None

    def add(self, record: JournalRecord) -> None:
        """Keep ``record`` until it is written, and have it written."""
        self.unwritten.pop(record.job_id, None)
        self.unwritten[record.job_id] = record
        while len(self.unwritten) > MAX_UNWRITTEN:
            self.unwritten.popitem(last=False)
        self.flush()

    def flush(self) -> None:
        """Hand every unwritten record to the recorder (after the batch in progress, if any)."""
        loop = asyncio.get_running_loop()
        if self._flushing is not None:
            if self._next is None and self.unwritten:
                self._next = loop.create_future()
            return
        done, self._next = self._next, None
        if not self.unwritten:
            if done is not None:
                done.set_result(None)
            return
        self._flushing = done = done or loop.create_future()
        batch = list(self.unwritten.values())
        writing = self.recorder.submit(self._write, self._user_id(), batch)
        writing.add_done_callback(lambda f: call_soon(loop, self._written, batch, f))

    def _write(self, user_id: int | None, batch: list[JournalRecord]) -> tuple[int, BaseException | None]:
        """(Recorder thread.) Write ``batch`` in order up to its first failure: how many, and the failure."""
        for written, record in enumerate(batch):
            try:
                with self.recorder.lock:
                    self.journal.set_user(user_id)
                    if isinstance(record, JournalStarted):
                        self.journal.started(record.job_id)
                    elif isinstance(record, JournalResult):
                        self.journal.result(record.job_id, record.frame)
                    else:
                        self.journal.confirmed(record.job_id)
            except (sqlite3.Error, OSError, RuntimeError) as exc:  # RuntimeError: closed meanwhile
                return written, exc
        return len(batch), None

    def _written(self, batch: list[JournalRecord], writing: concurrent.futures.Future[Any]) -> None:
        done, self._flushing = self._flushing, None
        try:
            written, error = writing.result()
        except Exception as exc:  # a bug in the write: the records stay, the frames still leave
            written, error = 0, exc
        for record in batch[:written]:
            if self.unwritten.get(record.job_id) is record:
                del self.unwritten[record.job_id]
        if error is not None:
            self._failed(error)
            if self._retry is None:  # try again soon, not only when the next record comes
                self._retry = asyncio.get_running_loop().call_later(RETRY_S, self._retry_now)
        if done is not None:
            done.set_result(None)
        if self._next is not None:
            self.flush()

    def _retry_now(self) -> None:
        self._retry = None
        self.flush()

    def barrier(self, action: SendFrame | SendPing) -> asyncio.Future[None] | None:
        """What a frame must wait for: for a result whose record is not written yet, the batch writing it."""
        if not isinstance(action, SendFrame) or action.kind != "result" or action.job_id not in self.unwritten:
            return None
        if self._flushing is None:  # a record that failed before: try it now, and send after the attempt
            self.flush()
        return self._next or self._flushing

    async def settle(self) -> None:
        """Write what is unwritten (one more attempt for records that failed) and wait until it is done."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self.flush()
        while self._flushing is not None:
            await asyncio.shield(self._flushing)


def call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """``callback(*args)`` on ``loop`` from another thread; nothing once the loop is closed."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)
