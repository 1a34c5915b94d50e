"""Helpers for the login service's tests: an environment with no reachable manager, the CLI as a subprocess."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from statsbot_nb.service.store import ServiceState, read_state

PY = sys.executable


def service_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("STATSBOT_")}
    runtime = home.parent / "run-none"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env.update(
        STATSBOT_HOME=str(home),
        HOME=str(home.parent),
        XDG_CONFIG_HOME=str(home.parent / ".config"),
        XDG_RUNTIME_DIR=str(runtime),  # no manager here: systemctl --user cannot reach one
        DBUS_SESSION_BUS_ADDRESS="unix:path=" + str(runtime / "no-bus"),
        PYTHONUNBUFFERED="1",
    )
    return env


def login(env: dict[str, str], token: str, *args: str, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "statsbot_nb.cli", "login", *args],
        input=token + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        umask=umask,
    )


async def cli(
    env: dict[str, str], *args: str, stdin: str | None = None, prefix: tuple[str, ...] = (), python: str = PY
) -> str:
    """Run the CLI without blocking the loop (the JobServer lives on it); returns its output, asserts exit 0."""
    proc = await asyncio.create_subprocess_exec(
        *prefix,
        python,
        "-m",
        "statsbot_nb.cli",
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else b""), 90)
    assert proc.returncode == 0, out.decode() + err.decode()
    return out.decode() + err.decode()


async def wait_state(home: Path, test: Callable[[ServiceState], bool], timeout: float = 30) -> ServiceState:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_state(home)
        if state is not None and test(state):
            return state
        await asyncio.sleep(0.1)
    raise AssertionError(f"state not reached in {timeout} s; last: {read_state(home)}")
