"""What the reference server keeps and tells: job handles and results, workers, and watcher events.

Plain data shared by :mod:`statsbot_nb.server.core` and the terminal front end; no I/O.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from websockets.asyncio.server import ServerConnection

ProgressCallback = Callable[["JobHandle", float, str], None]

#: Why a token was refused (the ``error`` of ``auth_failed``); today's server says the first for every case.
UNKNOWN_TOKEN = "Invalid or expired token"
EXPIRED_TOKEN = "This token expired"
USED_TOKEN = "This token was already used; a token connects one worker, once"


@dataclass(frozen=True)
class JobResult:
    """The outcome of a job as the server stored it."""

    job_id: str
    success: bool
    data: dict[str, Any] | None = None
    error: str | None = None
    cancelled: bool = False


@dataclass
class JobHandle:
    """A submitted job: await it (``await handle``) for its :class:`JobResult`."""

    job_id: str
    action: str
    params: dict[str, Any]
    user_id: int | None
    on_progress: ProgressCallback | None = None
    progress: float = 0.0
    message: str = ""
    progress_updates: int = 0
    dispatch_count: int = 0
    future: asyncio.Future[JobResult] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    submitted_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None  # first sent to a worker (monotonic clock)
    finished_at: float | None = None  # result stored

    def __await__(self) -> Any:
        return asyncio.shield(self.future).__await__()

    @property
    def done(self) -> bool:
        """True once a result is stored."""
        return self.future.done()

    @property
    def duration(self) -> float | None:
        """Seconds from the first dispatch (or the submission, if never dispatched) to the result."""
        if self.finished_at is None:
            return None
        return self.finished_at - (self.started_at if self.started_at is not None else self.submitted_at)


@dataclass
class WorkerInfo:
    """An authenticated worker connection."""

    machine_id: str
    user_id: int
    protocol: int
    capabilities: dict[str, Any] | None
    connection: ServerConnection
    assigned: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class ServerEvent:
    """What a watcher hears: a worker ``joined``, ``left`` or was ``refused``, or a job's ``result`` was stored.

    ``detail`` says why a worker left or was refused, in words; ``requeued`` names the jobs a leaving worker
    had not answered. Never carries a token.
    """

    kind: Literal["joined", "left", "refused", "result"]
    machine_id: str = ""
    worker: WorkerInfo | None = None
    detail: str = ""
    requeued: tuple[str, ...] = ()
    job: JobHandle | None = None
    result: JobResult | None = None


Watcher = Callable[[ServerEvent], None]
