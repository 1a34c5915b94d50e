"""The login service for real: ``login`` through stdin and a terminal, the service parking on a rejected
token against a real :class:`JobServer`, and a clean stop. The round trip through a real ``systemd --user``
is in test_service_systemd.py.

Every command runs as a subprocess of the real CLI (``python -m statsbot_nb.cli``). The manager is made
unreachable for the tests that do not need it (an empty runtime folder, a bus address that does not exist),
so a developer's own systemd session is never touched.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import secrets
import select
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from servicetools import PY
from servicetools import cli as _cli
from servicetools import login as _login
from servicetools import service_env as _env
from servicetools import wait_state as _wait_state

from statsbot_nb.server import JobServer
from statsbot_nb.service.spec import current_spec
from statsbot_nb.service.store import read_state, request_stop
from statsbot_nb.service.systemd import SystemdBackend


def test_login_reads_the_token_from_stdin_and_stores_it_0600(home: Path, tmp_path: Path):
    env = _env(home)
    data = tmp_path / "data"
    data.mkdir()
    token = "tok-" + secrets.token_hex(16)
    done = _login(env, token, "--ws-url", "ws://127.0.0.1:9/ws", "--allow", str(data), "--privacy", "strict", umask=0)
    assert done.returncode == 0, done.stdout + done.stderr
    assert token not in done.stdout + done.stderr
    assert "strict" in done.stdout and "service install" in done.stdout
    path = home / "service" / "login.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # even with umask 0
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    stored = json.loads(path.read_text())
    assert stored["token"] == token
    assert stored["options"]["allow"] == [str(data)] and stored["options"]["ws_url"] == "ws://127.0.0.1:9/ws"
    # a fresh token keeps the options not given again
    token2 = "tok-" + secrets.token_hex(16)
    done = _login(env, token2)
    assert done.returncode == 0 and token2 not in done.stdout + done.stderr
    stored = json.loads(path.read_text())
    assert stored["token"] == token2 and stored["options"]["privacy"] == "strict"
    assert stored["options"]["allow"] == [str(data)]


@pytest.mark.parametrize(
    ("args", "stdin", "words"),
    [
        (["--token", "SECRET-ON-ARGV"], "", "never taken from the command line"),
        (["SECRET-ON-ARGV"], "", "never taken from the command line"),
        (["--ws-url", "http://127.0.0.1/ws"], "SECRET-ON-STDIN", "not a WebSocket URL"),
        (["--ws-url", "ws://example.org/ws"], "SECRET-ON-STDIN", "unencrypted"),
        (["--max-jobs", "0"], "SECRET-ON-STDIN", "at least 1"),
        ([], "", "No token was given"),
        ([], "two words", "does not look like a token"),
    ],
)
def test_login_refuses_with_a_sentence_and_stores_nothing(home: Path, args: list[str], stdin: str, words: str):
    done = _login(_env(home), stdin, *args)
    text = done.stdout + done.stderr
    assert done.returncode == 2, text
    assert words in text and "Traceback" not in text
    assert "SECRET" not in text and "two words" not in text
    assert not (home / "service" / "login.json").exists()


def test_login_prompt_does_not_echo_the_token(home: Path):
    token = "tok-" + secrets.token_hex(16)
    env = _env(home)
    pid, fd = pty.fork()
    if pid == 0:  # the child: the real CLI on a terminal
        os.execve(PY, [PY, "-m", "statsbot_nb.cli", "login", "--ws-url", "ws://127.0.0.1:9/ws"], env)
    seen = b""
    deadline = time.monotonic() + 60
    sent = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the terminal closed: the child exited
            break
        if not chunk:
            break
        seen += chunk
        if not sent and b"not shown" in seen:
            os.write(fd, token.encode() + b"\n")
            sent = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    text = seen.decode(errors="replace")
    assert sent, text
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "Stored the token" in text and token not in text
    assert json.loads((home / "service" / "login.json").read_text())["token"] == token


async def test_a_rejected_token_parks_the_service_until_a_new_login(reference: JobServer, home: Path):
    env = _env(home)
    os.environ["XDG_CONFIG_HOME"] = env["XDG_CONFIG_HOME"]  # the unit below goes to the test's config folder
    try:
        SystemdBackend(home).write_unit(current_spec(home))  # installed, with a manager that cannot be asked
    finally:
        del os.environ["XDG_CONFIG_HOME"]
    bad = "rejected-" + secrets.token_hex(8)
    await _cli(env, "login", "--ws-url", reference.url, stdin=bad)
    proc = await asyncio.create_subprocess_exec(
        PY, "-m", "statsbot_nb.cli", "run-service", "--home", str(home), env=env, stdout=-1, stderr=-1
    )
    try:
        started = time.monotonic()
        state = await _wait_state(home, lambda s: s.state == "parked", timeout=20)
        assert time.monotonic() - started < 20 and state.parked_reason == "rejected" and state.pid == proc.pid
        assert reference.rejected_auths == 1
        await asyncio.sleep(3)  # parked: no retry against the server, no exit (so no restart by a manager)
        assert reference.rejected_auths == 1 and proc.returncode is None
        status = await _cli(env, "service", "status")
        assert "the token was rejected: run statsbot-worker login" in status
        assert f"pid {proc.pid}" in status and f"as {PY}" in status
        good = reference.issue_token()
        await _cli(env, "login", stdin=good)  # the parked service picks it up by itself
        await reference.wait_for_worker(timeout=30)
        result = await asyncio.wait_for(reference.run_job("list_models", {}), 30)
        assert result.success
        assert (await _wait_state(home, lambda s: s.state == "connected")).pid == proc.pid
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0  # a clean stop: no manager restarts it
    assert read_state(home).state == "stopped"  # type: ignore[union-attr]
    status = await _cli(env, "service", "status")
    assert "is not running (it stopped cleanly" in status
    log_text = (home / "logs" / "service.log").read_text()
    assert "Parked: The token was rejected" in log_text and "ok     list_models" in log_text
    for text in (log_text, out.decode(), err.decode(), status, (home / "service" / "state.json").read_text()):
        assert bad not in text and good not in text


async def test_a_stop_request_ends_the_service_cleanly(home: Path):
    env = _env(home)  # no login: the service waits for one, and still stops at once when asked
    proc = await asyncio.create_subprocess_exec(
        PY, "-m", "statsbot_nb.cli", "run-service", "--home", str(home), env=env
    )
    try:
        state = await _wait_state(home, lambda s: s.state == "parked", timeout=20)
        assert state.parked_reason == "no-login"
        request_stop(home)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert read_state(home).state == "stopped"  # type: ignore[union-attr]


def test_run_service_refuses_unknown_arguments_with_the_no_restart_code(home: Path):
    done = subprocess.run(
        [PY, "-m", "statsbot_nb.cli", "run-service", "--token", "SECRET"],
        capture_output=True,
        text=True,
        env=_env(home),
    )
    assert done.returncode == 2 and "unexpected argument" in done.stderr and "SECRET" not in done.stderr


def _readline(proc: subprocess.Popen[str], timeout: float = 20) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "no line in time"
    return proc.stdout.readline()


def test_logs_shows_the_last_lines_and_follows_new_ones(home: Path):
    env = _env(home)
    logs = [PY, "-m", "statsbot_nb.cli", "service", "logs"]
    empty = subprocess.run(logs, capture_output=True, text=True, env=env, timeout=60)
    assert empty.returncode == 0 and "No service log yet" in empty.stdout
    log = home / "logs" / "service.log"
    log.parent.mkdir(parents=True)
    log.write_text("".join(f"line {i}\n" for i in range(10)))
    done = subprocess.run([*logs, "-n", "3"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0 and done.stdout == "line 7\nline 8\nline 9\n"
    proc = subprocess.Popen([*logs, "-f", "-n", "1"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert _readline(proc) == "line 9\n"
        with log.open("a") as fh:
            fh.write("line 10\n")
        assert _readline(proc) == "line 10\n"
        log.write_text("rotated 1\n")  # a new, shorter file (rotation) is read from its start
        assert _readline(proc) == "rotated 1\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the systemd backend is Linux's")
def test_install_without_a_reachable_manager_says_so_and_leaves_nothing(home: Path):
    env = _env(home)
    cmd = [PY, "-m", "statsbot_nb.cli", "service"]
    done = subprocess.run([*cmd, "install"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1 and done.stdout.startswith("Error: ") and "Traceback" not in done.stderr
    assert not (Path(env["XDG_CONFIG_HOME"]) / "systemd" / "user" / "statsbot-worker.service").exists()
    done = subprocess.run([*cmd, "stop"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1 and "not installed" in done.stdout
    done = subprocess.run([*cmd, "status"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0 and "not installed" in done.stdout and "no token is stored yet" in done.stdout


async def test_status_shows_what_a_hostile_server_said_inert(home: Path):
    """A server's close reason reaches state.json through the worker's state; ``status`` prints it as one
    inert line (no escape sequence, no forged line on the user's terminal)."""
    from websockets.asyncio.server import serve

    async def hostile(ws) -> None:  # type: ignore[no-untyped-def]
        await ws.recv()
        await ws.close(4000, "go\x1b[2J\nFORGED")

    env = _env(home)
    os.environ["XDG_CONFIG_HOME"] = env["XDG_CONFIG_HOME"]
    try:
        SystemdBackend(home).write_unit(current_spec(home))
    finally:
        del os.environ["XDG_CONFIG_HOME"]
    async with serve(hostile, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        await _cli(env, "login", "--ws-url", f"ws://127.0.0.1:{port}/ws", stdin="tok-" + secrets.token_hex(8))
        proc = await asyncio.create_subprocess_exec(
            PY, "-m", "statsbot_nb.cli", "run-service", "--home", str(home), env=env
        )
        try:
            await _wait_state(home, lambda s: "FORGED" in s.message, timeout=30)
            status = await _cli(env, "service", "status")
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 20)
    assert "go\\x1b[2J\\nFORGED" in status, status
    assert "\x1b" not in status and not any(line.startswith("FORGED") for line in status.splitlines()), status


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"allow": [1, None]}, "allow"),  # crashed the service (TypeError): exit 1, restarts, no sentence
        ({"privacy": ["strict"]}, "privacy"),  # was dropped silently: the service ran with the default level
        ({"allow": "/home"}, "allow"),  # was dropped silently: the folder was not allowed, nothing said why
    ],
)
async def test_a_damaged_option_in_login_json_parks_the_service_with_a_sentence(home: Path, options, words):
    folder = home / "service"
    folder.mkdir(parents=True)
    token = "tok-" + secrets.token_hex(8)
    login = {"token": token, "options": {"ws_url": "ws://127.0.0.1:9/ws", **options}}
    (folder / "login.json").write_text(json.dumps(login))
    proc = await asyncio.create_subprocess_exec(
        PY, "-m", "statsbot_nb.cli", "run-service", "--home", str(home), env=_env(home), stdout=-1, stderr=-1
    )
    try:
        state = await _wait_state(home, lambda s: s.state == "parked", timeout=20)
        assert state.parked_reason == "config" and proc.returncode is None
        assert words in state.message and "statsbot-worker login" in state.message
        assert token not in state.message
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "Traceback" not in (home / "logs" / "service.log").read_text()


async def test_the_service_log_is_private_even_when_it_existed_world_readable(home: Path):
    """service.log holds job file paths and error text (which can quote a table's values): 0600 in a 0700
    folder, whatever the umask, also when an older log was left readable by everyone."""
    logs = home / "logs"
    logs.mkdir(parents=True, mode=0o755)
    old = logs / "service.log"
    old.write_text("an older line\n")
    old.chmod(0o644)
    proc = await asyncio.create_subprocess_exec(
        PY, "-m", "statsbot_nb.cli", "run-service", "--home", str(home), env=_env(home), umask=0o022
    )
    try:
        await _wait_state(home, lambda s: s.state == "parked", timeout=20)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert stat.S_IMODE(logs.stat().st_mode) == 0o700
    assert stat.S_IMODE(old.stat().st_mode) == 0o600
    assert old.read_text().startswith("an older line\n") and "Parked" in old.read_text()


def test_login_refuses_bytes_that_are_not_text(home: Path):
    """A binary file piped by mistake (an encrypted token file) was stored as a token of escaped bytes."""
    done = subprocess.run(
        [PY, "-m", "statsbot_nb.cli", "login", "--ws-url", "ws://127.0.0.1:9/ws"],
        input=b"\xff\xfe\xfdSECRET\n",
        capture_output=True,
        env=_env(home),
        timeout=60,
    )
    text = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 2 and "does not look like a token" in text and "Traceback" not in text, text
    assert "SECRET" not in text and not (home / "service" / "login.json").exists()
