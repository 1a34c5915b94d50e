"""Events the worker publishes, and a tiny synchronous event bus.

The worker knows nothing about widgets or terminals: it publishes these events on its event-loop thread;
the CLI prints them as text and the notebook panel turns them into widget updates. A subscriber that
raises is logged and never breaks the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

log = logging.getLogger("statsbot_nb.events")

WorkerState = Literal["idle", "connecting", "connected", "reconnecting", "rejected", "stopped"]


@dataclass(frozen=True)
class StateChanged:
    """The connection state changed; ``message`` says what is happening in words.

    ``retry_in`` is the delay before the next attempt when reconnecting; ``machine_id`` is set once
    connected.
    """

    state: WorkerState
    message: str
    retry_in: float | None = None
    machine_id: str | None = None
    kind: Literal["state"] = "state"


@dataclass(frozen=True)
class JobAccepted:
    """A job arrived and was queued."""

    job_id: str
    action: str
    params: dict[str, Any] = field(default_factory=dict)
    kind: Literal["accepted"] = "accepted"


@dataclass(frozen=True)
class JobStarted:
    """A queued job started running."""

    job_id: str
    action: str
    kind: Literal["started"] = "started"


@dataclass(frozen=True)
class JobProgress:
    """Progress of a running job: percent, stage, message and an ETA in seconds when known."""

    job_id: str
    action: str
    progress: float
    stage: str
    message: str
    eta: float | None = None
    kind: Literal["progress"] = "progress"


@dataclass(frozen=True)
class JobCurve:
    """New rounds of a running job's learning curve (``chunk``: ``{"rounds": [...], "training": {metric:
    [...]}, "validation": {metric: [...]}, "total": n}``); the whole curve so far is ``worker.curves[job_id]``.

    Local only: it feeds the panel's chart and is never sent to the server.
    """

    job_id: str
    action: str
    chunk: dict[str, Any]
    kind: Literal["curve"] = "curve"


@dataclass(frozen=True)
class JobFinished:
    """A job succeeded; ``summary`` is a one-line outcome (a metric, a row count)."""

    job_id: str
    action: str
    duration: float
    summary: str
    data: dict[str, Any] = field(default_factory=dict)
    kind: Literal["finished"] = "finished"


@dataclass(frozen=True)
class JobFailed:
    """A job failed or was cancelled; ``error`` is the sentence sent to the server."""

    job_id: str
    action: str
    duration: float
    error: str
    cancelled: bool = False
    kind: Literal["failed"] = "failed"


@dataclass(frozen=True)
class LogLine:
    """A notable thing worth showing to the user (a skipped malformed frame, a re-sent result)."""

    level: Literal["info", "warning", "error"]
    message: str
    kind: Literal["log"] = "log"


@dataclass(frozen=True)
class ApprovalNeeded:
    """A job waits for the user (ask-before-running is on): ``worker.approve(job_id, "allow"|"deny"|"always")``.

    ``description`` says in words what the job would do, built from its parameters (made inert for display).
    """

    job_id: str
    action: str
    description: str
    kind: Literal["approval"] = "approval"


Event = (
    StateChanged
    | JobAccepted
    | JobStarted
    | JobProgress
    | JobCurve
    | JobFinished
    | JobFailed
    | LogLine
    | ApprovalNeeded
)
Subscriber = Callable[[Event], None]


class EventBus:
    """Synchronous publish/subscribe; subscribers run in publish order on the publisher's thread."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Add ``callback``; returns a function that removes it again."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to every subscriber; one that raises is logged and skipped."""
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                log.exception("An event subscriber failed on %s", type(event).__name__)
