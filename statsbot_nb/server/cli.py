"""``statsbot-server`` (also ``statsbot-worker serve``): run the reference server in a terminal.

It prints the URL and a fresh token for a worker, then reads jobs from standard input, one JSON object a
line (``{"action": "list_models"}`` or ``{"action": "train", "params": {...}}``), and prints their
progress and results. Handy for trying a worker by hand without the Telegram bot.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from .core import JobHandle, JobServer


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(prog="statsbot-server", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765; 0 = any)")
    parser.add_argument("--token-ttl", type=float, default=300.0, help="token lifetime in seconds")
    return parser


def _print_progress(handle: JobHandle, progress: float, message: str) -> None:
    print(f"  [{handle.job_id}] {progress:5.1f}% {message}", flush=True)


async def _serve(args: argparse.Namespace) -> None:
    async with JobServer(args.host, args.port, token_ttl=args.token_ttl) as server:
        token = server.issue_token()
        print(f"StatsBot reference server on {server.url}", flush=True)
        print(f"Start a worker with:  statsbot-worker --ws-url {server.url} --token {token}", flush=True)
        print('Type jobs as JSON lines, e.g. {"action": "list_models"}; Ctrl-D or Ctrl-C to stop.', flush=True)
        loop = asyncio.get_running_loop()
        reports: set[asyncio.Task[None]] = set()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                await asyncio.Event().wait()  # stdin closed: keep serving until Ctrl-C
            line = line.strip()
            if not line:
                continue
            try:
                job = json.loads(line)
                if not isinstance(job, dict) or not isinstance(job.get("action"), str):
                    raise ValueError("a job is an object with an 'action' string")
                params = job.get("params") or {}
                if not isinstance(params, dict):
                    raise ValueError("'params' must be an object")
            except ValueError as exc:
                print(f"Not a job: {exc}", flush=True)
                continue
            handle = server.submit(job["action"], params, on_progress=_print_progress)
            print(f"Queued {handle.job_id} ({handle.action})", flush=True)
            task = loop.create_task(_report(handle))
            reports.add(task)
            task.add_done_callback(reports.discard)


async def _report(handle: JobHandle) -> None:
    result = await handle
    body = result.data if result.success else {"error": result.error}
    print(f"Result {handle.job_id}: {json.dumps(body, indent=2)[:4000]}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the reference server until Ctrl-C; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        print("Stopped.", file=sys.stderr)
    except OSError as exc:
        print(f"Cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
