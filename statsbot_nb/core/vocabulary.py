"""The core's vocabulary: job records, the events it takes and the actions it returns (plain values)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..events import (
    Event as BusEvent,
)
from ..jobs import ActionSpec
from ..journal import Existing, Restored
from ..retry import Backoff
from .limits import JobStatus

# ---------------------------------------------------------------------------------------------- records


@dataclass
class JobRecord:
    """What the worker knows about one job; ``worker.jobs[job_id]``."""

    job_id: str
    action: str
    params: dict[str, Any]
    status: JobStatus = "queued"
    progress: float = 0.0
    stage: str = "queued"
    message: str = ""
    eta: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    accepted_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    isolated: bool = True
    journaled: bool = True
    cancel_requested: bool = False

    @property
    def finished(self) -> bool:
        """True once the job has an outcome."""
        return self.status in ("done", "failed", "cancelled")

    @property
    def duration(self) -> float | None:
        """Seconds from start to end (None until it has both)."""
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at

    def elapsed(self, now: float) -> float | None:
        """Seconds since the job started, as of ``now`` (its duration once it has ended)."""
        if self.started_at is None:
            return None
        return (self.ended_at if self.ended_at is not None else now) - self.started_at


#: A job record keeps parameter values up to this size (characters, roughly); larger ones are summarised.
PARAM_VALUE_CHARS = 2000


def _size(value: Any, budget: int) -> int:
    """A cheap estimate of ``value``'s JSON size, that stops counting once past ``budget``."""
    if isinstance(value, str):
        return len(value) + 2
    if isinstance(value, dict):
        total = 2
        for key, item in value.items():
            total += len(str(key)) + 4 + _size(item, budget - total)
            if total > budget:
                break
        return total
    if isinstance(value, list | tuple):
        total = 2
        for item in value:
            total += 1 + _size(item, budget - total)
            if total > budget:
                break
        return total
    return 8


def bounded_params(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with every value larger than :data:`PARAM_VALUE_CHARS` replaced by a short description.

    What a job record (and the panel, and the accepted event) holds: paths, names and options in full, a
    whole table sent with ``save_file`` as ``"<omitted: about 23,000,000 characters>"``.
    """
    kept: dict[str, Any] = {}
    for key, value in list(params.items())[:200]:
        size = _size(value, PARAM_VALUE_CHARS)
        kept[str(key)[:200]] = (
            value if size <= PARAM_VALUE_CHARS else f"<omitted: over {PARAM_VALUE_CHARS:,} characters>"
        )
    return kept


# ---------------------------------------------------------------------------------------------- events in


@dataclass(frozen=True)
class Start:
    """The driver begins: connect."""


@dataclass(frozen=True)
class ConnectionOpened:
    """The WebSocket handshake of connection ``conn`` completed."""

    conn: int


@dataclass(frozen=True)
class FrameReceived:
    """A text frame arrived on ``conn``."""

    conn: int
    frame: str | bytes


@dataclass(frozen=True)
class ConnectionLost:
    """Connection ``conn`` ended or could not be opened.

    ``reason`` is a sentence for the user (None: a plain close); ``fatal`` means retrying cannot help
    (a bad URL); ``policy_close`` means the server closed with code 1008 (it refused the token).
    """

    conn: int
    reason: str | None = None
    fatal: bool = False
    policy_close: bool = False


@dataclass(frozen=True)
class PongReceived:
    """The pong for ping ``ping`` on ``conn`` arrived: every frame sent before it reached the server."""

    conn: int
    ping: int


@dataclass(frozen=True)
class TimerFired:
    """A timer the core scheduled went off."""

    name: Literal["auth", "reconnect", "recheck"]
    key: int


@dataclass(frozen=True)
class JobProgressed:
    """A running job reported progress."""

    job_id: str
    percent: float
    message: str
    stage: str


@dataclass(frozen=True)
class JobEnded:
    """A started job ended: ``ok`` with ``data``, or ``error``/``cancelled`` with a sentence."""

    job_id: str
    outcome: Literal["ok", "error", "cancelled"]
    data: dict[str, Any] | None = None
    error: str = ""


@dataclass(frozen=True)
class CancelRequested:
    """The user asked to cancel a job."""

    job_id: str


@dataclass(frozen=True)
class Approval:
    """The user's answer to a job waiting for approval: allow once, deny, or allow its action always."""

    job_id: str
    answer: Literal["allow", "deny", "always"]


@dataclass(frozen=True)
class AskChanged:
    """Ask-before-running switched on or off (off lets every waiting job run)."""

    ask: bool


@dataclass(frozen=True)
class StopRequested:
    """The user asked the worker to stop: cancel what runs, connect no more."""


@dataclass(frozen=True)
class Ended:
    """The driver has shut everything down."""


@dataclass(frozen=True)
class JobReserved:
    """The answer to :class:`ReserveJob`: ``existing`` is None for a new id, else how the journal has it."""

    job_id: str
    existing: Existing | None = None


Event = (
    Restored
    | JobReserved
    | Start
    | ConnectionOpened
    | FrameReceived
    | ConnectionLost
    | PongReceived
    | TimerFired
    | JobProgressed
    | JobEnded
    | CancelRequested
    | Approval
    | AskChanged
    | StopRequested
    | Ended
)


# ---------------------------------------------------------------------------------------------- actions out


@dataclass(frozen=True)
class OpenConnection:
    """Dial the server as connection ``conn``."""

    conn: int


@dataclass(frozen=True)
class CloseConnection:
    """Close connection ``conn``."""

    conn: int


@dataclass(frozen=True)
class SendFrame:
    """Send ``frame`` on ``conn`` (only if ``conn`` is still the live connection), after earlier frames."""

    conn: int
    frame: str
    kind: Literal["auth", "progress", "result"]
    job_id: str | None = None


@dataclass(frozen=True)
class SendPing:
    """Ping on ``conn`` after every frame queued before it; report the pong as :class:`PongReceived`."""

    conn: int
    ping: int


@dataclass(frozen=True)
class StartJob:
    """Run a job off the loop; report :class:`JobProgressed` and exactly one :class:`JobEnded`."""

    job_id: str
    action: str
    params: dict[str, Any]
    spec: ActionSpec


@dataclass(frozen=True)
class CancelJob:
    """Stop a started job (its process is killed); it still ends with :class:`JobEnded`."""

    job_id: str


@dataclass(frozen=True)
class ScheduleTimer:
    """Fire :class:`TimerFired` (``name``, ``key``) after ``delay`` seconds."""

    name: Literal["auth", "reconnect", "recheck"]
    delay: float
    key: int


@dataclass(frozen=True)
class Publish:
    """Tell observers (panel, CLI, log) what happened."""

    event: BusEvent


@dataclass(frozen=True)
class Log:
    """A line for the local log only (never sent to the server). ``shown``: observers show it already as an
    event (a state change), so a console log next to them skips it (the log file keeps it)."""

    level: int
    message: str
    shown: bool = False


@dataclass(frozen=True)
class ReserveJob:
    """Record durably that ``job_id`` was accepted, unless the journal knows it; answer with :class:`JobReserved`.

    The journal is shared by every worker of this home, so it alone can tell whether another worker (one
    that died, or one still running) already took this id.
    """

    job_id: str
    action: str


@dataclass(frozen=True)
class JournalStarted:
    """Record that ``job_id`` began running."""

    job_id: str


@dataclass(frozen=True)
class JournalResult:
    """Record ``job_id``'s result frame durably (before it is sent)."""

    job_id: str
    frame: str


@dataclass(frozen=True)
class JournalConfirmed:
    """Record that the server has ``job_id``'s result."""

    job_id: str


@dataclass(frozen=True)
class Finish:
    """The worker is done connecting: rejected (``rejection``), a fatal error (``fatal``), or stopped."""

    rejection: str | None = None
    fatal: str | None = None


Action = (
    OpenConnection
    | CloseConnection
    | SendFrame
    | SendPing
    | StartJob
    | CancelJob
    | ScheduleTimer
    | Publish
    | Log
    | ReserveJob
    | JournalStarted
    | JournalResult
    | JournalConfirmed
    | Finish
)


# ---------------------------------------------------------------------------------------------- the core


@dataclass
class CoreConfig:
    """What the core needs to know that does not change while it runs."""

    url: str
    machine_id: str
    worker_version: str
    capabilities: Mapping[str, Any]
    actions: Mapping[str, ActionSpec]
    max_jobs: int = 2
    auth_timeout: float = 30.0
    ask: bool = False  # ask the user before running each job (see Approval)
    backoff: Backoff = field(default_factory=Backoff)
