"""``statsbot-worker login`` and ``statsbot-worker service install|uninstall|status|logs|start|stop``.

The token is read from a prompt that does not echo it (:func:`getpass.getpass`), or from the first line of
standard input when that is not a terminal (``pass show statsbot | statsbot-worker login``); never from the
command line, where every user of the machine could read it in the process list. It is never printed.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from ..config import statsbot_home
from ..errors import ConfigError, StatsbotError
from ..inert import inert
from ..privacy import LEVELS
from . import backend_for, install, start, status, stop, uninstall
from .login import describe_options, store_login
from .status import ServiceStatus
from .store import log_path, tail

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
Out = Callable[[str], None]


def login_parser() -> argparse.ArgumentParser:
    """Options of ``statsbot-worker login`` (what the service runs with; no token option on purpose)."""
    parser = argparse.ArgumentParser(
        prog="statsbot-worker login",
        description="Store the token from /connect for the login service (mode 0600, never printed). The token "
        "is asked at a prompt that does not show it, or read from standard input when that is not a terminal. "
        "Options given replace the stored ones; options left out keep their stored value.",
    )
    parser.add_argument(
        "--ws-url", help="server URL (default: $STATSBOT_WS_URL, config.json, or ws://localhost:8765/ws)"
    )
    parser.add_argument("--allow", action="append", metavar="DIR", help="also allow jobs to use DIR (repeatable)")
    parser.add_argument("--max-jobs", type=int, help="heavy jobs run at once (default 2)")
    parser.add_argument("--privacy", choices=LEVELS, help="what results may carry to the server (default standard)")
    parser.add_argument("--max-file-mb", type=float, help="largest file a job may read, in MB (default 1000)")
    parser.add_argument(
        "--max-job-memory", metavar="SIZE", help="stop a job whose memory passes SIZE (4G, 512M; 0 = off)"
    )
    parser.add_argument("--max-job-seconds", type=float, metavar="S", help="stop a job after S seconds (0 = off)")
    parser.add_argument("--machine-id", help="name this machine shows in the bot (default: host name)")
    parser.add_argument("--insecure-ws", action="store_true", help="allow plain ws:// to another machine (UNENCRYPTED)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug lines and job progress in the service log")
    return parser


def read_token(stdin: TextIO, prompt: Callable[[str], str] = getpass.getpass) -> str:
    """The token from a no-echo prompt at a terminal, else the first line of ``stdin``."""
    if stdin.isatty():
        return prompt("Token from /connect in the StatsBot bot (not shown as you type): ")
    return stdin.readline(8192)


def login_main(argv: list[str], out: Out, stdin: TextIO | None = None) -> int:
    """``statsbot-worker login``."""
    args, extra = login_parser().parse_known_args(argv)
    if extra:  # never echoed: it may be the token
        out(
            f"Error: {len(extra)} unexpected argument(s) (not shown). The token is never taken from the command "
            "line, where other users could read it: run 'statsbot-worker login' and paste it at the prompt, or "
            "pipe it on standard input."
        )
        return EXIT_USAGE
    home = statsbot_home()
    try:
        token = read_token(stdin or sys.stdin)
    except (EOFError, KeyboardInterrupt):
        out("No token was given; nothing changed.")
        return EXIT_USAGE
    try:
        path, options = store_login(
            token,
            home=home,
            ws_url=args.ws_url,
            allow=args.allow,
            max_jobs=args.max_jobs,
            privacy=args.privacy,
            max_file_mb=args.max_file_mb,
            max_job_memory=args.max_job_memory,
            max_job_seconds=args.max_job_seconds,
            machine_id=args.machine_id,
            insecure_ws=args.insecure_ws,
            verbose=args.verbose,
        )
    except ConfigError as exc:
        out(f"Error: {exc} Nothing was stored.")
        return EXIT_USAGE
    out(f"Stored the token in {path} (only you can read it; it is never printed).")
    for line in describe_options(options):
        out(f"  {line}")
    try:
        current = status(lines=0, home=home)
    except StatsbotError:  # the manager cannot be asked: the login is stored all the same
        return EXIT_OK
    if current.installed and current.running:
        out("The running service picks up this login within a few seconds (running jobs are cancelled).")
    elif current.installed:
        out("Start the service: statsbot-worker service start")
    elif backend_for(home) is not None:
        out("Next: statsbot-worker service install  (keeps the worker running after you log in)")
    return EXIT_OK


def service_parser() -> argparse.ArgumentParser:
    """``statsbot-worker service`` and its commands."""
    parser = argparse.ArgumentParser(
        prog="statsbot-worker service",
        description="Keep the worker running as a login service (systemd user unit on Linux, launchd agent on "
        "macOS, Task Scheduler task on Windows). Store the token first with 'statsbot-worker login'.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    install_cmd = commands.add_parser("install", help="install for this Python, start at login, start now")
    install_cmd.add_argument("--no-start", action="store_true", help="install only; it starts at the next login")
    remove_cmd = commands.add_parser("uninstall", help="stop and remove the service")
    remove_cmd.add_argument("--forget", action="store_true", help="also delete the stored token")
    status_cmd = commands.add_parser("status", help="does it run, since when, as which Python, its last lines")
    status_cmd.add_argument("-n", "--lines", type=int, default=10, help="log lines to show (default 10)")
    logs_cmd = commands.add_parser("logs", help="the service's log")
    logs_cmd.add_argument("-n", "--lines", type=int, default=50, help="lines to show (default 50)")
    logs_cmd.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C to stop)")
    commands.add_parser("start", help="start the installed service now")
    commands.add_parser("stop", help="stop it cleanly (not restarted; it starts again at the next login)")
    return parser


def service_main(argv: list[str], out: Out) -> int:
    """``statsbot-worker service COMMAND``."""
    args = service_parser().parse_args(argv)
    home = statsbot_home()
    try:
        if args.command == "logs":
            return _logs(log_path(home), args.lines, args.follow, out)
        if args.command == "status":
            current = status(lines=max(0, args.lines), home=home)
        elif args.command == "install":
            current = install(start=not args.no_start, home=home)
            out(f"Installed the {current.kind} {current.unit_path}: it starts at login and restarts after a crash.")
            if not args.no_start:
                current = _settle(home)
        elif args.command == "uninstall":
            current = uninstall(forget=args.forget, home=home)
            out("Removed the worker service." + (" The stored token was deleted." if args.forget else ""))
        elif args.command == "start":
            start(home=home)
            current = _settle(home)
        else:
            current = stop(home=home)
    except StatsbotError as exc:
        out(f"Error: {exc}")
        return EXIT_ERROR
    out(current.describe())
    if args.command == "status" and current.last_lines:
        out(f"Last lines of {current.log_path}:")
        for line in current.last_lines:
            out(f"  {inert(line, 4000)}")  # the log's lines are inert as written; a traceback's need not be
    return EXIT_OK


def _settle(home: Path, timeout: float = 5.0) -> ServiceStatus:
    """The status once a just-started service has recorded itself (or after ``timeout``)."""
    deadline = time.monotonic() + timeout
    current = status(lines=0, home=home)
    while time.monotonic() < deadline and current.running and current.state in ("", "starting"):
        time.sleep(0.2)
        current = status(lines=0, home=home)
    return current


def _logs(path: Path, lines: int, follow: bool, out: Out) -> int:
    """Print the last ``lines`` lines of the service log, then (with ``follow``) new ones as they come."""
    if not path.exists() and not follow:
        out(f"No service log yet ({path}): the service has not run.")
        return EXIT_OK
    try:
        info = path.stat()
        position, identity = info.st_size, info.st_ino
    except OSError:
        position, identity = 0, None
    for line in tail(path, max(0, lines), end=position):  # up to where following starts: no gap, no repeat
        out(line)
    if not follow:
        return EXIT_OK
    try:
        _follow(path, out, position, identity)
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def _follow(path: Path, out: Out, position: int, identity: int | None, poll: float = 0.5) -> None:
    """Print lines appended to ``path`` after ``position``; a rotated (replaced) log is read from its start."""
    pending = b""
    while True:
        try:
            info = path.stat()
        except FileNotFoundError:
            time.sleep(poll)
            continue
        if info.st_ino != identity or info.st_size < position:
            identity, position, pending = info.st_ino, 0, b""
        if info.st_size > position:
            with open(path, "rb") as fh:
                fh.seek(position)
                pending += fh.read()
                position = fh.tell()
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                out(raw.decode("utf-8", errors="replace"))
        time.sleep(poll)
