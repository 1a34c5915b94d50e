"""What a hostile ``.xlsx`` does to the worker's own process, and how long ``list_models`` waits meanwhile.

The file is a small zip whose shared-strings table expands to many long, distinct strings: openpyxl
reads the whole table into Python strings even to list the header row, so ``file_info`` on it costs
hundreds of MB and tens of seconds of parsing. The benchmark starts the real console worker
(``python -m statsbot_nb``) as a subprocess against the reference server, sends ``jobs`` such
``file_info`` jobs at once, asks ``list_models`` every ``--every`` seconds while they run, and samples the
worker process's resident memory (``VmRSS`` of its own pid, not its job processes) every 50 ms.

    PYTHONPATH=. python benchmarks/file_info_isolation.py [--jobs 4] [--strings 60000] [--max-job-memory MB]

Prints: the file's size, the worker's RSS before, its peak while the jobs ran, and after; each
``file_info`` outcome (seconds, ok or the error sentence); ``list_models`` latency median / max.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hostile_files import shared_strings_xlsx

from statsbot_nb.server import JobServer


def rss_mb(pid: int) -> float:
    """Resident memory of one process (Linux ``/proc``), in MB; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def main(args: argparse.Namespace) -> None:
    """Run the scenario and print the figures."""
    folder = Path(tempfile.mkdtemp(prefix="statsbot-bench-"))
    home = folder / "home"
    bomb = folder / "shared_strings.xlsx"
    size = shared_strings_xlsx(bomb, args.strings)
    print(f"file: {bomb.name} {size / 2**20:.2f} MB, {args.strings} shared strings of 4000 chars")
    async with JobServer() as server:
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env.update(STATSBOT_HOME=str(home), HOME=str(folder))
        command = [sys.executable, "-m", "statsbot_nb", "--token", server.issue_token(), "--ws-url", server.url]
        command += ["--allow", str(folder), "--max-jobs", str(args.max_jobs)]
        if args.max_job_memory:
            command += ["--max-job-memory", str(args.max_job_memory)]
        proc = await asyncio.create_subprocess_exec(
            *command, env=env, cwd=str(folder), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            await server.wait_for_worker(timeout=60)
            await server.run_job("list_models", {}, timeout=60)  # warm: the forkserver and the thread pool
            await asyncio.sleep(1.0)
            before = rss_mb(proc.pid)
            peak = before
            done = asyncio.Event()

            async def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, rss_mb(proc.pid))
                    await asyncio.sleep(0.05)

            async def one_info(i: int) -> str:
                t0 = time.monotonic()
                result = await server.run_job("file_info", {"file_path": str(bomb)}, timeout=900)
                took = time.monotonic() - t0
                if result.success:
                    note = (result.data or {}).get("columns_error") or "columns read"
                    return f"file_info {i}: ok in {took:.1f} s ({note})"
                return f"file_info {i}: failed in {took:.1f} s: {result.error}"

            async def list_latency() -> list[float]:
                times: list[float] = []
                while not done.is_set():
                    t0 = time.monotonic()
                    await server.run_job("list_models", {}, timeout=900)
                    times.append(time.monotonic() - t0)
                    await asyncio.sleep(args.every)
                return times

            sampler = asyncio.create_task(sample())
            lister = asyncio.create_task(list_latency())
            t0 = time.monotonic()
            outcomes = await asyncio.gather(*(one_info(i) for i in range(args.jobs)))
            wall = time.monotonic() - t0
            done.set()
            latencies = await lister
            await sampler
            await asyncio.sleep(2.0)
            after = rss_mb(proc.pid)
        finally:
            proc.terminate()
            await proc.wait()
    for line in outcomes:
        print(line)
    print(f"all {args.jobs} file_info jobs done in {wall:.1f} s")
    print(f"worker process RSS: before {before:.0f} MB, peak {peak:.0f} MB, 2 s after {after:.0f} MB")
    if latencies:
        print(
            f"list_models while they ran: {len(latencies)} calls, median {statistics.median(latencies) * 1000:.0f} ms, "
            f"max {max(latencies) * 1000:.0f} ms"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4, help="file_info jobs sent at once (default 4)")
    parser.add_argument("--strings", type=int, default=60000, help="distinct shared strings (default 60000)")
    parser.add_argument("--max-jobs", type=int, default=2, help="the worker's --max-jobs (default 2)")
    parser.add_argument("--max-job-memory", type=float, default=0, help="pass --max-job-memory MB (after the change)")
    parser.add_argument("--every", type=float, default=0.25, help="seconds between list_models calls")
    asyncio.run(main(parser.parse_args()))
