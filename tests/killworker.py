"""A worker process for the kill tests: the real Worker and journal, with a job that records each run.

Run as ``python tests/killworker.py URL HOME MARKER`` with the token in ``$TEST_TOKEN``. The ``mark`` job
(``tests/jobfuncs.py``) appends ``<job_id> <pid>`` to MARKER when it starts, then sleeps ``seconds``; a test
SIGKILLs this process at random moments and counts runs per job id.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from statsbot_nb.context import JobSettings
from statsbot_nb.jobs import ActionSpec
from statsbot_nb.retry import Backoff
from statsbot_nb.runner import ThreadRunner
from statsbot_nb.worker import Worker

ACTIONS = {
    # tests/jobfuncs.py's mark job: one "<job_id> <pid>" line per run, written first, then it sleeps
    "mark": ActionSpec("jobfuncs:mark_job", isolated=False),
    "slow_mark": ActionSpec("jobfuncs:mark_job", isolated=True),
}


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
