"""``statsbot-worker run-service``: what the login service's unit runs (not meant to be typed by hand).

It reads the token and options from ``<home>/service/login.json`` (never from its arguments or its
environment), runs the worker, writes what it is doing to ``state.json`` and its log to
``<home>/logs/service.log``.

**Parking.** A rejected token (or no stored login, or an option that no longer works) does not make the
service exit: it records "parked" with the reason, stays up idle and polls ``login.json`` about once a
second; when ``statsbot-worker login`` stores a new one it connects again by itself. This was chosen over
exiting with a code the unit does not restart on because it behaves the same under all three managers:
launchd's ``KeepAlive`` has no per-exit-code exception and Task Scheduler's restart settings do not look at
exit codes, and ``login`` then works without asking the manager to start anything. A parked service costs
one idle process and makes no connection attempt, so there is no restart storm against the server.

**Exit codes.** 0 after a clean stop (SIGTERM from ``systemctl stop`` / ``launchctl bootout``, Ctrl-C, or
the stop-request file that ``service stop`` writes on Windows); the managers do not restart on 0. 1 after a
crash (the traceback goes to the log), so the manager restarts it. 2 for arguments it does not understand.
A new ``login`` while connected reconnects with the new token (running jobs are cancelled, as at any stop).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .. import __version__
from ..config import statsbot_home
from ..console import PrivateLogHandler, event_printer, private_logs
from ..core import REJECTED_HINT
from ..errors import ConfigError, StatsbotError, TokenRejectedError
from ..events import Event, StateChanged
from ..inert import InertFormatter
from .login import worker_setup
from .status import NO_LOGIN_ADVICE, REJECTED_ADVICE
from .store import (
    ServiceState,
    clear_stop_request,
    load_login,
    log_path,
    login_signature,
    take_stop_request,
    write_state,
)

EXIT_CLEAN, EXIT_CRASH, EXIT_USAGE = 0, 1, 2
LINES_LOGGER = "statsbot_nb.service.lines"
log = logging.getLogger("statsbot_nb.service")

Parked = tuple[str, str]  # (reason: rejected / no-login / config, sentence)


class _ServiceFormatter(logging.Formatter):
    """Event lines as they are (they carry their own time); other records with date, level and logger."""

    def __init__(self) -> None:
        super().__init__()
        self._lines = InertFormatter("%(message)s")
        self._records = InertFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._records.datefmt = "%Y-%m-%d %H:%M:%S"

    def format(self, record: logging.LogRecord) -> str:
        return (self._lines if record.name == LINES_LOGGER else self._records).format(record)


def open_log(home: Path, verbose: bool) -> Callable[[str], None]:
    """Send the package's warnings (debug with ``verbose``) and the service's lines to ``service.log``."""
    private_logs(home)
    handler = PrivateLogHandler(log_path(home), maxBytes=2 * 2**20, backupCount=2, encoding="utf-8")
    handler.setFormatter(_ServiceFormatter())
    package = logging.getLogger("statsbot_nb")
    package.setLevel(logging.DEBUG if verbose else logging.WARNING)
    package.addHandler(handler)
    lines = logging.getLogger(LINES_LOGGER)
    lines.setLevel(logging.INFO)
    lines.propagate = False
    lines.addHandler(handler)

    def out(line: str) -> None:  # event_printer's lines start with HH:MM:SS; the date makes a full stamp
        lines.info("%s %s", time.strftime("%Y-%m-%d"), line)

    return out


class Service:
    """The service's main loop: run the worker with the stored login, park when it cannot, stop cleanly."""

    def __init__(self, home: Path, out: Callable[[str], None], *, poll: float = 1.0) -> None:
        self.home, self.out, self.poll = home, out, poll
        self.started = time.time()
        self._stop = asyncio.Event()

    def say(self, message: str) -> None:
        """One line in the service log."""
        self.out(f"{time.strftime('%H:%M:%S')} {message}")

    def record(self, state: str, message: str, parked_reason: str = "") -> None:
        """Write ``state.json`` for ``status``."""
        write_state(
            self.home,
            ServiceState(
                pid=os.getpid(),
                interpreter=sys.executable,
                started=self.started,
                state=state,
                message=message,
                since=time.time(),
                version=__version__,
                parked_reason=parked_reason,
            ),
        )

    def request_stop(self) -> None:
        """Stop cleanly (signal handlers and the stop-request watcher call this)."""
        self._stop.set()

    async def run(self) -> int:
        """Serve until stopped; returns the exit code (0)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.request_stop)
        clear_stop_request(self.home)
        watcher = loop.create_task(self._watch_stop_file())
        self.say(f"Service started: statsbot_nb {__version__}, pid {os.getpid()}, {sys.executable}")
        self.record("starting", "Starting.")
        try:
            while not self._stop.is_set():
                signature = login_signature(self.home)
                parked = await self._run_once()
                if parked is None or self._stop.is_set():
                    continue
                reason, sentence = parked
                self.record("parked", sentence, reason)
                self.say(f"Parked: {sentence}")
                await self._wait_for_login_change(signature)
                if not self._stop.is_set():
                    self.say("A new login was stored: starting the worker with it.")
        finally:
            watcher.cancel()
        self.record("stopped", "Stopped cleanly.")
        self.say("Stopped.")
        return EXIT_CLEAN

    async def _run_once(self) -> Parked | None:
        """Run one worker with the stored login; None when stopped or the login changed, else why to park."""
        signature = login_signature(self.home)
        try:
            login = load_login(self.home)
        except ConfigError as exc:
            return ("config", str(exc))
        if login is None:
            return ("no-login", f"{NO_LOGIN_ADVICE[0].upper()}{NO_LOGIN_ADVICE[1:]}.")
        options = login.options
        from ..worker import Worker  # heavy: only once there is something to run

        try:
            setup = worker_setup(login.token, options)
            worker = Worker(
                login.token,
                setup.url,
                settings=setup.settings,
                machine_id=setup.machine_id,
                max_jobs=int(options.get("max_jobs", 2)),
                insecure_ws=bool(options.get("insecure_ws", False)),
            )
        except StatsbotError as exc:
            return ("config", str(exc))
        worker.events.subscribe(event_printer(self.out, bool(options.get("verbose"))))
        worker.events.subscribe(self._on_event)
        self.say(f"Worker for machine {setup.machine_id}, server {setup.url}")
        running = asyncio.ensure_future(worker.run())
        stopping = asyncio.ensure_future(self._stop.wait())
        changed = asyncio.ensure_future(self._wait_for_login_change(signature))
        try:
            await asyncio.wait({running, stopping, changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            changed.cancel()
        if not running.done():
            if not self._stop.is_set():
                self.say("A new login was stored: reconnecting with it.")
            await worker.stop()
            with contextlib.suppress(StatsbotError):
                await running
            return None
        error = running.exception()
        if isinstance(error, TokenRejectedError):
            said = str(error).replace(REJECTED_HINT, "").strip()
            return (
                "rejected",
                f"{REJECTED_ADVICE[0].upper()}{REJECTED_ADVICE[1:]} with a fresh token from /connect. {said}",
            )
        if isinstance(error, StatsbotError):
            return ("config", str(error))
        if error is not None:
            raise error
        return ("config", "The worker stopped by itself.")

    def _on_event(self, event: Event) -> None:
        if isinstance(event, StateChanged) and event.state != "rejected":
            self.record(event.state, event.message)

    async def _wait_for_login_change(self, signature: tuple[int, int, int] | None) -> None:
        while not self._stop.is_set() and login_signature(self.home) == signature:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.poll)

    async def _watch_stop_file(self) -> None:
        while not self._stop.is_set():
            if take_stop_request(self.home):
                self.say("A stop was requested.")
                self.request_stop()
                return
            await asyncio.sleep(self.poll)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the unit's command; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="statsbot-worker run-service",
        description="Run the worker as the login service does (its unit runs this; use 'statsbot-worker "
        "service' to manage it). The token comes from 'statsbot-worker login', never from here.",
    )
    parser.add_argument("--home", help="the StatsBot home (default: $STATSBOT_HOME or ~/.statsbot)")
    args, extra = parser.parse_known_args(argv)
    if extra:  # never echoed: it could be a token someone tried to pass
        print(f"run-service: {len(extra)} unexpected argument(s) (not shown); see --help.", file=sys.stderr)
        return EXIT_USAGE
    if args.home:
        os.environ["STATSBOT_HOME"] = args.home
    if sys.stderr is None:  # pythonw.exe: no console
        sys.stderr = open(os.devnull, "w")
    home = statsbot_home()
    home.mkdir(parents=True, exist_ok=True)
    os.chdir(home)
    out = open_log(home, _verbose(home))
    try:
        return asyncio.run(Service(home, out).run())
    except KeyboardInterrupt:
        return EXIT_CLEAN
    except Exception:
        log.exception("The service crashed; its manager starts it again.")
        return EXIT_CRASH


def _verbose(home: Path) -> bool:
    """The stored ``-v`` switch (debug lines in the log); False when there is no readable login."""
    try:
        login = load_login(home)
    except ConfigError:
        return False
    return bool(login and login.options.get("verbose"))
