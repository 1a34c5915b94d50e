"""What the login service runs, independent of the platform: the interpreter, the home, the command line.

Every platform's unit (systemd, launchd, Task Scheduler) is rendered from one :class:`ServiceSpec`. The
command is the current interpreter running ``-m statsbot_nb.cli run-service --home HOME``: no token, no
option that could carry one, no environment. The token is read from ``<home>/service/login.json`` when
the service starts.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

from ..errors import ServiceError

SYSTEMD_UNIT = "statsbot-worker.service"
LAUNCHD_LABEL = "org.statsbot.worker"
TASK_NAME = "StatsBot Worker"
DESCRIPTION = "StatsBot local worker (statsbot-worker login service)"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class ServiceSpec:
    """The service's command: ``interpreter -m statsbot_nb.cli run-service --home HOME``.

    ``interpreter`` and ``home`` are absolute paths kept as given (a virtual environment's ``python`` is a
    symlink that must not be resolved, or the service would run outside the environment). ``windows`` marks
    Windows paths, so a spec for another platform can be rendered in tests on any machine.
    """

    interpreter: str
    home: str
    windows: bool = False

    def __post_init__(self) -> None:
        for what, value in (("interpreter", self.interpreter), ("StatsBot home", self.home)):
            if _CONTROL.search(value):
                raise ServiceError(
                    f"The {what} path {value!r} contains a control character (a newline or tab); a service "
                    "cannot name it safely. Use a folder without one."
                )
            absolute = _is_absolute(value, self.windows)
            if not absolute:
                raise ServiceError(f"The {what} path {value!r} must be absolute for a service.")

    @property
    def argv(self) -> list[str]:
        """The full command line, interpreter first."""
        return [self.interpreter, "-m", "statsbot_nb.cli", "run-service", "--home", self.home]

    @property
    def stderr_log(self) -> str:
        """Where a manager that can redirect output (launchd) puts what the service prints before its log opens."""
        sep = "\\" if self.windows else "/"
        return self.home.rstrip("/\\") + sep + "logs" + sep + "service.stderr.log"


def _is_absolute(value: str, windows: bool) -> bool:
    path: PurePath = PureWindowsPath(value) if windows else PurePosixPath(value)
    return path.is_absolute()


def service_interpreter(executable: str | None = None, platform: str | None = None) -> str:
    """The interpreter the service should run: this one (``pythonw.exe`` beside it on Windows: no console)."""
    executable = executable or sys.executable
    platform = platform or sys.platform
    if not executable:
        raise ServiceError("Cannot tell which Python runs this program (sys.executable is empty).")
    if platform == "win32":
        path = Path(executable)
        if path.name.lower() == "python.exe":
            windowless = path.with_name("pythonw.exe")
            if windowless.exists():
                return str(windowless)
    return executable


def current_spec(home: Path) -> ServiceSpec:
    """The spec for this interpreter and the given StatsBot home (made absolute)."""
    return ServiceSpec(service_interpreter(), str(home.expanduser().absolute()), windows=sys.platform == "win32")
