"""A worker process for the kill tests: the real Worker and journal, with a job that records each run.

Run as ``python tests/killworker.py URL HOME MARKER`` with the token in ``$TEST_TOKEN``. The ``mark`` job
appends ``run <job_id>`` to MARKER when it starts, then sleeps ``seconds``; a test SIGKILLs this process at
random moments and counts runs per job id.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from statsbot_nb.context import JobContext, JobSettings
from statsbot_nb.jobs import ActionSpec
from statsbot_nb.retry import Backoff
from statsbot_nb.runner import ThreadRunner
from statsbot_nb.worker import Worker

ACTIONS = {
    "mark": ActionSpec("killworker:mark_job", isolated=False),
    "slow_mark": ActionSpec("killworker:mark_job", isolated=True),
}


def mark_job(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Record that this job ran (one line, written and flushed at once), then take ``seconds``."""
    with Path(params["marker"]).open("a", encoding="utf-8") as fh:
        fh.write(f"run {ctx.job_id}\n")
    seconds = float(params.get("seconds", 0.0))
    steps = max(1, int(seconds / 0.05))
    for i in range(steps):
        time.sleep(seconds / steps)
        ctx.progress(100 * (i + 1) / steps, "marking", "marking")
    return {"job_id": ctx.job_id, "pid": os.getpid()}


async def main(url: str, home: str, marker: str) -> None:
    settings = JobSettings(home=Path(home), cwd=Path(home))
    worker = Worker(
        os.environ["TEST_TOKEN"],
        url,
        settings=settings,
        actions=ACTIONS,
        backoff=Backoff(initial=0.05, cap=0.2),
        process_runner=ThreadRunner(),  # no forkserver: this process is killed and restarted hundreds of times
        machine_id="kill-test",
    )
    await worker.run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
