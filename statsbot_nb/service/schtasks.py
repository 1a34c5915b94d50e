r"""The login service as a Task Scheduler task (Windows): ``\StatsBot Worker``, started at the user's logon.

The task runs ``pythonw.exe`` (no console window) with the service's arguments quoted by the Windows rules
(:func:`subprocess.list2cmdline`, which is how Python itself splits them), every text XML-escaped.
``RestartOnFailure`` (every minute, 5 times) restarts a failed run; ``ExecutionTimeLimit PT0S`` lets it
run for days. Task Scheduler sends no signal a windowless process can catch, so ``stop`` first asks the
service through its stop-request file (it exits 0: a clean stop) and ends the task only if it did not.
Task Scheduler expands ``%NAME%`` in a task's command: a path holding the name of a variable defined here
between two ``%`` is refused at install with a sentence (a lone ``%`` is kept as it is).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from xml.sax.saxutils import escape

from ..errors import ServiceError
from .backend import Backend, ManagerView, pid_alive, run, said
from .spec import DESCRIPTION, TASK_NAME, ServiceSpec
from .store import read_state, request_stop, service_dir


def _text(value: str) -> str:
    return escape(value, {'"': "&quot;"})


def render_task_xml(spec: ServiceSpec, user: str) -> str:
    """The task's XML for ``spec``, run as ``user`` (``DOMAIN\\name``) at that user's logon."""
    arguments = subprocess.list2cmdline(spec.argv[1:])
    return f"""<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Description>{_text(DESCRIPTION)}; the token is not here (read from the StatsBot home)</Description>
  </RegistrationInfo>
  <Triggers>
    <LogonTrigger>
      <Enabled>true</Enabled>
      <UserId>{_text(user)}</UserId>
    </LogonTrigger>
  </Triggers>
  <Principals>
    <Principal id="Author">
      <UserId>{_text(user)}</UserId>
      <LogonType>InteractiveToken</LogonType>
      <RunLevel>LeastPrivilege</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <AllowHardTerminate>true</AllowHardTerminate>
    <StartWhenAvailable>true</StartWhenAvailable>
    <RunOnlyIfNetworkAvailable>false</RunOnlyIfNetworkAvailable>
    <IdleSettings>
      <StopOnIdleEnd>false</StopOnIdleEnd>
      <RestartOnIdle>false</RestartOnIdle>
    </IdleSettings>
    <AllowStartOnDemand>true</AllowStartOnDemand>
    <Enabled>true</Enabled>
    <Hidden>false</Hidden>
    <RunOnlyIfIdle>false</RunOnlyIfIdle>
    <ExecutionTimeLimit>PT0S</ExecutionTimeLimit>
    <Priority>7</Priority>
    <RestartOnFailure>
      <Interval>PT1M</Interval>
      <Count>5</Count>
    </RestartOnFailure>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>{_text(spec.interpreter)}</Command>
      <Arguments>{_text(arguments)}</Arguments>
      <WorkingDirectory>{_text(spec.home)}</WorkingDirectory>
    </Exec>
  </Actions>
</Task>
"""


def check_expansion(spec: ServiceSpec, env: dict[str, str]) -> None:
    """Refuse paths that Task Scheduler would change by expanding a ``%NAME%`` defined in ``env``."""
    names = {name.upper() for name in env}
    for value in (spec.interpreter, spec.home):
        for match in re.finditer(r"%([^%]+)%", value):
            if match.group(1).upper() in names:
                raise ServiceError(
                    f"Task Scheduler would replace {match.group(0)} in {value!r} with the value of that "
                    "environment variable; use a folder whose name does not contain it."
                )


def current_user(env: dict[str, str] | None = None) -> str:
    """``DOMAIN\\name`` of the user installing the task."""
    env = dict(os.environ) if env is None else env
    name = env.get("USERNAME") or "user"
    domain = env.get("USERDOMAIN")
    return f"{domain}\\{name}" if domain else name


class TaskSchedulerBackend(Backend):  # pragma: no cover - exercised on Windows only (golden-tested render)
    """``schtasks.exe`` for the StatsBot worker task."""

    kind = "Task Scheduler task"

    @property
    def unit_path(self) -> Path:
        return service_dir(self.home) / "task.xml"  # the copy given to schtasks; the task lives in the scheduler

    def render(self, spec: ServiceSpec) -> bytes:
        return b"\xff\xfe" + render_task_xml(spec, current_user()).encode("utf-16-le")

    def install(self, spec: ServiceSpec, start: bool = True) -> None:
        check_expansion(spec, dict(os.environ))
        self.write_unit(spec)
        run(["schtasks", "/Create", "/TN", TASK_NAME, "/XML", str(self.unit_path), "/F"])
        if start:
            self.start()

    def uninstall(self) -> None:
        if run(["schtasks", "/Query", "/TN", TASK_NAME], check=False).returncode == 0:
            self.stop()
            run(["schtasks", "/Delete", "/TN", TASK_NAME, "/F"])
        self.remove_unit()

    def start(self) -> None:
        run(["schtasks", "/Run", "/TN", TASK_NAME])

    def stop(self) -> None:
        state = read_state(self.home)
        if state is not None and pid_alive(state.pid) and state.state != "stopped":
            request_stop(self.home)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and pid_alive(state.pid):
                time.sleep(0.5)
        run(["schtasks", "/End", "/TN", TASK_NAME], check=False)

    def query(self) -> ManagerView:
        done = run(["schtasks", "/Query", "/TN", TASK_NAME, "/FO", "CSV", "/NH"], check=False)
        if done.returncode != 0:
            return ManagerView(False, False, detail="" if "cannot find" in said(done).lower() else said(done))
        state = read_state(self.home)
        alive = state is not None and state.state != "stopped" and pid_alive(state.pid)
        return ManagerView(True, alive, state.pid if alive and state else None)
