"""The login service as a systemd user unit (Linux): ``~/.config/systemd/user/statsbot-worker.service``.

Restart policy: ``Restart=on-failure`` restarts the worker after a crash (an exit code other than 0, a
signal such as ``kill -9``), never after ``systemctl --user stop`` or a clean exit. ``StartLimitBurst``
bounds a crash loop (5 starts in 5 minutes, then the unit stays failed and ``status`` says so). A rejected
token does not exit at all: the service parks, waiting for ``statsbot-worker login`` to store a new one,
so no restart storm can come from it (see :mod:`statsbot_nb.service.runservice`). Exit code 2 (a command
line the service does not understand, which a restart cannot fix) is excluded from restarts.

Quoting: every ExecStart argument is double-quoted with ``\\`` and ``"`` escaped (systemd reads C escapes
inside quotes), ``%`` doubled (specifiers are expanded even inside quotes) and ``$`` doubled (environment
variables are expanded in arguments). The executable itself is treated differently by systemd (checked
with systemd 252): specifiers are expanded there but variables are not, so only ``%`` is doubled; and it
may not contain a quote or a backslash at all ("Executable name contains special characters"), so an
interpreter whose path has one is started through ``/usr/bin/env``, where it is an ordinary argument.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..errors import ServiceError
from .backend import Backend, ManagerView, run, said
from .spec import DESCRIPTION, SYSTEMD_UNIT, ServiceSpec

USAGE_EXIT = 2  # run-service's exit code for a command line it does not understand


def quote_word(word: str) -> str:
    """One ExecStart word, quoted so systemd passes it through unchanged."""
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def quote_executable(path: str) -> str:
    """The ExecStart executable: quoted, ``%`` doubled, or ``/usr/bin/env`` and the path as an argument."""
    if any(ch in path for ch in "\"'\\"):
        return f"/usr/bin/env {quote_word(path)}"
    return '"' + path.replace("%", "%%") + '"'


def render_unit(spec: ServiceSpec) -> str:
    """The unit file's text for ``spec``."""
    command = " ".join([quote_executable(spec.argv[0]), *(quote_word(word) for word in spec.argv[1:])])
    return (
        "# Written by 'statsbot-worker service install'; remove with 'statsbot-worker service uninstall'.\n"
        "# The token is not here: the service reads it from its 0600 file in the StatsBot home.\n"
        "[Unit]\n"
        f"Description={DESCRIPTION}\n"
        "StartLimitIntervalSec=300\n"
        "StartLimitBurst=5\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"ExecStart={command}\n"
        "Restart=on-failure\n"
        "RestartSec=5\n"
        f"RestartPreventExitStatus={USAGE_EXIT}\n"
        "TimeoutStopSec=30\n"
        "\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def unit_dir(env: dict[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/systemd/user`` (default ``~/.config/systemd/user``)."""
    env = dict(os.environ) if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


class SystemdBackend(Backend):
    """``systemctl --user`` for the StatsBot worker unit."""

    kind = "systemd user unit"

    @property
    def unit_path(self) -> Path:
        return unit_dir() / SYSTEMD_UNIT

    def render(self, spec: ServiceSpec) -> bytes:
        return render_unit(spec).encode("utf-8")

    def _ctl(self, *args: str, check: bool = True) -> str:
        done = run(["systemctl", "--user", *args], check=False)
        if check and done.returncode != 0:
            raise ServiceError(
                f"'systemctl --user {' '.join(args)}' failed: {said(done)}. Is a systemd user session running "
                "(you are logged in, or 'loginctl enable-linger' was run for you)?"
            )
        return done.stdout

    def install(self, spec: ServiceSpec, start: bool = True) -> None:
        self.write_unit(spec)
        self._ctl("daemon-reload")
        self._ctl("enable", SYSTEMD_UNIT)
        if start:
            self._ctl("reset-failed", SYSTEMD_UNIT, check=False)
            self._ctl("restart", SYSTEMD_UNIT)

    def uninstall(self) -> None:
        existed = self.unit_path.exists()
        if existed:
            self._ctl("disable", "--now", SYSTEMD_UNIT, check=False)
        self.remove_unit()
        with contextlib.suppress(ServiceError):
            self._ctl("daemon-reload", check=False)
            self._ctl("reset-failed", SYSTEMD_UNIT, check=False)

    def start(self) -> None:
        self._ctl("reset-failed", SYSTEMD_UNIT, check=False)
        self._ctl("start", SYSTEMD_UNIT)

    def stop(self) -> None:
        self._ctl("stop", SYSTEMD_UNIT)

    def query(self) -> ManagerView:
        installed = self.unit_path.exists()
        props = "LoadState,ActiveState,SubState,MainPID,ExecMainStartTimestamp,NRestarts,Result,ExecMainStatus"
        try:
            done = run(["systemctl", "--user", "show", SYSTEMD_UNIT, "-p", props, "--timestamp=unix"], check=False)
        except ServiceError as exc:
            return ManagerView(installed, None, detail=str(exc))
        if done.returncode != 0:
            return ManagerView(installed, None, detail=f"systemd --user cannot be asked here ({said(done)}).")
        return view_from_show(done.stdout, installed)


def view_from_show(text: str, installed: bool) -> ManagerView:
    """A :class:`ManagerView` from ``systemctl show -p ... --timestamp=unix`` output."""
    props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    active = props.get("ActiveState", "")
    running = active in ("active", "activating", "reloading", "deactivating")
    pid = _int(props.get("MainPID")) or None
    stamp = props.get("ExecMainStartTimestamp", "").lstrip("@")
    since = float(stamp) if stamp.replace(".", "", 1).isdigit() and running else None
    detail = ""
    if active == "failed":
        detail = (
            f"systemd gave up on it (result: {props.get('Result', '?')}, last exit status "
            f"{props.get('ExecMainStatus', '?')}); 'statsbot-worker service logs' shows why, "
            "'statsbot-worker service start' tries again."
        )
    elif active == "activating" and props.get("SubState") == "auto-restart":
        running = False
        detail = "it stopped unexpectedly and systemd restarts it in a few seconds."
    return ManagerView(installed, running, pid, since, _int(props.get("NRestarts")), detail)


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None
