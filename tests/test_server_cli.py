"""``statsbot-server`` as a real process: stopping (Ctrl-C, Ctrl-D, SIGTERM, ended input, the background),
what it prints for workers and jobs, one-time tokens, and what it says about lines that are not jobs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import re
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from statsbot_nb.cli import main as worker_main
from statsbot_nb.errors import TokenRejectedError
from statsbot_nb.server.cli import TOKEN_HELP, build_parser
from statsbot_nb.server.records import USED_TOKEN
from statsbot_nb.worker import Worker

ROOT = Path(__file__).resolve().parent.parent
STOP_WITHIN = 5.0  # seconds from the signal (or Ctrl-D) to the exit; a clean stop takes well under one


class Served:
    """A ``python -m statsbot_nb.server.cli --port 0`` process; every line it prints is kept."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._seen = 0
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self.url = self.token = ""
        self.banner: list[str] = []

    @classmethod
    async def start(cls, stdin: int, *args: str, launcher: list[str] | None = None, **kwargs: object) -> Served:
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
        command = [sys.executable, "-m", "statsbot_nb.server.cli", "--port", "0", *args]
        proc = await asyncio.create_subprocess_exec(
            *(launcher or []),
            *command,
            stdin=stdin,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            **kwargs,  # type: ignore[arg-type]
        )
        served = cls(proc)
        line = await served.expect(r"^  STATSBOT_TOKEN=(\S+) statsbot-worker --ws-url (\S+)$", timeout=60)
        served.token, served.url = re.match(r"^  STATSBOT_TOKEN=(\S+) statsbot-worker --ws-url (\S+)$", line).groups()
        await served.expect(r"^Type jobs as JSON lines")
        served.banner = served.lines[: served._seen]
        return served

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    async def expect(self, pattern: str, timeout: float = 20.0) -> str:
        """The next line (after the last one matched) that matches ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(self._seen, len(self.lines)):
                if re.search(pattern, self.lines[i]):
                    self._seen = i + 1
                    return self.lines[i]
            if time.monotonic() > deadline or (self._reader.done() and self._seen >= len(self.lines)):
                text = "\n".join(self.lines)
                raise AssertionError(f"no line matching {pattern!r} in:\n{text}")
            await asyncio.sleep(0.02)

    async def stopped_after(self, action: Callable[[], None]) -> float:
        """Do ``action`` (a signal, a Ctrl-D); return the seconds until the process exited with code 0."""
        started = time.monotonic()
        action()
        await asyncio.wait_for(self.proc.wait(), STOP_WITHIN * 4)
        took = time.monotonic() - started
        await self._reader
        assert self.proc.returncode == 0, "\n".join(self.lines)
        assert self.lines[-1] == "Stopped.", self.lines[-3:]
        assert not any("Traceback" in line for line in self.lines), "\n".join(self.lines)
        return took

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


async def _authenticates(url: str, token: str) -> bool:
    async with connect(url, proxy=None) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token, "machine_id": "raw", "protocol": 2}))
        return json.loads(await asyncio.wait_for(ws.recv(), 10)).get("success") is True


# ---------------------------------------------------------------------------------------------- help


def test_help_is_plain_text_with_the_job_format_the_token_lifetime_and_how_to_stop(capsys: pytest.CaptureFixture):
    raw = build_parser().format_help()
    assert raw.startswith("usage: statsbot-server ")
    text = " ".join(raw.split())
    for needed in (
        '{"action": "list_models"}',
        '{"action": "train", "params": {"file_path":',
        '{"action": "file_info", "file_path":',  # the flat form
        "within --token-ttl seconds (default 300) of being printed",
        "A token connects one worker, once",
        "Ctrl-D stops it too when standard input is a terminal",
        "/dev/null",
    ):
        assert needed in text, needed
    for markup in ("``", ":class:", ":mod:", ":func:", ":meth:"):
        assert markup not in text
    with pytest.raises(SystemExit) as exited:
        worker_main(["serve", "--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage: statsbot-worker serve ")


def test_a_token_lifetime_that_is_not_positive_is_refused_with_a_sentence(capsys: pytest.CaptureFixture):
    assert worker_main(["serve", "--token-ttl", "0"]) == 2
    assert capsys.readouterr().out == "Error: --token-ttl must be a number of seconds above 0, not 0.\n"


def test_a_port_in_use_is_one_sentence(capsys: pytest.CaptureFixture):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert worker_main(["serve", "--port", str(port)]) == 1
    assert capsys.readouterr().out == (
        f"Cannot listen on 127.0.0.1:{port}: the port is in use (another server? --port 0 picks a free one).\n"
    )


# ---------------------------------------------------------------------------------------------- stopping


async def test_ctrl_c_stops_at_once_while_standard_input_stays_open():
    served = await Served.start(asyncio.subprocess.PIPE)  # nothing is ever typed and the pipe never ends
    try:
        assert "Ctrl-C or SIGTERM stops the server" in served.banner[-1]
        took = await served.stopped_after(lambda: served.proc.send_signal(signal.SIGINT))
        assert took < STOP_WITHIN
    finally:
        await served.kill()


@pytest.mark.parametrize("key", ["ctrl-d", "ctrl-c"])
async def test_ctrl_d_and_ctrl_c_at_a_terminal_stop_at_once(key: str):
    master, slave = pty.openpty()
    served = await Served.start(slave)
    os.close(slave)
    try:
        assert served.banner[-1].endswith("Ctrl-C or Ctrl-D stops the server.")
        assert "press Enter for a new one" in served.banner[-3]
        await asyncio.sleep(0.3)  # the reader is waiting in a read of the terminal
        if key == "ctrl-d":
            took = await served.stopped_after(lambda: os.write(master, b"\x04"))
            assert "Ctrl-D: stopping." in served.lines
        else:
            took = await served.stopped_after(lambda: served.proc.send_signal(signal.SIGINT))
        assert took < STOP_WITHIN
    finally:
        os.close(master)
        await served.kill()


async def test_ended_standard_input_keeps_serving_until_sigterm(make_worker: Callable[..., Worker]):
    """``</dev/null`` (a server started in the background) and a piped script of jobs: the end of input
    stops nothing; a job queued before the end runs when a worker connects."""
    with open(os.devnull, "rb") as devnull:
        served = await Served.start(devnull.fileno())
    try:
        assert served.banner[-1].endswith("(standard input is not a terminal: its end does not).")
        await served.expect(r"^Standard input ended \(no more jobs from it\); serving until Ctrl-C or SIGTERM\.$")
        await asyncio.sleep(1.0)
        assert served.proc.returncode is None
        assert await _authenticates(served.url, served.token)
        took = await served.stopped_after(lambda: served.proc.send_signal(signal.SIGTERM))
        assert took < STOP_WITHIN
    finally:
        await served.kill()

    served = await Served.start(asyncio.subprocess.PIPE)
    try:
        assert served.proc.stdin is not None
        served.proc.stdin.write(b'{"action": "list_models"}\n')
        served.proc.stdin.close()
        await served.expect(r"queued job_\w+ list_models \{\} \(no worker connected: it waits for one\)$")
        await served.expect(r"^Standard input ended")
        await asyncio.sleep(0.5)
        worker = make_worker(served.url, served.token)
        worker.start()
        await served.expect(r"job job_\w+ list_models: succeeded in \d+\.\d\d s$")
        assert served.proc.returncode is None
        await worker.stop()
        await served.stopped_after(lambda: served.proc.send_signal(signal.SIGINT))
    finally:
        await served.kill()


# Run as a session leader on the pty: make it the controlling terminal, then start the server in a process
# group of its own, which is then a background job of that terminal (as `statsbot-server &` in bash).
LAUNCHER = """
import fcntl, subprocess, sys, termios
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
child = subprocess.Popen(sys.argv[1:], process_group=0)
print(f"PID {child.pid}", flush=True)
sys.exit(child.wait())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and uses Linux job control")
async def test_in_the_background_of_a_terminal_it_keeps_serving_and_is_not_stopped_by_sigttin():
    master, slave = pty.openpty()
    launcher = [sys.executable, "-c", LAUNCHER]
    served = await Served.start(slave, launcher=launcher, start_new_session=True)
    os.close(slave)
    pid = 0
    try:
        pid = int(next(line for line in served.lines if line.startswith("PID ")).split()[1])
        for _ in range(15):  # 1.5 s: a read of the terminal from the background would have stopped it by now
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            assert state not in ("T", "t"), "the server was stopped (SIGTTIN) by reading the terminal"
            await asyncio.sleep(0.1)
        assert await _authenticates(served.url, served.token)
        os.kill(pid, signal.SIGTERM)
        await asyncio.wait_for(served.proc.wait(), STOP_WITHIN * 4)
        await served._reader
        assert served.proc.returncode == 0 and served.lines[-1] == "Stopped.", served.lines
    finally:
        if pid and served.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        os.close(master)
        await served.kill()


# ---------------------------------------------------------------------------------------------- a real worker


async def test_workers_jobs_and_tokens_as_printed(make_worker: Callable[..., Worker]):
    """A real worker joins, runs typed jobs (wrapped, flat, failing) and leaves, one line each; a second
    worker with the same token is refused with a sentence about this server; the token is printed only
    where it is handed out."""
    served = await Served.start(asyncio.subprocess.PIPE, "--token-ttl", "120")
    assert served.proc.stdin is not None

    def type_line(line: str) -> None:
        served.proc.stdin.write(line.encode() + b"\n")  # type: ignore[union-attr]

    try:
        assert re.fullmatch(
            r"Token for one worker, once, valid 120 s \(until \d\d:\d\d:\d\d\); an empty line on standard "
            r"input gives a new one:",
            served.banner[-3],
        )
        worker = make_worker(served.url, served.token)
        worker.start()
        await worker.wait_connected(timeout=20)
        await served.expect(r"^\d\d:\d\d:\d\d worker joined: machine test-machine, user 1, protocol 2 \(1 connected\)$")

        type_line('{"action": "list_models"}')
        await served.expect(r"^\d\d:\d\d:\d\d queued job_[0-9a-f]{12} list_models \{\}$")
        await served.expect(r"^\d\d:\d\d:\d\d job job_[0-9a-f]{12} list_models: succeeded in \d+\.\d\d s$")
        assert await served.expect(r"^  ") == '  {"models": []}'

        type_line('{"action": "sleep", "seconds": 0.4}')  # flat: "seconds" is a parameter
        queued = await served.expect(r"queued job_\w+ sleep")
        job_id = queued.split()[2]
        assert queued.endswith('sleep {"seconds": 0.4}')
        await served.expect(rf"^\d\d:\d\d:\d\d   {job_id} +\d+\.\d% step \d+/20$")
        done = await served.expect(rf"job {job_id} sleep: succeeded in (\d+\.\d\d) s$")
        assert float(done.rsplit(" ", 2)[1]) >= 0.4
        assert json.loads(await served.expect(r"^  "))["slept"] == 0.4

        type_line('{"action": "teleport", "params": {"where": "moon"}}')
        await served.expect(r"job job_\w+ teleport: failed in \d+\.\d\d s: Unknown action: teleport")

        sentences = {
            "{bad json": "Not a job: Not JSON (Expecting property name enclosed in double quotes at character 2): "
            'type one job per line as a JSON object, e.g. {"action": "list_models"}.',
            "[1, 2]": 'Not a job: A job is a JSON object, not a list: e.g. {"action": "list_models"}.',
            '{"action": "train", "params": {}, "file_path": "a.csv"}': 'Not a job: Unknown key(s) "file_path" '
            'beside "params": put every parameter inside "params", or leave "params" out and write them all '
            'next to "action".',
            '{"file_path": "a.csv"}': 'Not a job: A job needs an "action", e.g. {"action": "list_models"}.',
        }
        for line, sentence in sentences.items():
            type_line(line)
            assert await served.expect(r"^Not a job: ") == sentence
        type_line("# a comment is ignored")

        await worker.stop()
        await served.expect(
            r"^\d\d:\d\d:\d\d worker left: machine test-machine, user 1: the worker closed the connection "
            r"\(0 connected\)$"
        )

        second = make_worker(served.url, served.token, machine_id="second-machine")
        with pytest.raises(TokenRejectedError) as refused:  # ends by itself: a refused token is final
            await asyncio.wait_for(second.run(), 20)
        assert second.state == "rejected"
        assert f"({USED_TOKEN}. {TOKEN_HELP})" in str(refused.value)
        await served.expect(
            rf"^\d\d:\d\d:\d\d worker refused: machine second-machine: {re.escape(USED_TOKEN)}; an empty line "
            r"on standard input gives a new token\.$"
        )

        type_line("")  # a new token, with its lifetime
        await served.expect(r"^Token for one worker, once, valid 120 s \(until \d\d:\d\d:\d\d\)")
        fresh = (await served.expect(r"^  STATSBOT_TOKEN=")).split()[0].partition("=")[2]
        assert fresh != served.token and await _authenticates(served.url, fresh)
        await served.expect(r"worker joined: machine raw")

        await served.stopped_after(lambda: served.proc.send_signal(signal.SIGINT))
        for token in (served.token, fresh):
            shown = [line for line in served.lines if token in line]
            assert shown == [f"  STATSBOT_TOKEN={token} statsbot-worker --ws-url {served.url}"]
    finally:
        await served.kill()


async def test_a_hostile_worker_cannot_write_escapes_or_forge_lines_on_the_terminal():
    """Everything a worker chooses (its machine id, a close reason, a malformed frame) reaches the terminal
    as one inert line: no escape sequence, no forged line, on standard output or in a logged warning."""
    served = await Served.start(asyncio.subprocess.DEVNULL)
    evil = "evil\x1b[2J\nFORGED"
    try:
        async with connect(served.url, proxy=None) as ws:
            auth = {"type": "auth", "token": served.token, "machine_id": evil, "protocol": 2}
            await ws.send(json.dumps(auth))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["success"] is True
            await served.expect(r"worker joined: machine evil")
            await ws.send("{not json \x1b[31m")
            await ws.send(json.dumps({"type": "result", "job_id": "x\x1b]0;title\x07"}))
            await asyncio.sleep(0.5)
            await ws.close(4000, "bye\x1b[2J\nFORGED LINE")
        await served.expect(r"worker left: machine evil")
        await served.stopped_after(lambda: served.proc.send_signal(signal.SIGTERM))
    finally:
        await served.kill()
    text = "\n".join(served.lines)
    assert "\x1b" not in text and "\x07" not in text
    assert not any(line.startswith("FORGED") for line in served.lines), text
    assert "Malformed frame" in text  # the warnings are still shown, inert


async def test_a_huge_line_on_standard_input_is_dropped_with_a_sentence():
    """Binary input or a runaway pipe without newlines was buffered without bound; a line over the limit is
    dropped unread (memory stays bounded) and the next line is a job again."""
    from statsbot_nb.server.cli import MAX_LINE_BYTES, TOO_LONG

    served = await Served.start(asyncio.subprocess.PIPE)
    stdin = served.proc.stdin
    assert stdin is not None
    try:
        for _ in range(MAX_LINE_BYTES // 2**20 + 2):
            stdin.write(b"\xff" * 2**20)
            await stdin.drain()
        stdin.write(b"still the same line\n" + b'{"action": "list_models"}\n')
        await stdin.drain()
        assert await served.expect(r"^Not a job: ", timeout=60) == TOO_LONG
        await served.expect(r"queued job_\w+ list_models", timeout=30)
        await served.stopped_after(lambda: served.proc.send_signal(signal.SIGTERM))
    finally:
        await served.kill()
    assert not any("still the same line" in line for line in served.lines)
