"""A real ``systemd --user`` round trip: install -> kill -9 -> restarted -> stop (not restarted) -> uninstall.

Machines without systemd as PID 1 (containers like this project's) refuse to start a user manager ("not
booted with systemd": it looks for ``/run/systemd/system``). As root, the test gives a real
``/usr/lib/systemd/systemd --user`` that folder in a private mount namespace (``unshare -m``; a tmpfs over
``/run/systemd`` seen by that manager only), with its own runtime and config folders, and runs every
``statsbot-worker`` command inside that namespace (``nsenter -m``). The manager, its restart logic and
its command-line parsing are the real ones; nothing of the machine's own systemd (if any) is touched.
Where this cannot be done (not Linux, not root, no systemd, no unshare) the test is skipped, saying why.

The CLI runs under an interpreter reached through a folder named ``My Tools 100% $HOME`` so the unit's
ExecStart escaping is proved by systemd actually starting it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from servicetools import cli, service_env, wait_state

from statsbot_nb.server import JobServer
from statsbot_nb.service.backend import pid_alive
from statsbot_nb.service.store import read_state

SYSTEMD = "/usr/lib/systemd/systemd"
UNIT = "statsbot-worker.service"
CGROUPS = Path("/sys/fs/cgroup")


def _hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy (the unified root alone on a pure cgroup v2 machine)."""
    if (CGROUPS / "cgroup.controllers").exists():
        return [CGROUPS]
    return sorted(p for p in CGROUPS.iterdir() if (p / "cgroup.procs").exists())


def _remove_cgroup(name: str) -> None:
    """Remove the manager's cgroup in every hierarchy (anything left in it goes back to the root first)."""
    for root in _hierarchies():
        top = root / name
        if not top.is_dir():
            continue
        for folder in [*sorted((d for d in top.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts)), top]:
            with contextlib.suppress(OSError):
                for pid in (folder / "cgroup.procs").read_text().split():
                    (root / "cgroup.procs").write_text(pid)
            with contextlib.suppress(OSError):
                folder.rmdir()


def _why_not() -> str | None:
    if not sys.platform.startswith("linux"):
        return "systemd user units exist on Linux only"
    if not Path(SYSTEMD).exists() or not shutil.which("systemctl"):
        return f"systemd is not installed ({SYSTEMD}, systemctl)"
    if os.geteuid() != 0:
        return "starting a private systemd --user manager needs root here (unshare -m, mount)"
    if not shutil.which("unshare") or not shutil.which("nsenter"):
        return "unshare/nsenter (util-linux) are not installed"
    if not (os.environ.get("CI") or os.environ.get("STATSBOT_SYSTEMD_TEST")):
        # as root it mounts in a private namespace and makes cgroups: not something to do on a developer's
        # machine unasked (an early version moved every process into a capped cgroup)
        return "it starts a private systemd --user as root (set STATSBOT_SYSTEMD_TEST=1; CI runs it)"
    return None


@dataclass
class Manager:
    """A private ``systemd --user`` and the environment to reach it (inside its mount namespace)."""

    pid: int
    env: dict[str, str]
    prefix: tuple[str, ...]

    async def ctl(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            *self.prefix, "systemctl", "--user", *args, env=self.env, stdout=-1, stderr=-1
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        return out.decode() + err.decode()

    async def show(self) -> dict[str, str]:
        text = await self.ctl("show", UNIT, "-p", "ActiveState,SubState,MainPID,NRestarts,ExecMainStatus,ExecStart")
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@pytest.fixture
async def manager(home: Path) -> AsyncIterator[Manager]:
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    runtime = Path(tempfile.mkdtemp(prefix="sdu", dir="/tmp"))  # short: a socket path has at most 107 bytes
    runtime.chmod(0o700)
    env = service_env(home)
    env["XDG_RUNTIME_DIR"] = str(runtime)
    env.pop("DBUS_SESSION_BUS_ADDRESS")
    # The manager gets a cgroup of its own in every hierarchy: started in the root cgroup, a user manager
    # run as root moves every process of the machine into its init.scope (and caps their number).
    cgroup = f"statsbot-test-{secrets.token_hex(4)}"
    move = "; ".join(
        f'mkdir -p "{root / cgroup}" && echo $$ > "{root / cgroup}/cgroup.procs" 2>/dev/null' for root in _hierarchies()
    )
    required = " && ".join(
        f'grep -qx $$ "{root / cgroup}/cgroup.procs"'
        for root in _hierarchies()
        if root.name in ("systemd", "unified", "cgroup")
    )
    before = Path("/proc/1/cgroup").read_text()
    script = (
        f"{move}; {required or 'true'} || exit 96; "
        "[ -d /run/systemd ] || mkdir -p /run/systemd; "
        "mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/system || exit 97; "
        f"exec {SYSTEMD} --user"
    )
    log = open(home.parent / "manager.log", "wb")
    proc = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    prefix = ("nsenter", "-t", str(proc.pid), "-m", "--")
    mgr = Manager(proc.pid, env, prefix)
    try:
        deadline = time.monotonic() + 20
        state = ""
        while time.monotonic() < deadline and proc.poll() is None:
            state = (await mgr.ctl("is-system-running")).strip()
            if state in ("running", "degraded"):
                break
            await asyncio.sleep(0.2)
        if proc.poll() is not None or state not in ("running", "degraded"):
            pytest.skip(f"a private systemd --user would not start here (exit {proc.poll()}, state {state!r})")
        if os.environ.get("PYTHONPATH"):  # a source checkout (not an install): the unit's Python needs it too
            await mgr.ctl("set-environment", f"PYTHONPATH={os.environ['PYTHONPATH']}")
        yield mgr
    finally:
        with contextlib.suppress(Exception):
            await mgr.ctl("exit")
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()
        state_now = read_state(home)
        if state_now is not None and pid_alive(state_now.pid) and state_now.state != "stopped":
            os.kill(state_now.pid, signal.SIGKILL)  # a service the manager left behind (started by this test)
        shutil.rmtree(runtime, ignore_errors=True)
        _remove_cgroup(cgroup)
    assert Path("/proc/1/cgroup").read_text() == before, "the private manager changed the machine's cgroups"


async def _until(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"{what} did not happen in {timeout} s (last: {last})")


async def test_systemd_user_round_trip(manager: Manager, reference: JobServer, home: Path, tmp_path: Path):
    odd = tmp_path / "My Tools 100% $HOME"
    odd.mkdir()
    python = str(odd / "python3")
    if sys.prefix != sys.base_prefix:  # a venv python reached via another folder loses the venv
        python = sys.executable
    else:
        os.symlink(sys.executable, python)
    token = reference.issue_token(ttl=3600)
    await cli(manager.env, "login", "--ws-url", reference.url, stdin=token, prefix=manager.prefix, python=python)
    out = await cli(manager.env, "service", "install", prefix=manager.prefix, python=python)
    assert "Installed the systemd user unit" in out, out
    unit = Path(manager.env["XDG_CONFIG_HOME"]) / "systemd" / "user" / UNIT
    assert token not in unit.read_text() and "Environment" not in unit.read_text()

    first = await wait_state(home, lambda s: s.state == "connected", timeout=60)
    await reference.wait_for_worker(timeout=30)
    shown = await manager.show()
    assert shown["ActiveState"] == "active" and int(shown["MainPID"]) == first.pid
    assert f"path={python} ;" in shown["ExecStart"] and f"--home {home} ;" in shown["ExecStart"]
    assert first.interpreter == python  # systemd started the interpreter through the odd folder's name
    status = await cli(manager.env, "service", "status", prefix=manager.prefix, python=python)
    assert f"runs (pid {first.pid}, since" in status and f", as {python})" in status and "Now: Connected" in status

    os.kill(first.pid, signal.SIGKILL)  # a crash: systemd must start it again (RestartSec=5)

    async def restarted() -> int | None:
        shown = await manager.show()
        pid = int(shown.get("MainPID", "0") or 0)
        return pid if shown.get("ActiveState") == "active" and pid not in (0, first.pid) else None

    second_pid = await _until(restarted, 40, "a restart after kill -9")
    second = await wait_state(home, lambda s: s.pid == second_pid, timeout=30)
    assert second.started > first.started
    assert (await manager.show())["NRestarts"] == "1"

    out = await cli(manager.env, "service", "stop", prefix=manager.prefix, python=python)
    assert "not running (it stopped cleanly" in out, out
    stopped = await manager.show()
    assert stopped["ActiveState"] == "inactive" and stopped["ExecMainStatus"] == "0"
    assert read_state(home).state == "stopped"  # type: ignore[union-attr]
    await asyncio.sleep(8)  # longer than RestartSec: a clean stop is not restarted
    later = await manager.show()
    assert later["ActiveState"] == "inactive" and later["NRestarts"] == "1" and not pid_alive(second_pid)

    out = await cli(manager.env, "service", "uninstall", prefix=manager.prefix, python=python)
    assert "Removed the worker service" in out and not unit.exists()
    gone = await manager.ctl("show", UNIT, "-p", "LoadState")
    assert "LoadState=not-found" in gone
    status = await cli(manager.env, "service", "status", prefix=manager.prefix, python=python)
    assert "not installed" in status
