"""Job handlers used only by the tests (importable by job processes through sys.path)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from statsbot_nb.context import JobContext
from statsbot_nb.jobs import ACTIONS, ActionSpec


def _mark(params: dict[str, Any], text: str) -> None:
    marker = params.get("marker")
    if marker:
        with Path(marker).open("a", encoding="utf-8") as fh:
            fh.write(f"{text} {time.time():.6f}\n")


def sleep_job(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Sleep ``seconds`` in small steps, reporting progress, recording start/end in ``marker``."""
    seconds = float(params.get("seconds", 1.0))
    _mark(params, "start")
    steps = 20
    for i in range(steps):
        time.sleep(seconds / steps)
        ctx.progress(100 * (i + 1) / steps, f"step {i + 1}/{steps}", "sleeping")
    _mark(params, "end")
    return {"slept": seconds, "pid": os.getpid()}


def burn_cpu(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Busy-loop in pure Python for ``seconds`` (holds a core and its own GIL)."""
    seconds = float(params.get("seconds", 2.0))
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += sum(i * i for i in range(2000))
        ctx.progress(100 * (1 - (end - time.monotonic()) / seconds), "burning", "burning")
    return {"work": n, "nan": float("nan"), "inf": float("inf")}


def die_job(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Kill its own process, like an out-of-memory kill."""
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


def raise_job(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Fail with an unexpected exception."""
    raise ValueError("secret internal detail")


def write_relative(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Write a file by a bare name, as a library option might; report where the process was."""
    Path("relative.txt").write_text("written by a job")
    return {"cwd": os.getcwd()}


def alloc_job(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Allocate (and touch) ``step_mb`` at a time, pausing ``pause`` s between steps, up to ``mb`` in all."""
    held: list[bytearray] = []
    step = int(params.get("step_mb", 20)) * 2**20
    total = int(params.get("mb", 100)) * 2**20
    while len(held) * step < total:
        held.append(bytearray(b"x" * step))  # written, so resident, not just reserved
        ctx.progress(100 * len(held) * step / total, "allocating", "allocating")
        time.sleep(float(params.get("pause", 0.02)))
    return {"held_mb": len(held) * step // 2**20}


def scratch_job(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Record the job's working and temporary folders in ``marker``, write a temp file there, then
    start a grandchild ``sleep`` (its pid recorded too) and either SIGKILL itself (``die``) or sleep."""
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile("w", delete=False, suffix=".tmp") as fh:
        fh.write("scratch")
    child = subprocess.Popen(["sleep", "600"])
    Path(params["marker"]).write_text(f"{os.getcwd()}\n{tempfile.gettempdir()}\n{fh.name}\n{child.pid}\n")
    if params.get("die"):
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(float(params.get("seconds", 600)))
    return {"cwd": os.getcwd()}


def chatty_job(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Report progress ``count`` times as fast as it can; two alternating stages, so the context drops none."""
    count = int(params.get("count", 5000))
    for i in range(count):
        ctx.progress(100.0 * (i + 1) / count, f"step {i + 1}/{count}", ("fitting", "scoring")[i % 2])
    return {"count": count}


TEST_ACTIONS = {
    **ACTIONS,
    "alloc": ActionSpec("jobfuncs:alloc_job", isolated=True),
    "scratch": ActionSpec("jobfuncs:scratch_job", isolated=True),
    "sleep": ActionSpec("jobfuncs:sleep_job", isolated=True),
    "burn": ActionSpec("jobfuncs:burn_cpu", isolated=True),
    "chatty": ActionSpec("jobfuncs:chatty_job", isolated=True),
    "die": ActionSpec("jobfuncs:die_job", isolated=True),
    "boom": ActionSpec("jobfuncs:raise_job", isolated=True),
    "write_relative": ActionSpec("jobfuncs:write_relative", isolated=True),
}


def mark_job(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Append ``<job_id> <pid>`` to ``marker`` as the job starts, then sleep ``seconds``.

    One line per run, written before anything else, so a test can count how many times each job id ran
    (a job run twice shows two lines even if the second run was cut short). Used by tests/test_faults.py.
    """
    with Path(params["marker"]).open("a", encoding="utf-8") as fh:
        fh.write(f"{ctx.job_id} {os.getpid()}\n")
    ctx.progress(50, "marked", "marking")
    time.sleep(float(params.get("seconds", 0.0)))
    return {"job_id": ctx.job_id, "pid": os.getpid()}


# quick jobs for the fault tests: the same handler in a thread and in its own process
TEST_ACTIONS["mark"] = ActionSpec("jobfuncs:mark_job", isolated=False)
TEST_ACTIONS["mark_proc"] = ActionSpec("jobfuncs:mark_job", isolated=True)


def blas_threads_job(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """The BLAS thread counts this job process has after ``ctx.limit_threads()``, as training starts."""
    import numpy  # noqa: F401  (loads numpy's BLAS, so threadpoolctl can see it)
    from threadpoolctl import threadpool_info

    ctx.limit_threads()
    import numpy as np

    a = np.random.default_rng(0).random((300, 300))
    float((a @ a).sum())  # a BLAS call, as a fit makes
    tasks = Path("/proc/self/task")
    native = len(list(tasks.iterdir())) if tasks.is_dir() else None
    return {
        "blas": [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"],
        "threads": native,
    }
