"""Results kept until the server is known to have them, and results remembered for duplicate jobs.

A result is *pending* from the moment it exists until it is confirmed: acked by a protocol-2 server, or
covered by a ping/pong that completed after the result frame was written (the stream is ordered). After
a reconnect every pending result is sent again; servers match by ``job_id``. Confirmed results are
remembered (bounded) so a job id seen again gets its result re-sent instead of running twice.
"""

from __future__ import annotations

from collections import OrderedDict


class Outbox:
    """Pending and recently delivered result frames, by job id (pure; no I/O)."""

    def __init__(self, remember: int = 1000, remember_bytes: int = 64 * 2**20) -> None:
        self._pending: OrderedDict[str, str] = OrderedDict()
        self._delivered: OrderedDict[str, str] = OrderedDict()
        self._remember = remember
        #: Delivered frames are kept for repeats only while they fit in this many characters (a few large
        #: load_data results must not pin hundreds of MB); older ones are forgotten first.
        self._remember_bytes = remember_bytes
        self._delivered_size = 0

    def add(self, job_id: str, frame: str) -> None:
        """Keep ``frame`` (a result) until confirmed."""
        self._pending[job_id] = frame
        again = self._delivered.pop(job_id, None)
        if again is not None:
            self._delivered_size -= len(again)

    def confirm(self, job_id: str) -> bool:
        """Mark ``job_id``'s result delivered; False if it was not pending."""
        frame = self._pending.pop(job_id, None)
        if frame is None:
            return False
        self._delivered[job_id] = frame
        self._delivered_size += len(frame)
        while self._delivered and (
            len(self._delivered) > self._remember or self._delivered_size > self._remember_bytes
        ):
            _, dropped = self._delivered.popitem(last=False)
            self._delivered_size -= len(dropped)
        return True

    def pending(self) -> list[tuple[str, str]]:
        """Every unconfirmed (job_id, frame), oldest first."""
        return list(self._pending.items())

    def is_pending(self, job_id: str) -> bool:
        """True while ``job_id``'s result waits for confirmation."""
        return job_id in self._pending

    def known(self, job_id: str) -> str | None:
        """The result frame for ``job_id``, pending or delivered, if still remembered."""
        return self._pending.get(job_id) or self._delivered.get(job_id)

    def __len__(self) -> int:
        return len(self._pending)
