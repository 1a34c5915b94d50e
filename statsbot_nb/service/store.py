"""The login service's files in the StatsBot home: the login (token and options), its state, its log.

``<home>/service/login.json`` (mode 0600, folder 0700) holds the token given to ``statsbot-worker login``
and the options the service runs with. It is the only place the token is kept: never in the unit, its
arguments or its environment. ``<home>/service/state.json`` is written by the running service (what it is
doing, since when, as which process) so ``status`` can say it in words on every platform;
``<home>/logs/service.log`` is the service's own log. A ``stop`` request file lets a manager without
signals (Task Scheduler) ask for a clean stop. Writes go through :mod:`statsbot_nb.atomic`, as
``config.json``'s do.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import atomic
from ..config import logs_dir
from ..errors import ConfigError

LOGIN_NAME = "login.json"
STATE_NAME = "state.json"
STOP_NAME = "stop-requested"
LOG_NAME = "service.log"

#: Options the service passes to its worker, with their types (what ``login`` accepts besides the token).
OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "ws_url": (str,),
    "allow": (list,),
    "max_jobs": (int,),
    "privacy": (str,),
    "max_file_mb": (int, float),
    "max_job_memory": (str, int, float),
    "max_job_seconds": (int, float),
    "machine_id": (str,),
    "insecure_ws": (bool,),
    "verbose": (bool,),
}


def service_dir(home: Path) -> Path:
    """The folder of the service's own files inside the StatsBot home."""
    return home / "service"


def login_path(home: Path) -> Path:
    """Where ``statsbot-worker login`` keeps the token and the options (mode 0600)."""
    return service_dir(home) / LOGIN_NAME


def state_path(home: Path) -> Path:
    """Where the running service says what it is doing."""
    return service_dir(home) / STATE_NAME


def stop_path(home: Path) -> Path:
    """The file whose presence asks the running service to stop cleanly."""
    return service_dir(home) / STOP_NAME


def log_path(home: Path) -> Path:
    """The service's own log (every platform: ``status`` and ``logs`` read it)."""
    return logs_dir(home) / LOG_NAME


def _ensure_dir(home: Path) -> Path:
    folder = service_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(folder, 0o700)  # the token lives here
    return folder


@dataclass(frozen=True)
class Login:
    """What ``login`` stored: the token (never shown) and the worker options the service uses."""

    token: str = field(repr=False)
    options: dict[str, Any] = field(default_factory=dict)
    saved_at: float = 0.0


def save_login(home: Path, token: str, options: dict[str, Any]) -> Path:
    """Write the token and options to ``login.json`` atomically with mode 0600; returns the path."""
    unknown = sorted(set(options) - set(OPTION_TYPES))
    if unknown:
        raise ConfigError(f"Unknown service option(s): {', '.join(unknown)}.")
    _ensure_dir(home)
    data = {"token": token, "options": options, "saved_at": time.time()}
    text = json.dumps(data, indent=2, sort_keys=True)
    return atomic.write_bytes(login_path(home), text.encode("utf-8"), mode=0o600)


def load_login(home: Path) -> Login | None:
    """The stored login, or None when there is none; a damaged file is a :class:`ConfigError`."""
    path = login_path(home)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    except ValueError as exc:
        raise ConfigError(f"{path} is damaged; run 'statsbot-worker login' again.") from exc
    token = data.get("token") if isinstance(data, dict) else None
    options = data.get("options", {}) if isinstance(data, dict) else None
    if not isinstance(token, str) or not token or not isinstance(options, dict):
        raise ConfigError(f"{path} is damaged; run 'statsbot-worker login' again.")
    clean = {k: v for k, v in options.items() if k in OPTION_TYPES and v is not None}
    for key, value in clean.items():  # a wrong type is refused, not dropped: dropping loosened "privacy"
        if not isinstance(value, OPTION_TYPES[key]) or (key == "allow" and not all(isinstance(p, str) for p in value)):
            raise ConfigError(f"{path} is damaged (option {key!r} is not usable); run 'statsbot-worker login' again.")
    saved = data.get("saved_at")
    return Login(token, clean, float(saved) if isinstance(saved, (int, float)) else 0.0)


def forget_login(home: Path) -> bool:
    """Delete the stored login; True if there was one."""
    try:
        login_path(home).unlink()
    except FileNotFoundError:
        return False
    return True


def login_signature(home: Path) -> tuple[int, int, int] | None:
    """Identity of the current ``login.json`` (inode, size, mtime): a new login changes it, None if absent."""
    try:
        info = login_path(home).stat()
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


@dataclass(frozen=True)
class ServiceState:
    """What the running service last said about itself (``state.json``)."""

    pid: int
    interpreter: str
    started: float
    state: str  # starting, connecting, connected, reconnecting, parked, stopped
    message: str
    since: float
    version: str = ""
    parked_reason: str = ""  # "rejected", "no-login", "config" when parked


def write_state(home: Path, state: ServiceState) -> None:
    """Record the service's state atomically (best effort: a full disk must not stop the worker)."""
    with contextlib.suppress(OSError):
        _ensure_dir(home)
        text = json.dumps(asdict(state), indent=2, sort_keys=True)
        atomic.write_bytes(state_path(home), text.encode("utf-8"), mode=0o600)


def read_state(home: Path) -> ServiceState | None:
    """The last recorded state, or None when the service never ran (or the file is unreadable)."""
    try:
        data = json.loads(state_path(home).read_text(encoding="utf-8"))
        return ServiceState(**{k: data[k] for k in ServiceState.__dataclass_fields__ if k in data})
    except (OSError, ValueError, TypeError):
        return None


def request_stop(home: Path) -> None:
    """Ask the running service to stop cleanly (it checks about once a second)."""
    _ensure_dir(home)
    atomic.write_bytes(stop_path(home), b"stop\n", mode=0o600)


def take_stop_request(home: Path) -> bool:
    """True (and the request is removed) when a stop was requested."""
    try:
        stop_path(home).unlink()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return True


def clear_stop_request(home: Path) -> None:
    """Drop a stale stop request (before a start)."""
    with contextlib.suppress(OSError):
        stop_path(home).unlink()


def tail(path: Path, lines: int = 10, max_bytes: int = 256 * 1024, end: int | None = None) -> list[str]:
    """The last ``lines`` lines of a text file ([] when missing), reading at most ``max_bytes`` before ``end``.

    ``end`` (default: the file's size) lets a follower print exactly what comes before the offset it follows from.
    """
    if lines <= 0:
        return []
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END) if end is None else end
            fh.seek(max(0, size - max_bytes))
            data = fh.read(size - max(0, size - max_bytes))
    except OSError:
        return []
    text = data.decode("utf-8", errors="replace").splitlines()
    if size > max_bytes and text:
        text = text[1:]  # the first line is cut
    return text[-lines:]
