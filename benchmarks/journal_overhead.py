"""The job journal's cost, measured side by side in one run: quick jobs through the real worker and the
reference server on loopback, with the journal on and off (alternating rounds, medians), and what
journaling one large result costs: the write itself (on the recorder's thread) and the event loop's part.

    python benchmarks/journal_overhead.py [--jobs 300] [--rounds 5]
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

from statsbot_nb.context import JobSettings
from statsbot_nb.core import JournalResult
from statsbot_nb.journal import Journal
from statsbot_nb.protocol import encode_result_ok
from statsbot_nb.recorder import JournalWriter, Recorder
from statsbot_nb.runner import ThreadRunner
from statsbot_nb.server import JobServer
from statsbot_nb.worker import Worker


async def one_round(jobs: int, journal: bool) -> float:
    """Seconds per job, dispatch to stored result, for ``jobs`` list_models jobs 50 at a time."""
    with tempfile.TemporaryDirectory() as home:
        async with JobServer() as server:
            worker = Worker(
                server.issue_token(),
                server.url,
                settings=JobSettings(home=Path(home), cwd=Path(home)),
                journal=journal,
                process_runner=ThreadRunner(),
            )
            worker.start()
            await worker.wait_connected(timeout=30)
            started = time.perf_counter()
            for start in range(0, jobs, 50):
                handles = [server.submit("list_models") for _ in range(min(50, jobs - start))]
                await asyncio.gather(*(asyncio.shield(h.future) for h in handles))
            elapsed = time.perf_counter() - started
            await worker.stop()
    return elapsed / jobs


async def big_write(megabytes: int) -> tuple[float, float]:
    """One journal record of a ``megabytes`` MB result frame, as the worker's driver makes it: seconds until
    it is written (on the recorder's thread), and seconds the event loop spent handing it over."""
    frame = encode_result_ok("big", {"rows": "x" * (megabytes * 2**20)})
    with tempfile.TemporaryDirectory() as home:
        journal = Journal(Path(home), "ws://127.0.0.1:1/ws")
        journal.open()
        journal.claim(1)
        journal.reserve("big", "load_data")
        writer = JournalWriter(journal, Recorder("bench-journal"), lambda: 1, print)
        started = time.perf_counter()
        writer.add(JournalResult("big", frame))
        on_loop = time.perf_counter() - started
        await writer.settle()
        written = time.perf_counter() - started
        journal.close()
    return written, on_loop


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    on, off = [], []
    for _ in range(args.rounds):  # alternate, so drift in the machine's load hits both alike
        off.append(await one_round(args.jobs, journal=False))
        on.append(await one_round(args.jobs, journal=True))
    m_on, m_off = statistics.median(on), statistics.median(off)
    print(
        f"quick jobs, journal off: {m_off * 1e3:.2f} ms/job   on: {m_on * 1e3:.2f} ms/job   ratio {m_on / m_off:.2f}x"
    )
    writes = [await big_write(20) for _ in range(3)]
    print(
        f"journaling one 20 MB result: {statistics.median(w for w, _ in writes) * 1e3:.0f} ms to write it "
        f"(recorder thread), {statistics.median(o for _, o in writes) * 1e3:.2f} ms on the loop (medians of 3)"
    )


if __name__ == "__main__":
    asyncio.run(main())
