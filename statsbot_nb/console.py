"""What the headless worker prints and logs: one line per state change and finished job on the terminal, and
``<home>/logs/worker.log`` for everything (tracebacks included). Used by ``statsbot-worker`` and by the
login service (:mod:`statsbot_nb.service.runservice`), so both read the same.
"""

from __future__ import annotations

import contextlib
import io
import logging
import logging.handlers
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .config import logs_dir
from .events import Event, JobFailed, JobFinished, JobProgress, LogLine, StateChanged
from .inert import InertFormatter, NotShown, inert
from .jobs import file_of


class PrivateLogHandler(logging.handlers.RotatingFileHandler):
    """A rotating log file only its owner can read (0600, also an older file left readable by others).

    The logs hold job file paths and error text, which can quote a table's values. The file is opened
    without following a symlink planted at its name.
    """

    def _open(self) -> io.TextIOWrapper:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.baseFilename, flags, 0o600)
        if hasattr(os, "fchmod"):
            with contextlib.suppress(OSError):
                os.fchmod(fd, 0o600)
        return open(fd, self.mode, encoding=self.encoding, errors=self.errors)


def private_logs(home: Path) -> Path:
    """``<home>/logs``, created if needed and made 0700 (best effort where modes do not apply)."""
    folder = logs_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(folder, 0o700)
    return folder


def setup_logging(home: Path, verbose: bool) -> Path | None:
    """Log to ``<home>/logs/worker.log`` (tracebacks live there) and warnings to stderr."""
    root = logging.getLogger("statsbot_nb")
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if verbose else logging.WARNING)
    console.setFormatter(InertFormatter("%(levelname)s %(name)s: %(message)s"))
    console.addFilter(NotShown())  # state changes are printed as events already
    root.addHandler(console)
    try:
        path = private_logs(home) / "worker.log"
        handler = PrivateLogHandler(path, maxBytes=5 * 2**20, backupCount=3, encoding="utf-8")
        handler.setFormatter(InertFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        return path
    except OSError:
        return None


def event_printer(out: Callable[[str], None], verbose: bool) -> Callable[[Event], None]:
    """Turn worker events into one line each: connection state, and one line per finished job."""
    files: dict[str, str] = {}

    def on_event(event: Event) -> None:
        # Everything below that came from the server (action names, paths, ids, sentences) goes through
        # inert(): no terminal escapes, no forged lines, bounded length.
        stamp = time.strftime("%H:%M:%S")
        if isinstance(event, StateChanged):
            out(f"{stamp} [{event.state}] {inert(event.message, 1000)}")
        elif event.kind == "accepted":
            files[event.job_id] = inert(file_of(event.params))  # type: ignore[union-attr]
            if verbose:
                out(f"{stamp} job {inert(event.job_id)}: {inert(event.action, 80)} {files[event.job_id]}".rstrip())
        elif isinstance(event, JobProgress) and verbose:
            eta = f", ~{event.eta:.0f} s left" if event.eta is not None else ""
            out(f"{stamp}   {inert(event.job_id)} {event.progress:5.1f}% {inert(event.message)}{eta}")
        elif isinstance(event, (JobFinished, JobFailed)):
            where = files.pop(event.job_id, "")
            where = f" {where}" if where else ""
            action = inert(event.action, 80)
            if isinstance(event, JobFinished):
                out(f"{stamp} ok     {action}{where}: {inert(event.summary)} ({event.duration:.1f} s)")
            else:
                label = "cancel" if event.cancelled else "failed"
                out(f"{stamp} {label} {action}{where}: {inert(event.error, 1000)} ({event.duration:.1f} s)")
        elif isinstance(event, LogLine) and (verbose or event.level != "info"):
            out(f"{stamp} {event.level}: {inert(event.message, 1000)}")

    return on_event
