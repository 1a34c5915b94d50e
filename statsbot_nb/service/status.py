"""The login service's status in words: does it run, since when, as which interpreter, what it last said.

Two witnesses are combined: the platform's manager (:class:`~statsbot_nb.service.backend.ManagerView`:
installed, running, main pid) and the service's own record (``state.json``: its pid, interpreter, start
time and what the worker is doing, including "parked" when the token was rejected). The record is believed
only for the process the manager names (or, where the manager cannot say, a process that is alive), so a
worker killed with ``kill -9`` is never reported as connected.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError, ServiceError
from ..inert import inert
from .backend import Backend, ManagerView, pid_alive
from .store import ServiceState, load_login, log_path, read_state, tail

REJECTED_ADVICE = "the token was rejected: run statsbot-worker login"
NO_LOGIN_ADVICE = "no token is stored yet: run statsbot-worker login"
SHORT_LIVED_NOTE = (
    "Tokens from /connect are short-lived on today's server, so after a restart (a reboot, a crash) the "
    "service may need a fresh one from 'statsbot-worker login'."
)


def when(stamp: float | None) -> str:
    """A local date and time for sentences."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "an unknown time"


@dataclass(frozen=True)
class ServiceStatus:
    """Everything ``statsbot-worker service status`` says; :meth:`describe` puts it in sentences."""

    kind: str
    unit_path: Path | None
    installed: bool
    running: bool | None  # None: neither the manager nor the record can tell
    logged_in: bool
    log_path: Path
    pid: int | None = None
    since: float | None = None
    interpreter: str = ""
    state: str = ""  # the worker's state as the service recorded it (connected, parked, stopped, ...)
    message: str = ""
    parked_reason: str = ""  # rejected, no-login, config
    restarts: int | None = None
    detail: str = ""
    last_lines: tuple[str, ...] = field(default=())

    @property
    def parked(self) -> bool:
        """True when the service runs but waits for a new login (token rejected, none stored, bad option)."""
        return bool(self.running) and self.state == "parked"

    def describe(self) -> str:
        """What a person needs to know, in a few sentences (no log lines: see ``last_lines``)."""
        if not self.installed:
            text = f"The worker service is not installed (run 'statsbot-worker service install'): a {self.kind}."
            if not self.logged_in:
                text += f" Also, {NO_LOGIN_ADVICE}."
            return self._with_detail(text)
        where = f" ({self.unit_path})" if self.unit_path else ""
        if self.running is None:
            return self._with_detail(
                f"The worker service is installed as a {self.kind}{where}; whether it runs cannot be told here."
            )
        if not self.running:
            text = f"The worker service is installed as a {self.kind}{where} but is not running"
            if self.state == "stopped":
                text += f" (it stopped cleanly at {when(self.since)})"
            text += "; start it with 'statsbot-worker service start'."
            if not self.logged_in:
                text += f" Also, {NO_LOGIN_ADVICE}."
            return self._with_detail(text)
        said = inert(self.message, 1000)  # the worker's words, which may quote the server: one inert line
        who = f"pid {self.pid}, " if self.pid else ""
        interp = f", as {self.interpreter}" if self.interpreter else ""
        text = f"The worker service runs ({who}since {when(self.since)}{interp}), installed as a {self.kind}{where}."
        if self.parked:
            if self.parked_reason == "rejected":
                text += f" It is parked: {REJECTED_ADVICE}. {SHORT_LIVED_NOTE}"
            elif self.parked_reason == "no-login":
                text += f" It is waiting: {NO_LOGIN_ADVICE}."
            else:
                text += f" It is parked: {said} Fix it with 'statsbot-worker login' (the service retries then)."
        elif self.message or self.state:
            text += f" Now: {said or inert(self.state, 40)}"
        if self.restarts:
            text += f" It was restarted {self.restarts} time(s) after a crash."
        return self._with_detail(text)

    def _with_detail(self, text: str) -> str:
        return f"{text} Note: {self.detail}" if self.detail else text


def gather(home: Path, backend: Backend | None, lines: int = 10) -> ServiceStatus:
    """Ask the manager and read the service's record; ``backend`` None means this platform has no manager."""
    logged_in = _logged_in(home)
    record = read_state(home)
    last = tuple(tail(log_path(home), lines))
    if backend is None:
        return ServiceStatus(
            "login service (not supported on this platform)",
            None,
            False,
            False,
            logged_in,
            log_path(home),
            last_lines=last,
        )
    try:
        view = backend.query()
    except ServiceError as exc:  # the manager's tool is missing or hangs: say so, read the record
        view = ManagerView(backend.unit_path.exists(), None, detail=str(exc))
    mine = _record_for(view, record)
    running = view.running
    if running is None and record is not None:  # the manager cannot say: trust a live process of ours
        running = record.state != "stopped" and pid_alive(record.pid)
        mine = record if running else None
    since = view.since
    pid = view.pid
    if mine is not None:
        since, pid = (mine.since if mine.state == "stopped" else mine.started), mine.pid
    elif record is not None and record.state == "stopped" and not running:
        mine = record
        since = record.since
    return ServiceStatus(
        kind=backend.kind,
        unit_path=backend.unit_path if view.installed else None,
        installed=view.installed,
        running=running,
        logged_in=logged_in,
        log_path=log_path(home),
        pid=pid,
        since=since,
        interpreter=mine.interpreter if mine else "",
        state=mine.state if mine else "",
        message=mine.message if mine else "",
        parked_reason=mine.parked_reason if mine else "",
        restarts=view.restarts,
        detail=view.detail,
        last_lines=last,
    )


def _record_for(view: ManagerView, record: ServiceState | None) -> ServiceState | None:
    """The service's record if it belongs to the process the manager runs now."""
    if record is None or not view.running:
        return None
    if view.pid is not None and view.pid != record.pid:
        return None  # a new process that has not written its record yet
    if view.pid is None and not pid_alive(record.pid):
        return None
    return record


def _logged_in(home: Path) -> bool:
    try:
        return load_login(home) is not None
    except ConfigError:  # a damaged file: the service says so when it reads it
        return True
