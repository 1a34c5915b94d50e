"""``statsbot-worker``: the headless worker, the demo and the reference server from a terminal.

    statsbot-worker --token T [--ws-url URL] [--max-jobs N] [--allow DIR]... [--privacy LEVEL]
                    [--max-job-memory SIZE] [--max-job-seconds S] [--ask] [-v]
    statsbot-worker ledger [--json] [--last N]  # every frame this machine sent to the server
    statsbot-worker demo [--dir DIR]      # reference server + worker on loopback, a few real jobs
    statsbot-worker serve [--port 8765]   # the reference server alone
    statsbot-worker trust-model MODEL_ID  # accept a model an older worker saved without a checksum
    statsbot-worker login                 # store a token for the login service (prompt or stdin, 0600)
    statsbot-worker service install|uninstall|status|logs|start|stop   # the worker as a login service

The token is never printed or logged; it is written to ``config.json`` (mode 0600) only with ``--remember``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import __version__
from .config import (
    remember_once_connected,
    statsbot_home,
    update_config,
)
from .console import event_printer, setup_logging
from .context import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_JOB_SECONDS, JobSettings
from .errors import ConfigError, StatsbotError, TokenRejectedError
from .inert import SHOWN, inert
from .jobs import describe_job
from .privacy import LEVELS, describe
from .settings import resolve_worker

EXIT_OK, EXIT_ERROR, EXIT_REJECTED, EXIT_USAGE = 0, 1, 3, 2
SUBCOMMANDS = ("demo", "serve", "trust-model", "ledger", "login", "service", "run-service")


def build_parser() -> argparse.ArgumentParser:
    """Options of the worker itself (``statsbot-worker [options]``)."""
    parser = argparse.ArgumentParser(
        prog="statsbot-worker",
        description="Run the StatsBot local worker: jobs from the bot run on this machine's files.",
        epilog="Other commands: 'statsbot-worker demo', 'statsbot-worker serve', 'statsbot-worker trust-model ID', "
        "'statsbot-worker login', 'statsbot-worker service' (each has --help).",
    )
    parser.add_argument(
        "--token",
        help="one-time token from /connect in the bot (never printed); STATSBOT_TOKEN keeps it out of the process list",
    )
    parser.add_argument(
        "--ws-url", help="server URL (default: $STATSBOT_WS_URL, config.json, or ws://localhost:8765/ws)"
    )
    parser.add_argument("--max-jobs", type=int, default=2, help="heavy jobs run at once (default 2)")
    parser.add_argument(
        "--allow",
        action="append",
        metavar="DIR",
        help="also allow jobs to read/write DIR (repeatable; also STATSBOT_ALLOWED_DIRS)",
    )
    parser.add_argument(
        "--privacy",
        choices=LEVELS,
        default=None,
        help="what results may carry to the server: strict (metrics, counts, column names only), "
        "standard (default: also up to 10 predictions per job and 20 labels), share (also table rows)",
    )
    parser.add_argument(
        "--share-data",
        action="store_true",
        help="the older name of --privacy share",
    )
    parser.add_argument(
        "--max-file-mb",
        type=float,
        default=DEFAULT_MAX_FILE_BYTES / 2**20,
        help="largest file a job may read, in MB (default 1000)",
    )
    parser.add_argument(
        "--max-job-memory",
        metavar="SIZE",
        help="stop a job whose memory passes SIZE: megabytes, or with a unit such as 4G or 512M; 0 = no limit "
        "(default: half of this machine's RAM)",
    )
    parser.add_argument(
        "--max-job-seconds",
        type=float,
        metavar="S",
        help=f"stop a job that runs longer than S seconds; 0 = no limit (default {DEFAULT_MAX_JOB_SECONDS:g}, 6 hours)",
    )
    parser.add_argument("--machine-id", help="name this machine shows in the bot (default: host name)")
    parser.add_argument(
        "--max-frame-mb",
        type=int,
        default=256,
        help="largest message from the server the worker reads, in MB (default 256; today's server allows far more)",
    )
    parser.add_argument(
        "--ask",
        action="store_true",
        help="ask at this terminal before running each job (y = allow, n = deny, a = always allow that action)",
    )
    parser.add_argument(
        "--insecure-ws",
        action="store_true",
        help="allow a plain ws:// URL to another machine: the token and results then travel UNENCRYPTED",
    )
    parser.add_argument(
        "--remember", action="store_true", help="save the token in config.json (mode 0600) for the next start"
    )
    parser.add_argument(
        "--dask-scheduler",
        metavar="ADDR",
        default=os.environ.get("DASK_SCHEDULER_ADDRESS") or None,
        help=(
            "train (linear, ridge, xgboost_*, lightgbm_*) and predict on this Dask cluster "
            "(also $DASK_SCHEDULER_ADDRESS); off by default"
        ),
    )
    parser.add_argument("--dask-local", type=int, metavar="N", help="start a local Dask cluster of N worker processes")
    parser.add_argument(
        "--dask-shared-dir",
        action="append",
        metavar="DIR",
        help="a folder a remote Dask cluster's workers see at the same path (repeatable)",
    )
    parser.add_argument(
        "--dask-timeout",
        type=float,
        metavar="S",
        help="seconds a Dask job waits for a scheduler that does not answer or has no worker (default 30)",
    )
    parser.add_argument("--forget", action="store_true", help="delete a remembered token and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="print progress and debug logs")
    parser.add_argument("--version", action="version", version=f"statsbot_nb {__version__}")
    return parser


def describe_limits(settings: JobSettings) -> str:
    """The per-job limits in words, for the start-up line (so the user knows what will stop a job)."""
    memory = settings.max_job_memory_bytes
    seconds = settings.max_job_seconds
    mem_text = f"{memory / 2**20:.0f} MB of memory" if memory is not None else "no memory limit"
    time_text = f"{seconds:g} s" if seconds is not None else "no time limit"
    return f"{mem_text}, {time_text} (--max-job-memory, --max-job-seconds)"


async def ask_at_terminal(worker: Any, out: Callable[[str], None]) -> None:
    """Ask-before-running at the terminal: each waiting job is shown in words; answer y, n or a.

    Answers are read from standard input in a thread (the loop never blocks). Without a terminal to ask (end
    of input), waiting jobs are denied: nothing runs unless someone allowed it.
    """
    loop = asyncio.get_running_loop()
    shown: set[str] = set()
    while True:
        waiting = [job for job in worker.awaiting_approval if job.job_id not in shown]
        if not waiting:
            await asyncio.sleep(0.2)
            continue
        job = waiting[0]
        shown.add(job.job_id)
        out(f"Job {inert(job.job_id)} asks to run: {inert(describe_job(job.action, job.params), 1000)}")
        out("Allow it? [y]es / [n]o / [a]lways for this action: ")
        line = await loop.run_in_executor(None, sys.stdin.readline)
        answer = {"y": "allow", "yes": "allow", "a": "always", "always": "always"}.get(line.strip().lower(), "deny")
        if not line:
            out("No terminal to answer from: the job is denied.")
        worker.approve(job.job_id, answer)
        verdicts = {"allow": "Allowed.", "always": "Allowed (always, for this action).", "deny": "Denied."}
        out(verdicts[answer])


def _stop_on_signals(worker: Any, out: Callable[[str], None]) -> None:
    """Ctrl-C / SIGTERM stop the worker cleanly (a second Ctrl-C exits at once).

    A stop flag is more reliable than cancelling the main task: on Python 3.11 a cancellation that
    races with a completing ``wait_for`` can be lost, leaving a worker that ignores Ctrl-C.
    """
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    def on_signal() -> None:
        if stopping:
            out("Stopping now.")
            os._exit(EXIT_OK)
        out("Stopping (Ctrl-C again to exit at once) ...")
        stopping.append(loop.create_task(worker.stop()))

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal)


async def run_worker(
    args: argparse.Namespace,
    token: str,
    url: str,
    settings: JobSettings,
    machine_id: str,
    out: Callable[[str], None],
    *,
    home: Path | None = None,
    remember: str | None = None,
) -> int:
    """Run the worker until Ctrl-C or a rejected token; with ``home``, ``url`` (and the token to
    ``remember``) go to its ``config.json`` once the worker connected."""
    from .worker import Worker

    try:
        worker = Worker(
            token,
            url,
            settings=settings,
            machine_id=machine_id,
            max_jobs=args.max_jobs,
            insecure_ws=args.insecure_ws,
            max_frame_bytes=args.max_frame_mb * 2**20,
            ask=args.ask,
        )
    except StatsbotError as exc:
        out(f"Error: {exc}")
        return EXIT_ERROR
    worker.events.subscribe(event_printer(out, args.verbose))
    if home is not None:
        remember_once_connected(home, worker.events.subscribe, url, remember)
    asking = asyncio.get_running_loop().create_task(ask_at_terminal(worker, out)) if args.ask else None
    _stop_on_signals(worker, out)
    try:
        await worker.run()
    except TokenRejectedError:
        return EXIT_REJECTED
    except StatsbotError as exc:
        out(f"Error: {exc}")
        return EXIT_ERROR
    except asyncio.CancelledError:
        await worker.stop()
        raise
    finally:
        if asking is not None:
            asking.cancel()
    return EXIT_OK


def main(argv: list[str] | None = None, out: Callable[[str], None] | None = None) -> int:
    """The ``statsbot-worker`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out = out or (lambda line: print(line, flush=True))
    if argv and argv[0] in SUBCOMMANDS:
        return _subcommand(argv[0], argv[1:], out)
    args = build_parser().parse_args(argv)
    try:
        if args.max_jobs < 1:
            raise ConfigError("--max-jobs must be at least 1.")
        dask_timeout = _dask_timeout(args.dask_timeout)
        setup = resolve_worker(
            args.token,
            args.ws_url,
            allow=args.allow or (),
            share_data=args.share_data,
            privacy=args.privacy,
            max_file_mb=args.max_file_mb,
            max_job_memory=args.max_job_memory,
            max_job_seconds=args.max_job_seconds,
            machine_id=args.machine_id,
            option="--max-file-mb",
            limit_options=("--max-job-memory", "--max-job-seconds"),
        )
        home, url, token, machine_id, settings = (
            setup.home,
            setup.url,
            setup.token,
            setup.machine_id,
            setup.settings,
        )
        if args.forget:
            update_config(home, forget_token=True)
            out(f"Forgot the remembered token ({home / 'config.json'}).")
            return EXIT_OK
        if token is None:
            out(
                "No token: run 'statsbot-worker --token TOKEN' (or set STATSBOT_TOKEN) with the token from "
                "/connect in the bot."
            )
            return EXIT_USAGE
        update_config(home, machine_id=machine_id)  # the URL (and a remembered token) once connected
    except ConfigError as exc:
        out(f"Error: {exc}")
        return EXIT_USAGE
    log_path = setup_logging(home, args.verbose)
    out(f"StatsBot worker {__version__} for machine {machine_id}; server {url}")
    out(f"Privacy {describe(settings.privacy)}. What was sent: 'statsbot-worker ledger'.")
    limits = f"Per-job limits: {describe_limits(settings)}"
    logging.getLogger("statsbot_nb.cli").info("%s", limits, extra={SHOWN: args.verbose})  # always in worker.log
    if args.verbose:
        out(limits)
    if log_path:
        out(f"Local log: {log_path}")
    try:
        remember = token if args.remember else None
        from .cluster.connect import dask_switch

        shared = tuple(Path(d).expanduser() for d in args.dask_shared_dir or ())
        with dask_switch(args.dask_scheduler, args.dask_local, shared) as dask:
            if dask:
                settings = replace(settings, **dask, **dask_timeout)
                out(
                    f"Dask: train and predict jobs that can run there go to {dask['dask_scheduler']}; "
                    "the rest run here."
                )
            code = asyncio.run(run_worker(args, token, url, settings, machine_id, out, home=home, remember=remember))
    except StatsbotError as exc:  # the dask extra missing for --dask-local
        out(f"Error: {exc}")
        code = EXIT_ERROR
    except KeyboardInterrupt:  # where signal handlers cannot be installed (Windows)
        code = EXIT_OK
    return code  # "[stopped] Stopped." was printed with the worker's last state


def _dask_timeout(seconds: float | None) -> dict[str, float]:
    """``--dask-timeout``, checked (a positive, finite number of seconds); ``{}`` keeps the default."""
    if seconds is None:
        return {}
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"--dask-timeout must be a positive number of seconds, not {seconds:g}.")
    return {"dask_timeout": seconds}


def _subcommand(name: str, argv: list[str], out: Callable[[str], None]) -> int:
    if name == "serve":
        from .server.cli import main as serve_main

        return serve_main(argv, prog="statsbot-worker serve")
    if name == "demo":
        from .demo import main as demo_main

        return demo_main(argv, out)
    if name == "ledger":
        return _ledger(argv, out)
    if name in ("login", "service", "run-service"):
        from .service import cli as service_cli
        from .service import runservice

        if name == "run-service":
            return runservice.main(argv)
        return service_cli.login_main(argv, out) if name == "login" else service_cli.service_main(argv, out)
    from .ml.store import trust_model  # trust-model

    parser = argparse.ArgumentParser(
        prog="statsbot-worker trust-model",
        description="Record the checksum of a model an older worker saved, so this worker agrees to load it.",
    )
    parser.add_argument("model_id")
    args = parser.parse_args(argv)
    try:
        trust_model(statsbot_home() / "models", args.model_id)
    except StatsbotError as exc:
        out(f"Error: {exc}")
        return EXIT_ERROR
    out(f"Trusted {args.model_id}.")
    return EXIT_OK


def _ledger(argv: list[str], out: Callable[[str], None]) -> int:
    """``statsbot-worker ledger``: the frames sent to the server, as a table or JSON lines."""
    import json

    from .ledgerdb import ledger_path
    from .ledgerview import format_table, read_rows

    parser = argparse.ArgumentParser(
        prog="statsbot-worker ledger",
        description="Show every frame this machine's worker sent to the server, and which carried your data.",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per frame (oldest first)")
    parser.add_argument("--last", type=int, default=None, metavar="N", help="only the newest N frames")
    args = parser.parse_args(argv)
    home = statsbot_home()
    rows = read_rows(home, args.last)
    if args.json:
        for row in rows:
            out(json.dumps(row, ensure_ascii=True))
        return EXIT_OK
    out(f"Ledger {ledger_path(home)}: {len(rows)} frame(s)")
    for line in format_table(rows):
        out(line)
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
