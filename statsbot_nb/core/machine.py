"""The core's state machine: the entry point, the connection and authentication, stopping."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, Literal

from .. import protocol
from ..errors import BadJobError, ProtocolError
from ..events import (
    LogLine,
    StateChanged,
    WorkerState,
)
from ..journal import Restored
from ..outbox import Outbox
from . import limits
from .holds import JobHolds
from .limits import REJECTED_HINT
from .vocabulary import (
    Action,
    Approval,
    AskChanged,
    CancelRequested,
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
    JobReserved,
    Log,
    OpenConnection,
    PongReceived,
    Publish,
    ScheduleTimer,
    SendFrame,
    Start,
    StopRequested,
    TimerFired,
)

Phase = Literal["idle", "opening", "auth", "ready", "closing", "waiting", "done"]


class WorkerCore(JobHolds):
    """The worker's state and decisions. Feed it with :meth:`handle`; carry out what it returns."""

    def __init__(self, token: str, config: CoreConfig, *, delays: Iterator[float] | None = None) -> None:
        self.config = config
        self.jobs: dict[str, JobRecord] = {}
        self.state: WorkerState = "idle"
        self.status_message = "Not started."
        self.user_id: int | None = None
        self.server_protocol = 1
        self.rejection: str | None = None
        self.fatal_error: str | None = None
        self.outbox = Outbox()
        self._token = token
        self._session_token: str | None = None
        self._delays = delays
        self._phase: Phase = "idle"
        self._conn = 0  # the number of the live (or next) connection
        self._close_reason: str | None = None
        self._stopping = False
        self._queued: dict[bool, list[str]] = {True: [], False: []}  # isolated? -> job ids waiting for a slot
        self._running: dict[bool, int] = {True: 0, False: 0}
        self._active: set[str] = set()  # queued or running
        self._forgotten: OrderedDict[str, None] = OrderedDict()  # finished ids whose records were dropped
        self._ping = 0
        self._pings: dict[int, tuple[int, tuple[str, ...]]] = {}  # ping -> (conn, job ids it confirms)
        self._reserving: set[str] = set()  # accepted, waiting for the journal's JobReserved
        self._watching: dict[int, protocol.Job] = {}  # timer key -> a job the journal could not settle yet
        self._watch_tries: dict[str, int] = {}
        self._held: list[protocol.Job] = []  # such jobs whose look came while disconnected
        self._params: dict[str, dict[str, Any]] = {}  # full parameters of accepted jobs, until they start
        self._ask = config.ask
        self._awaiting: set[str] = set()  # jobs waiting for the user's Approval
        self._always_allowed: set[str] = set()  # actions the user allowed for good
        self._watch_key = 0
        self._early: list[str | bytes] = []  # job frames that came before auth_response, run once it comes
        self._ready_since = 0.0

    # ------------------------------------------------------------------ queries

    @property
    def connected(self) -> bool:
        """True while authenticated on a live connection."""
        return self._phase == "ready"

    @property
    def started(self) -> bool:
        """True once :class:`Start` was handled."""
        return self._phase != "idle"

    @property
    def idle(self) -> bool:
        """True when no job is queued, running, or waiting for the journal to settle it."""
        return not self._active and not self._watching and not self._held

    @property
    def active(self) -> frozenset[str]:
        """Ids of jobs queued or running."""
        return frozenset(self._active)

    @property
    def finished_connecting(self) -> bool:
        """True once the worker will not connect again (rejected, fatal error or stopped)."""
        return self._phase == "done"

    @property
    def live_connection(self) -> int | None:
        """The number of the connection frames may go out on, if any."""
        return self._conn if self._phase in ("auth", "ready") else None

    def remembers(self, job_id: str) -> bool:
        """True if ``job_id`` was seen (running, finished, or finished and forgotten)."""
        return job_id in self.jobs or job_id in self._forgotten or self.outbox.known(job_id) is not None

    # ------------------------------------------------------------------ the entry point

    def handle(self, event: Event, now: float) -> list[Action]:
        """Apply ``event`` (which happened at ``now``, seconds since the epoch) and return what to do."""
        out: list[Action] = []
        if isinstance(event, FrameReceived):
            self._on_frame(event, now, out)
        elif isinstance(event, JobProgressed):
            self._on_progress(event, now, out)
        elif isinstance(event, JobReserved):
            self._on_reserved(event, now, out)
        elif isinstance(event, JobEnded):
            self._on_job_ended(event, now, out)
        elif isinstance(event, PongReceived):
            self._on_pong(event, out)
        elif isinstance(event, ConnectionOpened):
            self._on_opened(event, out)
        elif isinstance(event, ConnectionLost):
            self._on_lost(event, now, out)
        elif isinstance(event, TimerFired):
            self._on_timer(event, now, out)
        elif isinstance(event, CancelRequested):
            self._cancel(event.job_id, now, out)
        elif isinstance(event, Approval):
            self._on_approval(event.job_id, event.answer, now, out)
        elif isinstance(event, AskChanged):
            self._set_ask(event.ask, now, out)
        elif isinstance(event, StopRequested):
            self._on_stop(now, out)
        elif isinstance(event, Start):
            if self._phase == "idle" and not self._stopping:
                self._set_state("connecting", f"Connecting to {self.config.url} ...", out)
                self._phase = "opening"
                self._conn += 1
                out.append(OpenConnection(self._conn))
        elif isinstance(event, Restored):
            self._on_restored(event, now, out)
        elif isinstance(event, Ended):
            self._phase = "done"
            if self.state not in ("rejected", "stopped"):
                self._set_state("stopped", "Stopped.", out)
        return out

    @property
    def asking(self) -> bool:
        """True while ask-before-running is on."""
        return self._ask

    @property
    def awaiting_approval(self) -> frozenset[str]:
        """Ids of jobs waiting for the user to allow or deny them."""
        return frozenset(self._awaiting)

    def approve(self, job_id: str, answer: str, now: float) -> tuple[bool, list[Action]]:
        """The user's answer for a waiting job; False if no such job waits."""
        out: list[Action] = []
        return self._on_approval(job_id, answer, now, out), out

    def cancel(self, job_id: str, now: float) -> tuple[bool, list[Action]]:
        """Cancel a queued or running job for the user; False if it is not active."""
        out: list[Action] = []
        return self._cancel(job_id, now, out), out

    # ------------------------------------------------------------------ connection

    def _set_state(self, state: WorkerState, message: str, out: list[Action], retry_in: float | None = None) -> None:
        self.state, self.status_message = state, message
        out.append(Log(logging.INFO, f"{state}: {message}", shown=True))
        machine = self.config.machine_id if state == "connected" else None
        out.append(Publish(StateChanged(state, message, retry_in=retry_in, machine_id=machine)))

    def _on_opened(self, event: ConnectionOpened, out: list[Action]) -> None:
        if event.conn != self._conn or self._phase != "opening":
            return
        if self._stopping:
            out.append(CloseConnection(event.conn))
            return
        self._phase = "auth"
        self._close_reason = None
        frame = protocol.encode_auth(
            self._session_token or self._token,
            self.config.machine_id,
            worker_version=self.config.worker_version,
            capabilities=self.config.capabilities,
        )
        out.append(SendFrame(event.conn, frame, "auth"))
        out.append(ScheduleTimer("auth", self.config.auth_timeout, event.conn))

    def _on_timer(self, event: TimerFired, now: float, out: list[Action]) -> None:
        if event.name == "recheck":
            self._recheck(event.key, now, out)
            return
        if event.name == "auth":
            if event.key == self._conn and self._phase == "auth":
                self._close_reason = "The server did not answer the authentication in time."
                out.append(CloseConnection(event.key))
            return
        if event.key != self._conn or self._phase != "waiting" or self._stopping:
            return
        self._phase = "opening"
        self._conn += 1
        self._set_state("reconnecting", f"Connecting to {self.config.url} ...", out)
        out.append(OpenConnection(self._conn))

    def _on_lost(self, event: ConnectionLost, now: float, out: list[Action]) -> None:
        if event.conn != self._conn or self._phase not in ("opening", "auth", "ready", "closing"):
            return
        was = self._phase
        self._phase = "waiting"
        self._pings = {p: v for p, v in self._pings.items() if v[0] != event.conn}
        reason = self._close_reason or event.reason or f"The connection to {self.config.url} was closed."
        self._close_reason = None
        if (
            was == "auth"
            and event.policy_close
            and self._refused("The server closed the connection during authentication", out)
        ):
            return
        if self._stopping:
            return
        if event.fatal:
            self.fatal_error = reason
            self._phase = "done"
            self._set_state("stopped", reason, out)
            out.append(Finish(fatal=reason))
            return
        if was == "ready" and now - self._ready_since >= limits.BACKOFF_RESET_AFTER_S:
            self._delays = None  # a connection that lasted resets the backoff (a flapping one does not)
        if self._delays is None:
            self._delays = self.config.backoff.delays()
        delay = next(self._delays)
        self._set_state("reconnecting", f"{reason} Reconnecting in {delay:.1f} s.", out, retry_in=delay)
        out.append(ScheduleTimer("reconnect", delay, self._conn))

    def _refused(self, what: str, out: list[Action]) -> bool:
        """A refused session token falls back to the original token once; a refused token is final.

        Returns True when the worker is now rejected (nothing more to do).
        """
        if self._session_token is not None:
            out.append(Log(logging.INFO, f"{what} for the session token; retrying with the original token."))
            self._session_token = None
            return False
        self.rejection = f"{what}. {REJECTED_HINT}"
        self._phase = "done"
        self._set_state("rejected", self.rejection, out)
        out.append(Finish(rejection=self.rejection))
        return True

    def _on_auth_frame(self, conn: int, msg: protocol.ServerMessage, now: float, out: list[Action]) -> None:
        if isinstance(msg, protocol.AuthFailed) or (isinstance(msg, protocol.AuthResponse) and not msg.success):
            error = msg.error if isinstance(msg, protocol.AuthFailed) else (msg.message or "refused")
            if not self._refused(f"The server rejected the token ({error})", out):
                self._close_reason = "The server refused the session token; retrying with the original token."
                self._phase = "closing"  # this refusal is handled: the close that follows is not a second one
            out.append(CloseConnection(conn))
            return
        if not isinstance(msg, protocol.AuthResponse):
            out.append(Log(logging.DEBUG, f"Ignoring {msg.type} before auth_response"))
            return
        self._phase = "ready"
        self._ready_since = now
        self.user_id = msg.user_id
        self.server_protocol = msg.protocol
        if msg.session_token:
            self._session_token = msg.session_token
        who = f" (user {self.user_id})" if self.user_id is not None else ""
        self._set_state("connected", f"Connected to {self.config.url} as machine {self.config.machine_id}{who}.", out)
        for job_id, frame in self.outbox.pending():
            self._send_result(job_id, frame, out, journal=False)
        early, self._early = self._early, []
        for frame in early:  # jobs a server sent before its auth_response
            self._on_frame(FrameReceived(conn, frame), now, out)
        held, self._held = self._held, []
        for job in held:  # jobs the journal could not settle before the connection dropped
            self._accept(job, now, out)

    # ------------------------------------------------------------------ frames

    def _on_frame(self, event: FrameReceived, now: float, out: list[Action]) -> None:
        if event.conn != self._conn or self._phase not in ("auth", "ready"):
            return
        try:
            msg = protocol.parse_server_message(event.frame)
        except BadJobError as exc:
            if self._phase != "ready":
                self._hold_early(event.frame, out)
                return
            out.append(Log(logging.WARNING, f"Job {exc.job_id} is malformed: {exc}"))
            self._fail_at_once(exc.job_id, "?", str(exc), now, out)
            return
        except ProtocolError as exc:
            out.append(Log(logging.WARNING, f"Skipping a malformed frame from the server: {exc}"))
            if self._phase == "ready":
                out.append(Publish(LogLine("warning", f"Skipped a malformed frame from the server: {exc}")))
            return
        if self._phase == "auth" and isinstance(msg, protocol.Job):
            self._hold_early(event.frame, out)
        elif self._phase == "auth":
            self._on_auth_frame(event.conn, msg, now, out)
        elif isinstance(msg, protocol.Job):
            self._accept(msg, now, out)
        elif isinstance(msg, protocol.Cancel):
            if not self._cancel(msg.job_id, now, out):
                out.append(Log(logging.INFO, f"Server asked to cancel {msg.job_id}, which is not running"))
        elif isinstance(msg, protocol.Ack):
            self._confirm(msg.job_id, out)
        elif isinstance(msg, protocol.Connected):
            out.append(Log(logging.INFO, f"Server says: {msg.message}"))
        else:
            out.append(Log(logging.DEBUG, f"Ignoring a {msg.type} frame"))

    def _hold_early(self, frame: str | bytes, out: list[Action]) -> None:
        """Keep a job frame that came before the server's auth_response, to handle it once authenticated."""
        if len(self._early) < limits.MAX_ACTIVE_JOBS:
            self._early.append(frame)
            out.append(Log(logging.INFO, "A job arrived before the server confirmed the token; it waits for that"))
        else:
            out.append(Log(logging.WARNING, "Too many jobs before the server confirmed the token; ignoring one"))

    def _on_stop(self, now: float, out: list[Action]) -> None:
        if self._stopping:
            return
        self._stopping = True
        for job_id in list(self._active):
            self._cancel(job_id, now, out)
        # Jobs the journal said another worker holds are that worker's to answer; this one is leaving.
        self._watching.clear()
        self._held.clear()
        self._watch_tries.clear()
        if self._phase in ("idle", "waiting"):
            self._phase = "done"
            out.append(Finish())
        elif self._phase in ("opening", "auth"):
            out.append(CloseConnection(self._conn))
