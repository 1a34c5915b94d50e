"""Ping round-trip to the worker while CPU-heavy jobs run, measured side by side in one run.

Three phases against the same reference server and worker:

1. idle: no job running;
2. process runner (ours): two CPU-bound jobs, each in its own process;
3. on the loop (today's defect): the same work run on the worker's own event-loop thread, in slices, the
   way a worker that trains on its loop behaves at best.

Prints median / p99 / max ping RTT for each and the ratios against idle. Run:

    python benchmarks/ping_latency.py [--seconds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from jobfuncs import TEST_ACTIONS

from statsbot_nb.context import JobSettings
from statsbot_nb.server import JobServer
from statsbot_nb.worker import Worker


async def _pings(server: JobServer, until: asyncio.Future[object] | float) -> list[float]:
    ws = server.workers[0].connection
    rtts: list[float] = []
    deadline = until if isinstance(until, float) else None
    while True:
        if deadline is not None and time.monotonic() > deadline:
            break
        if deadline is None and until.done():  # type: ignore[union-attr]
            break
        rtts.append(await asyncio.wait_for(await ws.ping(), 120))
        await asyncio.sleep(0.02)
    return rtts


def _burn_slice(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(i * i for i in range(2000))


async def _on_loop_burn(seconds: float, slice_s: float = 0.5) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        _burn_slice(slice_s)  # blocks the loop, as a fit on the loop thread would
        await asyncio.sleep(0)


def _row(name: str, rtts: list[float], idle_median: float) -> str:
    ordered = sorted(rtts)
    p99 = ordered[int(0.99 * (len(ordered) - 1) + 0.5)]
    med = statistics.median(rtts)
    return (
        f"{name:<28} n={len(rtts):4d}  median={med * 1000:8.2f} ms  p99={p99 * 1000:8.2f} ms  "
        f"max={max(rtts) * 1000:8.2f} ms  median/idle={med / idle_median:7.1f}x"
    )


async def main(seconds: float) -> None:
    home = Path(tempfile.mkdtemp(prefix="statsbot-bench-"))
    async with JobServer() as server:
        worker = Worker(
            server.issue_token(),
            server.url,
            actions=TEST_ACTIONS,
            max_jobs=2,
            settings=JobSettings(home=home),
            machine_id="bench",
        )
        worker.start()
        await worker.wait_connected(timeout=30)
        await server.run_job("burn", {"seconds": 0.2})  # warm the forkserver
        idle = await _pings(server, time.monotonic() + seconds)
        jobs = asyncio.gather(*(server.run_job("burn", {"seconds": seconds}) for _ in range(2)))
        during = await _pings(server, jobs)
        await jobs
        burn = asyncio.ensure_future(_on_loop_burn(seconds))
        on_loop = await _pings(server, burn)
        await worker.stop()
    idle_median = statistics.median(idle)
    print(f"ping RTT to the worker, {seconds:.0f} s per phase, 2 cores")
    print(_row("idle", idle, idle_median))
    print(_row("2 CPU jobs, process runner", during, idle_median))
    print(_row("same work on the loop", on_loop, idle_median))
    print(f"max RTT, on-loop / process runner: {max(on_loop) / max(during):.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    asyncio.run(main(parser.parse_args().seconds))
