"""The worker as a login service: it starts at login, survives closing the notebook, restarts after a crash.

The Python face of ``statsbot-worker login`` and ``statsbot-worker service ...`` (the notebook panel's
"keep this worker running" button calls these)::

    from statsbot_nb import service
    service.login(token, ws_url="wss://bot.example/ws", allow=["~/data"])   # token stored with mode 0600
    service.install()                    # systemd user unit / launchd agent / Task Scheduler task, started
    print(service.status().describe())   # "The worker service runs (pid 4242, since ..., as /usr/bin/python3) ..."
    service.stop(); service.start(); service.uninstall()

The token lives only in ``<home>/service/login.json`` (0600); the unit runs this interpreter with
``-m statsbot_nb.cli run-service --home HOME``. A rejected token parks the service until the next
:func:`login` (see :mod:`statsbot_nb.service.runservice`). Every failure is a
:class:`~statsbot_nb.errors.ServiceError` or :class:`~statsbot_nb.errors.ConfigError` with a sentence.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..config import statsbot_home
from ..errors import ServiceError
from .backend import Backend
from .login import store_login
from .spec import current_spec
from .status import ServiceStatus, gather
from .store import clear_stop_request, forget_login

__all__ = ["ServiceStatus", "backend_for", "install", "login", "start", "status", "stop", "uninstall"]

login = store_login


def backend_for(home: Path | None = None, platform: str | None = None) -> Backend | None:
    """This platform's service manager for ``home`` (None where none is supported)."""
    home = statsbot_home() if home is None else home
    platform = platform or sys.platform
    if platform.startswith("linux"):
        from .systemd import SystemdBackend

        return SystemdBackend(home)
    if platform == "darwin":
        from .launchd import LaunchdBackend

        return LaunchdBackend(home)
    if platform == "win32":
        from .schtasks import TaskSchedulerBackend

        return TaskSchedulerBackend(home)
    return None


def _backend(home: Path) -> Backend:
    backend = backend_for(home)
    if backend is None:
        raise ServiceError(
            f"A login service is not supported on {sys.platform}: run 'statsbot-worker' in a terminal instead."
        )
    return backend


def install(start: bool = True, home: Path | None = None) -> ServiceStatus:
    """Write and register the unit for this interpreter (replacing an older one), start it unless ``start`` is False.

    If the manager refuses, a unit file this call created is removed again, so nothing half-installed stays.
    """
    home = statsbot_home() if home is None else home
    backend = _backend(home)
    spec = current_spec(home)
    existed = backend.unit_path.exists()
    clear_stop_request(home)
    try:
        backend.install(spec, start=start)
    except ServiceError:
        if not existed:
            backend.remove_unit()
        raise
    return gather(home, backend)


def uninstall(forget: bool = False, home: Path | None = None) -> ServiceStatus:
    """Stop and remove the service; with ``forget`` also delete the stored token."""
    home = statsbot_home() if home is None else home
    backend = _backend(home)
    backend.uninstall()
    if forget:
        forget_login(home)
    return gather(home, backend)


def start(home: Path | None = None) -> ServiceStatus:
    """Start the installed service now."""
    home = statsbot_home() if home is None else home
    backend = _backend(home)
    if not backend.unit_path.exists():
        raise ServiceError("The worker service is not installed: run 'statsbot-worker service install'.")
    clear_stop_request(home)
    backend.start()
    return gather(home, backend)


def stop(home: Path | None = None) -> ServiceStatus:
    """Stop the service cleanly (it is not restarted; it starts again at the next login)."""
    home = statsbot_home() if home is None else home
    backend = _backend(home)
    if not backend.unit_path.exists():
        raise ServiceError("The worker service is not installed, so there is nothing to stop.")
    backend.stop()
    return gather(home, backend)


def status(lines: int = 10, home: Path | None = None) -> ServiceStatus:
    """What the service is doing, with the last ``lines`` lines of its log."""
    home = statsbot_home() if home is None else home
    return gather(home, backend_for(home), lines)
