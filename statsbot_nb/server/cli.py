"""``statsbot-server`` (also ``statsbot-worker serve``): run the reference server in a terminal.

It prints the URL and a one-time token for a worker, reads jobs from standard input (one JSON object a line,
see :mod:`statsbot_nb.server.jobline`), and prints one line for each worker joining, leaving or refused and
for each job's outcome. Handy for trying a worker by hand without the Telegram bot.

Standard input is read by a daemon thread with ``os.read`` (never the loop's executor, whose shutdown would
wait for a blocked read: Ctrl-C then waited for Enter). Ctrl-C and SIGTERM stop the server at once; Ctrl-D
stops it when standard input is a terminal. The end of a file, a pipe or ``/dev/null`` only means no more
jobs: a server started in the background or fed a script of jobs keeps serving until a signal stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

from ..inert import inert
from .core import JobServer
from .jobline import EXAMPLE, JobLineError, parse_job_line
from .records import JobHandle, ServerEvent

PROG = "statsbot-server"
DATA_CHARS = 4000  # a result's data is shown up to this many characters
MAX_LINE_BYTES = 16 * 2**20  # a longer line of standard input is dropped unread (binary input, a runaway pipe)
TOO_LONG = f"Not a job: a line longer than {MAX_LINE_BYTES // 2**20} MB was dropped; type one job per line."
TOKEN_HELP = "For a new token, press Enter in the terminal where statsbot-server runs"

DESCRIPTION = """\
Run the StatsBot reference job server in a terminal, to try a worker without the Telegram
bot. It prints a token for one worker and the command that starts it, takes jobs you type,
and prints each worker that connects or leaves and each job's outcome (id, action, success
or the error, duration)."""

EPILOG = """\
jobs (standard input, one JSON object a line):
  {"action": "list_models"}
  {"action": "train", "params": {"file_path": "/data/wine.csv", "target_column": "cultivar",
      "feature_columns": ["alcohol", "hue"], "model_type": "random_forest",
      "task_type": "classification"}}                                  (typed on one line)
  {"action": "file_info", "file_path": "/data/wine.csv"}
      flat: the keys beside "action" are its params ("params" and flat keys together: refused)
  Actions the bot sends: list_models, train, predict, file_info, load_data, save_file,
  delete_model, set_model_name, join (their parameters: README, "What the jobs do"); any other
  action goes to the worker as is. A line that is not a job gets a sentence saying why; a line
  starting with # is ignored.

tokens:
  A token connects one worker, once, within --token-ttl seconds (default 300) of being
  printed. A worker of this package reconnects by itself with the session token the server
  gave it; any other worker needs a new token. An empty line (Enter) prints a new token.

stopping:
  Ctrl-C or SIGTERM stops the server at once. Ctrl-D stops it too when standard input is a
  terminal. When standard input is a file, a pipe or /dev/null (as for a server started in the
  background), its end only means no more jobs: the server keeps serving until Ctrl-C or
  SIGTERM. In the background of an interactive shell it keeps serving ('fg' to type jobs).

example:
  statsbot-server --port 8765
  STATSBOT_TOKEN=<the printed token> statsbot-worker --ws-url ws://127.0.0.1:8765/ws
      (in another terminal: the worker; then type {"action": "list_models"} here)"""


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The command-line options; ``--help`` is plain text with the job format and the token rules."""
    parser = argparse.ArgumentParser(
        prog=prog, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765; 0 = any free port)")
    parser.add_argument(
        "--token-ttl",
        type=float,
        default=300.0,
        metavar="S",
        help="seconds a printed token stays valid for its first use (default 300)",
    )
    return parser


def _say(line: str) -> None:
    with contextlib.suppress(BrokenPipeError, ValueError):  # stdout gone: nothing to tell anyone
        print(line, flush=True)


def stdin_fd() -> int | None:
    """The file descriptor of standard input, or None when there is none (closed, or no console)."""
    try:
        return sys.stdin.fileno() if sys.stdin is not None else None
    except (OSError, ValueError):
        return None


def _now() -> str:
    return time.strftime("%H:%M:%S")


class StdinLines:
    """Lines of standard input, handed to ``on_line`` on the loop (``None`` at the end of input).

    A daemon thread does the reading, so a blocked read never delays stopping. A terminal read from the
    background (job control) fails with EIO once SIGTTIN is ignored; the thread then waits for the
    foreground instead of stopping the whole process.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.on_line: Callable[[str | None], None] = lambda line: None
        self.fd = stdin_fd()
        self.interactive = self.fd is not None and os.isatty(self.fd)

    def start(self, on_line: Callable[[str | None], None]) -> None:
        """Start reading (a missing standard input is at its end at once)."""
        self.on_line = on_line
        threading.Thread(target=self._run, name="statsbot-server-stdin", daemon=True).start()

    def _post(self, line: str | None) -> bool:
        try:
            self.loop.call_soon_threadsafe(self.on_line, line)
            return True
        except RuntimeError:  # the loop is closed: the server stopped
            return False

    def _run(self) -> None:
        pending, dropping = b"", False
        while True:
            try:
                chunk = os.read(self.fd, 65536) if self.fd is not None else b""
            except InterruptedError:
                continue
            except OSError as exc:
                if self.interactive and exc.errno == errno.EIO:
                    time.sleep(0.5)  # in the background: read again once brought to the foreground
                    continue
                chunk = b""
            if not chunk:
                if pending and not self.interactive:  # at a terminal, Enter was never pressed on it
                    self._post(pending.decode("utf-8", "replace"))
                self._post(None)
                return
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if dropping and lines:  # the end of the dropped line
                lines, dropping = lines[1:], False
            for line in lines:
                if not self._post(line.decode("utf-8", "replace")):
                    return
            if len(pending) > MAX_LINE_BYTES or dropping:  # memory stays bounded, whatever comes in
                if not dropping:
                    self._post(TOO_LONG)
                pending, dropping = b"", True


def _token_lines(server: JobServer, interactive: bool) -> list[str]:
    token = server.issue_token()
    until = time.strftime("%H:%M:%S", time.localtime(time.time() + server.token_ttl))
    again = "press Enter for" if interactive else "an empty line on standard input gives"
    head = f"Token for one worker, once, valid {server.token_ttl:g} s (until {until}); {again} a new one:"
    if os.name == "nt":
        return [head, f"  set STATSBOT_TOKEN={token}", f"  statsbot-worker --ws-url {server.url}"]
    return [head, f"  STATSBOT_TOKEN={token} statsbot-worker --ws-url {server.url}"]


def _worker_line(event: ServerEvent, connected: int, interactive: bool) -> str:
    info = event.worker
    who = f"machine {inert(event.machine_id, 80)}"
    if info is not None:
        who += f", user {info.user_id}"
    if event.kind == "joined":
        protocol = info.protocol if info is not None else "?"
        return f"{_now()} worker joined: {who}, protocol {protocol} ({connected} connected)"
    if event.kind == "refused":
        again = "press Enter for a new token" if interactive else "an empty line on standard input gives a new token"
        return f"{_now()} worker refused: {who}: {inert(event.detail)}; {again}."
    requeued = f"; re-queued {', '.join(event.requeued)}" if event.requeued else ""
    return f"{_now()} worker left: {who}: {inert(event.detail)}{requeued} ({connected} connected)"


def outcome_lines(event: ServerEvent) -> list[str]:
    """A stored result as one line (id, action, outcome, duration), then its data on a second line."""
    handle, result = event.job, event.result
    if handle is None or result is None:
        return []
    took = f" in {handle.duration:.2f} s" if handle.duration is not None else ""
    head = f"{_now()} job {handle.job_id} {inert(handle.action, 80)}"
    if result.success:
        data = json.dumps(result.data, ensure_ascii=False, default=str)
        more = f" ({len(data)} characters in all)" if len(data) > DATA_CHARS else ""
        return [f"{head}: succeeded{took}", f"  {inert(data, DATA_CHARS)}{more}"]
    verdict = "cancelled" if result.cancelled else "failed"
    return [f"{head}: {verdict}{took}: {inert(result.error or 'no reason given', 1000)}"]


class Console:
    """The terminal front end: reads job lines, prints tokens, workers, progress and outcomes."""

    def __init__(self, server: JobServer, interactive: bool, stop: asyncio.Event) -> None:
        self.server, self.interactive, self.stop = server, interactive, stop
        server.watch(self.on_event)

    def on_event(self, event: ServerEvent) -> None:
        """Print a worker joining, leaving or refused, or a job's outcome."""
        if event.kind == "result":
            for line in outcome_lines(event):
                _say(line)
        else:
            _say(_worker_line(event, len(self.server.workers), self.interactive))

    def on_progress(self, handle: JobHandle, progress: float, message: str) -> None:
        """One line per progress report of a job typed here."""
        _say(f"{_now()}   {handle.job_id} {progress:5.1f}% {inert(message)}")

    def on_line(self, line: str | None) -> None:
        """A line of standard input: a job, an empty line (a new token), a comment, or the end of input."""
        if line is None:
            if self.interactive:
                _say("Ctrl-D: stopping.")
                self.stop.set()
            else:
                _say("Standard input ended (no more jobs from it); serving until Ctrl-C or SIGTERM.")
            return
        line = line.strip()
        if not line:
            for text in _token_lines(self.server, self.interactive):
                _say(text)
            return
        if line.startswith("#"):
            return
        if line == TOO_LONG:  # said by the reader, which dropped the line
            _say(line)
            return
        try:
            job = parse_job_line(line)
        except JobLineError as exc:
            _say(f"Not a job: {exc}")
            return
        handle = self.server.submit(job.action, job.params, on_progress=self.on_progress)
        params = inert(json.dumps(job.params, ensure_ascii=False), 300)
        waits = "" if self.server.workers else " (no worker connected: it waits for one)"
        _say(f"{_now()} queued {handle.job_id} {inert(job.action, 80)} {params}{waits}")


def _banner(server: JobServer, interactive: bool) -> list[str]:
    stop = (
        "Ctrl-C or Ctrl-D stops the server."
        if interactive
        else "Ctrl-C or SIGTERM stops the server (standard input is not a terminal: its end does not)."
    )
    return [
        f"StatsBot reference server on {server.url}",
        *_token_lines(server, interactive),
        f"Type jobs as JSON lines, e.g. {EXAMPLE} (--help shows the format). {stop}",
    ]


def _on_signals(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    """Ctrl-C and SIGTERM set ``stop``; a second one exits at once."""

    def on_signal() -> None:
        if stop.is_set():
            _say("Stopping now.")
            os._exit(0)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # Windows: KeyboardInterrupt
            loop.add_signal_handler(sig, on_signal)


async def _serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    _on_signals(loop, stop)
    server = JobServer(args.host, args.port, token_ttl=args.token_ttl, token_help=TOKEN_HELP)
    await server.start()
    try:
        stdin = StdinLines(loop)
        console = Console(server, stdin.interactive, stop)
        for line in _banner(server, stdin.interactive):
            _say(line)
        stdin.start(console.on_line)
        await stop.wait()
    finally:
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            await asyncio.wait_for(server.close(), 3.0)  # a worker that never answers the close is not waited for


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Run the reference server until Ctrl-C, SIGTERM or Ctrl-D at a terminal; returns the exit code."""
    args = build_parser(prog).parse_args(argv)
    if not args.token_ttl > 0:
        _say(f"Error: --token-ttl must be a number of seconds above 0, not {args.token_ttl:g}.")
        return 2
    ttin = getattr(signal, "SIGTTIN", None)
    previous = None
    fd = stdin_fd()
    if ttin is not None and fd is not None and os.isatty(fd):
        with contextlib.suppress(ValueError, OSError):  # not the main thread: leave job control alone
            previous = signal.signal(ttin, signal.SIG_IGN)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:  # where signal handlers cannot be installed (Windows), or during start-up
        pass
    except OSError as exc:
        why = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            why = "the port is in use (another server? --port 0 picks a free one)"
        _say(f"Cannot listen on {args.host}:{args.port}: {why}.")
        return 1
    finally:
        if previous is not None:
            signal.signal(ttin, previous)  # type: ignore[arg-type]
    _say("Stopped.")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
