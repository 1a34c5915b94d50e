"""``statsbot-worker`` as a console script, driven by a strict stand-in for today's server."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import stat
import sys
import time
from pathlib import Path

import pytest
from legacy_server import LegacyServer

from statsbot_nb.cli import main

SCRIPT = shutil.which("statsbot-worker") or ""


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["STATSBOT_HOME"] = str(home)
    env["HOME"] = str(home.parent)
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def _start(args: list[str], home: Path, stdin: bool = False) -> asyncio.subprocess.Process:
    assert SCRIPT, "the statsbot-worker console script is not installed (pip install -e .)"
    return await asyncio.create_subprocess_exec(
        SCRIPT,
        *args,
        env=_env(home),
        stdin=asyncio.subprocess.PIPE if stdin else None,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_console_script_serves_today_server(legacy: LegacyServer, home: Path):
    proc = await _start(["--token", legacy.token, "--ws-url", legacy.url, "-v"], home)
    try:
        await legacy.wait_worker(timeout=30)
        listed = await legacy.wait_result(await legacy.send_job("list_models"))
        assert listed == {"type": "result", "job_id": listed["job_id"], "success": True, "data": {"models": []}}
        unknown = await legacy.wait_result(await legacy.send_job("teleport", {"where": "moon"}))
        assert unknown["success"] is False and unknown["error"].startswith("Unknown action: teleport")
        assert legacy.violations == []
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 20)
    out, err = stdout.decode(), stderr.decode()
    assert proc.returncode == 0, err
    assert "[connected] Connected to" in out
    assert "ok     list_models" in out and "failed teleport" in out
    assert "Stopped." in out and "Traceback" not in out + err
    # each line once, -v included (the console log skips what the event lines show)
    assert out.count("Stopped.") == 1 and (out + err).count("Connecting to") == 1, out + err
    assert (out + err).count("Per-job limits") == 1
    log_text = (home / "logs" / "worker.log").read_text()
    assert stat.S_IMODE((home / "logs" / "worker.log").stat().st_mode) == 0o600  # paths and errors: private
    assert stat.S_IMODE((home / "logs").stat().st_mode) == 0o700
    for text in (out, err, log_text):
        assert legacy.token not in text, "the token must never be printed or logged"
    config = json.loads((home / "config.json").read_text())
    assert config["ws_url"] == legacy.url and "token" not in config


async def test_rejected_token_exits_nonzero_with_a_clear_message(legacy: LegacyServer, home: Path):
    started = time.monotonic()
    args = ["--token", "11111111-2222-3333-4444-555555555555", "--ws-url", legacy.url, "--remember"]
    proc = await _start(args, home)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 3
    config = json.loads((home / "config.json").read_text())  # a rejected token is not remembered, nor its URL
    assert "token" not in config and "ws_url" not in config and config["machine_id"]
    assert time.monotonic() - started < 15
    out = stdout.decode()
    assert "rejected the token" in out and "/connect" in out
    assert "11111111-2222" not in out + stderr.decode()
    assert len(legacy.auths) == 1


async def test_remember_stores_token_with_mode_0600(legacy: LegacyServer, home: Path):
    proc = await _start(["--token", legacy.token, "--ws-url", legacy.url, "--remember"], home)
    await legacy.wait_worker(timeout=30)
    proc.send_signal(signal.SIGINT)
    await asyncio.wait_for(proc.communicate(), 20)
    path = home / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["token"] == legacy.token
    # the next start needs no --token (URL and token remembered)
    proc = await _start([], home)
    await legacy.wait_for(lambda: len(legacy.auths) == 2, timeout=30)
    proc.send_signal(signal.SIGINT)
    await asyncio.wait_for(proc.communicate(), 20)
    assert legacy.auths[1]["token"] == legacy.token
    assert main(["--forget"], out=lambda s: None) == 0
    assert "token" not in json.loads(path.read_text())


async def test_a_url_that_never_connected_is_not_remembered(legacy: LegacyServer, home: Path):
    """A typo or a server that is down must not become the default of the next start."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"ws://127.0.0.1:{probe.getsockname()[1]}/ws"
    proc = await _start(["--token", legacy.token, "--ws-url", dead], home)
    await asyncio.sleep(3)  # it tries, fails, waits to retry
    proc.send_signal(signal.SIGINT)
    stdout, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0 and "[reconnecting]" in stdout.decode()
    assert "ws_url" not in json.loads((home / "config.json").read_text())
    proc = await _start(["--token", legacy.token, "--ws-url", legacy.url], home)  # this one connects
    await legacy.wait_worker(timeout=30)
    proc.send_signal(signal.SIGINT)
    await asyncio.wait_for(proc.communicate(), 20)
    assert json.loads((home / "config.json").read_text())["ws_url"] == legacy.url


def test_usage_errors(home: Path, monkeypatch: pytest.MonkeyPatch):
    lines: list[str] = []
    assert main([], out=lines.append) == 2
    assert "No token" in lines[-1]
    assert main(["--token", "t", "--ws-url", "http://x"], out=lines.append) == 2
    assert "not a WebSocket URL" in lines[-1]
    monkeypatch.setenv("STATSBOT_WS_URL", "nonsense")
    assert main(["--token", "t"], out=lines.append) == 2
    assert main(["--token", "t", "--ws-url", "ws://h:1/ws", "--max-jobs", "0"], out=lines.append) == 2
    assert main(["--token", "t", "--ws-url", "ws://h:1/ws", "--max-file-mb", "nan"], out=lines.append) == 2
    assert "--max-file-mb" in lines[-1]
    assert main(["--token", "t", "--ws-url", "ws://h:1/ws", "--dask-timeout", "0"], out=lines.append) == 2
    assert "--dask-timeout must be a positive number of seconds" in lines[-1]
    assert main(["--token", "t", "--ws-url", "ws://[::1/ws"], out=lines.append) == 2
    assert "malformed" in lines[-1]


def test_demo_runs(tmp_path: Path, home: Path):
    lines: list[str] = []
    assert main(["demo", "--dir", str(tmp_path / "demo")], out=lines.append) == 0
    text = "\n".join(lines)
    assert "Unknown action: make_coffee" in text and "Demo finished" in text
    assert "metrics: accuracy=" in text and "is outside the folders this worker may use" in text
    written = next(line.split(" to ", 1)[1] for line in lines if line.startswith("Predictions written to"))
    assert Path(written).is_file() and len(Path(written).read_text().splitlines()) == 21


def test_python_dash_m_entry_point(home: Path):
    import subprocess

    out = subprocess.run(
        [sys.executable, "-m", "statsbot_nb", "--version"], capture_output=True, text=True, env=_env(home), check=True
    )
    assert "statsbot_nb" in out.stdout


async def test_ask_at_the_terminal_allows_and_denies(legacy: LegacyServer, home: Path):
    proc = await _start(["--token", legacy.token, "--ws-url", legacy.url, "--ask"], home, stdin=True)
    try:
        await legacy.wait_worker(timeout=30)
        first = await legacy.send_job("list_models")
        await asyncio.sleep(0.5)
        assert first not in legacy.results, "nothing runs before the user allows it"
        proc.stdin.write(b"y\n")
        await proc.stdin.drain()
        assert (await legacy.wait_result(first, timeout=15))["success"] is True
        second = await legacy.send_job("list_models")
        proc.stdin.write(b"n\n")
        await proc.stdin.drain()
        denied = await legacy.wait_result(second, timeout=15)
        assert denied["success"] is False and "declined" in denied["error"]
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, _ = await asyncio.wait_for(proc.communicate(), 20)
    text = stdout.decode()
    assert "asks to run: List your saved models." in text and "Allowed." in text and "Denied." in text
