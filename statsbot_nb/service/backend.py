"""What every platform's service manager offers the login service, and the helpers they share.

A :class:`Backend` writes its unit, registers it with the manager (systemd, launchd, Task Scheduler),
starts, stops and removes it, and reports what the manager knows in a :class:`ManagerView`. Commands run
without a shell, with a timeout, and a failure becomes a :class:`~statsbot_nb.errors.ServiceError` whose
sentence names the command and what it said.
"""

from __future__ import annotations

import os
import subprocess
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from .. import atomic
from ..errors import ServiceError
from ..inert import inert
from .spec import ServiceSpec


@dataclass(frozen=True)
class ManagerView:
    """What the service manager says about the unit. ``running`` is None when the manager cannot be asked."""

    installed: bool
    running: bool | None
    pid: int | None = None
    since: float | None = None  # seconds since the epoch, when the manager says
    restarts: int | None = None
    detail: str = ""  # a sentence when something is off (manager unreachable, last run failed)


class Backend(ABC):
    """One platform's service manager, for the StatsBot home ``home``."""

    #: How the unit is called in sentences ("a systemd user unit").
    kind = "service"

    def __init__(self, home: Path) -> None:
        self.home = home

    @property
    @abstractmethod
    def unit_path(self) -> Path:
        """Where the unit file lives."""

    @abstractmethod
    def render(self, spec: ServiceSpec) -> bytes:
        """The unit file's bytes for ``spec``."""

    @abstractmethod
    def install(self, spec: ServiceSpec, start: bool = True) -> None:
        """Write the unit, register it to start at login, and start it now unless ``start`` is False."""

    @abstractmethod
    def uninstall(self) -> None:
        """Stop the service, unregister it and remove the unit (missing is fine)."""

    @abstractmethod
    def start(self) -> None:
        """Start the installed service now."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the service cleanly (it is not restarted; it starts again at the next login)."""

    @abstractmethod
    def query(self) -> ManagerView:
        """What the manager knows about the unit."""

    def write_unit(self, spec: ServiceSpec, mode: int = 0o644) -> Path:
        """Write the rendered unit atomically (it holds no secret: readable like any unit)."""
        path = self.unit_path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_bytes(path, self.render(spec), mode=mode)
        except OSError as exc:
            raise ServiceError(f"Cannot write {path}: {exc.strerror or exc}.") from exc
        return path

    def remove_unit(self) -> bool:
        """Delete the unit file; True if it existed."""
        try:
            self.unit_path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise ServiceError(f"Cannot remove {self.unit_path}: {exc.strerror or exc}.") from exc
        return True


def run(cmd: list[str], *, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run a manager command (no shell); a missing program, a timeout or (``check``) a failure: ServiceError."""
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, errors="replace"
        )
    except FileNotFoundError as exc:
        raise ServiceError(f"'{cmd[0]}' is not installed on this machine, so the service cannot be managed.") from exc
    except subprocess.TimeoutExpired as exc:
        raise ServiceError(f"'{' '.join(cmd)}' did not answer within {timeout:g} s.") from exc
    if check and done.returncode != 0:
        raise ServiceError(f"'{' '.join(cmd)}' failed: {said(done)}")
    return done


def said(done: subprocess.CompletedProcess[str]) -> str:
    """The last line a command printed (stderr first), inert, or its exit code."""
    lines = [line for line in (done.stderr or done.stdout or "").splitlines() if line.strip()]
    return inert(lines[-1], 400) if lines else f"exit code {done.returncode}"


def pid_alive(pid: int | None) -> bool:
    """True if a process with this id exists (never sends it anything: on Windows os.kill would end it)."""
    if not pid or pid <= 0:
        return False
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import ctypes

        kernel = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        try:
            code = ctypes.c_ulong()
            ok = kernel.GetExitCodeProcess(handle, ctypes.byref(code))
            return bool(ok) and code.value == 259  # STILL_ACTIVE
        finally:
            kernel.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
