"""The login service as a launchd agent (macOS): ``~/Library/LaunchAgents/org.statsbot.worker.plist``.

``RunAtLoad`` starts it at login; ``KeepAlive`` with ``SuccessfulExit = false`` restarts it after a crash
(a non-zero exit or a signal such as ``kill -9``) but not after a clean exit, which is what the service does
on ``launchctl bootout`` (``stop``). launchd has no per-exit-code exception, which is one reason a rejected
token parks the service instead of exiting (see :mod:`statsbot_nb.service.runservice`); ``ThrottleInterval``
spaces restarts 10 s apart. The plist is written by :mod:`plistlib`, so every path is XML-escaped.
"""

from __future__ import annotations

import os
import plistlib
import re
from pathlib import Path

from .backend import Backend, ManagerView, run, said
from .spec import LAUNCHD_LABEL, ServiceSpec


def render_plist(spec: ServiceSpec) -> bytes:
    """The agent's property list for ``spec``."""
    agent = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": spec.argv,
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 10,
        "ProcessType": "Background",
        "WorkingDirectory": spec.home,
        "StandardOutPath": spec.stderr_log,
        "StandardErrorPath": spec.stderr_log,
    }
    return plistlib.dumps(agent, fmt=plistlib.FMT_XML, sort_keys=True)


class LaunchdBackend(Backend):
    """``launchctl`` in the user's GUI domain (``gui/<uid>``)."""

    kind = "launchd agent"

    @property
    def unit_path(self) -> Path:
        return Path.home() / "Library" / "LaunchAgents" / f"{LAUNCHD_LABEL}.plist"

    @property
    def _domain(self) -> str:
        return f"gui/{os.getuid()}"  # type: ignore[attr-defined,unused-ignore]

    def render(self, spec: ServiceSpec) -> bytes:
        return render_plist(spec)

    def install(self, spec: ServiceSpec, start: bool = True) -> None:
        Path(spec.stderr_log).parent.mkdir(parents=True, exist_ok=True)
        run(["launchctl", "bootout", f"{self._domain}/{LAUNCHD_LABEL}"], check=False)  # an older copy
        self.write_unit(spec)
        if start:
            self.start()

    def uninstall(self) -> None:
        run(["launchctl", "bootout", f"{self._domain}/{LAUNCHD_LABEL}"], check=False)
        self.remove_unit()

    def start(self) -> None:
        loaded = run(["launchctl", "list", LAUNCHD_LABEL], check=False).returncode == 0
        if loaded:
            run(["launchctl", "kickstart", f"{self._domain}/{LAUNCHD_LABEL}"])
        else:
            run(["launchctl", "bootstrap", self._domain, str(self.unit_path)])

    def stop(self) -> None:
        done = run(["launchctl", "bootout", f"{self._domain}/{LAUNCHD_LABEL}"], check=False)
        if done.returncode not in (0, 3, 113):  # 3 / 113: not loaded, already stopped
            run(["launchctl", "kill", "SIGTERM", f"{self._domain}/{LAUNCHD_LABEL}"])

    def query(self) -> ManagerView:
        installed = self.unit_path.exists()
        done = run(["launchctl", "list", LAUNCHD_LABEL], check=False)
        if done.returncode != 0:
            detail = "" if not installed else f"launchd has not loaded it ({said(done)})."
            return ManagerView(installed, False, detail=detail)
        return view_from_list(done.stdout, installed)


def view_from_list(text: str, installed: bool) -> ManagerView:
    """A :class:`ManagerView` from ``launchctl list LABEL`` (a dictionary with ``"PID"`` while it runs)."""
    pid = re.search(r'"PID"\s*=\s*(\d+);', text)
    status = re.search(r'"LastExitStatus"\s*=\s*(-?\d+);', text)
    detail = ""
    if not pid and status and status.group(1) != "0":
        detail = f"its last run ended with status {status.group(1)}."
    return ManagerView(installed, pid is not None, int(pid.group(1)) if pid else None, detail=detail)
