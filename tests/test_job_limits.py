"""Per-job limits, ``file_info`` in a job process, scratch folders (issue 11, items 3 and 9).

Each test runs the real worker (or the real process runner) with a small limit: a job past its memory or
time limit is stopped with a sentence naming that limit, the worker stays healthy, a hostile ``.xlsx``
costs a job process instead of the worker's memory, and no scratch folder outlives its job.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import time
from pathlib import Path

import pytest
from hostile_files import shared_strings_xlsx
from test_worker import running, until

from statsbot_nb.cli import describe_limits, main
from statsbot_nb.context import DEFAULT_MAX_JOB_SECONDS, JobSettings, physical_memory_bytes
from statsbot_nb.errors import ConfigError, JobError
from statsbot_nb.events import Event, JobFailed
from statsbot_nb.jobguard import (
    LEGACY_SCRATCH_AGE,
    SCRATCH_PREFIX,
    memory_limit_sentence,
    sweep_scratch,
    time_limit_sentence,
)
from statsbot_nb.jobs import ACTIONS
from statsbot_nb.runner import ProcessRunner
from statsbot_nb.server import JobServer
from statsbot_nb.settings import parse_max_job_memory, parse_max_job_seconds, resolve_worker

MB = 2**20
linux_only = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="the memory watchdog reads /proc")


def own_rss() -> int:
    """This (the test's, so the worker's) process's resident memory in bytes."""
    with open("/proc/self/statm", "rb") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def gone(pid: int) -> bool:
    """True when no live process has ``pid`` (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except OSError:
        return True


def failures(worker_events: list[Event]) -> dict[str, str]:
    """The local job log's failed lines: job id -> sentence."""
    return {e.job_id: e.error for e in worker_events if isinstance(e, JobFailed)}


async def connected(make_worker, server: JobServer, settings: JobSettings, **limits: object):
    """A worker with ``limits`` replacing fields of ``settings``, connected, and the events it publishes."""
    worker = make_worker(server.url, server.issue_token(), settings=dataclasses.replace(settings, **limits))
    events: list[Event] = []
    worker.events.subscribe(events.append)
    worker.start()
    await worker.wait_connected(timeout=20)
    return worker, events


# -- memory and time ---------------------------------------------------------------------------------


@linux_only
async def test_a_job_past_its_memory_limit_is_stopped_with_a_sentence(reference: JobServer, make_worker, settings):
    worker, events = await connected(make_worker, reference, settings, max_job_memory_bytes=300 * MB)
    handle = reference.submit("alloc", {"mb": 3000, "step_mb": 20})
    result = await asyncio.wait_for(handle, 60)
    sentence = "The job used more than 300 MB of memory (the per-job memory limit, --max-job-memory) and was stopped."
    assert not result.success and result.error == sentence == memory_limit_sentence(300 * MB)
    assert failures(events)[handle.job_id] == sentence  # the local job log says the same
    assert worker.jobs[handle.job_id].error == sentence
    # the worker is healthy: a job under the limit runs, a light one answers
    fits = await reference.run_job("alloc", {"mb": 60, "step_mb": 20}, timeout=60)
    assert fits.success and fits.data == {"held_mb": 60}
    assert (await reference.run_job("list_models", {}, timeout=20)).success
    assert worker.state == "connected"


async def test_a_job_past_its_time_limit_is_stopped_with_a_sentence(reference: JobServer, make_worker, settings):
    worker, events = await connected(make_worker, reference, settings, max_job_seconds=1.5)
    t0 = time.monotonic()
    handle = reference.submit("sleep", {"seconds": 60})
    result = await asyncio.wait_for(handle, 30)
    assert time.monotonic() - t0 < 15
    sentence = "The job ran longer than 1.5 s (--max-job-seconds) and was stopped."
    assert not result.success and result.error == sentence == time_limit_sentence(1.5)
    assert failures(events)[handle.job_id] == sentence
    quick = await reference.run_job("sleep", {"seconds": 0.2}, timeout=30)
    assert quick.success
    assert worker.state == "connected"


async def test_no_limit_means_no_watchdog_stop():
    settings = JobSettings(home=Path("/nonexistent"), max_job_memory_bytes=None, max_job_seconds=None)
    result = await ProcessRunner().run("jobfuncs:alloc_job", {"mb": 40}, settings, lambda *a: None)
    assert result == {"held_mb": 40}


# -- file_info in a job process -----------------------------------------------------------------------


def test_file_info_and_every_file_parse_run_in_a_job_process():
    readers = ("file_info", "load_data", "save_file", "join", "train", "predict")
    assert all(ACTIONS[name].isolated for name in readers)
    assert {name for name, spec in ACTIONS.items() if not spec.isolated} == {
        "list_models",
        "delete_model",
        "set_model_name",
    }


@linux_only
async def test_a_huge_xlsx_costs_a_job_process_not_the_worker(reference: JobServer, make_worker, settings):
    """Before: ~5.5 KB of worker memory per shared string (100,000 strings: +550 MB that stayed)."""
    bomb = settings.cwd / "strings.xlsx"
    shared_strings_xlsx(bomb, 100_000)
    await connected(make_worker, reference, settings)
    assert (await reference.run_job("file_info", {"file_path": str(bomb.parent / "none.csv")}, timeout=30)).success
    before = peak = own_rss()
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, own_rss())
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    info = await reference.run_job("file_info", {"file_path": str(bomb)}, timeout=120)
    done.set()
    await sampler
    assert info.success and info.data["exists"] and info.data["column_count"] == 2, info
    assert peak - before < 100 * MB, f"the worker grew {(peak - before) / MB:.0f} MB"


@linux_only
async def test_file_info_on_a_huge_xlsx_is_bounded_and_cancellable(reference: JobServer, make_worker, settings):
    bomb = settings.cwd / "strings.xlsx"
    shared_strings_xlsx(bomb, 150_000)  # about 20 s and 0.8 GB to parse
    worker, _ = await connected(make_worker, reference, settings, max_job_memory_bytes=250 * MB)
    limited = await reference.run_job("file_info", {"file_path": str(bomb)}, timeout=120)
    assert not limited.success and limited.error == memory_limit_sentence(250 * MB)

    worker.update_settings(max_job_memory_bytes=None)
    handle = reference.submit("file_info", {"file_path": str(bomb)})
    await until(running(worker, handle.job_id), "file_info to run")
    await asyncio.sleep(1.0)
    t0 = time.monotonic()
    assert await reference.cancel(handle.job_id)
    cancelled = await asyncio.wait_for(handle, 10)
    assert cancelled.cancelled and time.monotonic() - t0 < 5
    assert (await reference.run_job("list_models", {}, timeout=20)).success


# -- scratch folders ----------------------------------------------------------------------------------


async def test_scratch_is_removed_when_the_job_is_killed(tmp_path: Path):
    marker = tmp_path / "marker.txt"
    settings = JobSettings(home=tmp_path / "home")
    with pytest.raises(JobError, match="killed by signal 9"):
        await ProcessRunner().run("jobfuncs:scratch_job", {"marker": str(marker), "die": True}, settings, print)
    cwd, tmp, tmp_file, child = marker.read_text().split()
    os.kill(int(child), 9)  # the grandchild of a job that killed only itself: ours to clean up here
    assert Path(tmp) == Path(cwd) and Path(tmp_file).parent == Path(cwd), "temporary files go to the scratch folder"
    assert Path(cwd).name.startswith(f"{SCRATCH_PREFIX}{os.getpid()}-")
    assert not Path(cwd).exists(), "the parent removes the scratch folder of a killed job"


async def test_a_stopped_job_takes_the_processes_it_started_with_it(tmp_path: Path):
    marker = tmp_path / "marker.txt"
    settings = JobSettings(home=tmp_path / "home", max_job_seconds=1.0)
    with pytest.raises(JobError, match="--max-job-seconds"):
        await ProcessRunner().run("jobfuncs:scratch_job", {"marker": str(marker)}, settings, print)
    cwd, _, _, child = marker.read_text().split()
    deadline = time.monotonic() + 5
    while not gone(int(child)) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert gone(int(child)), "the job's own child process was killed with it"
    assert not Path(cwd).exists()


def test_sweep_removes_scratch_of_workers_that_are_gone(tmp_path: Path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not ours")
    names = {
        "dead": f"{SCRATCH_PREFIX}{dead.pid}-abc",
        "alive": f"{SCRATCH_PREFIX}{os.getpid()}-def",
        "old": f"{SCRATCH_PREFIX}k2j4h5g6",
        "fresh": f"{SCRATCH_PREFIX}q9w8e7r6",
    }
    for name in names.values():
        (tmp_path / name).mkdir()
        (tmp_path / name / "file").write_text("x")
    old = time.time() - LEGACY_SCRATCH_AGE - 60
    os.utime(tmp_path / names["old"], (old, old))
    (tmp_path / f"{SCRATCH_PREFIX}1-link").symlink_to(outside)
    (tmp_path / f"{SCRATCH_PREFIX}2-file").write_text("a file, not a folder")

    removed = sweep_scratch(str(tmp_path))
    assert sorted(p.name for p in removed) == sorted([names["dead"], names["old"]])
    assert (tmp_path / names["alive"]).is_dir() and (tmp_path / names["fresh"]).is_dir()
    assert (outside / "keep.txt").exists() and (tmp_path / f"{SCRATCH_PREFIX}2-file").exists()


# -- settings ------------------------------------------------------------------------------------------


def test_limit_values_and_defaults():
    assert parse_max_job_memory("4G") == 4 * 2**30
    assert parse_max_job_memory("512m") == parse_max_job_memory("512MB") == parse_max_job_memory(512) == 512 * MB
    assert parse_max_job_memory("1.5 GiB") == int(1.5 * 2**30)
    assert parse_max_job_memory(0) is None and parse_max_job_memory("off") is None
    ram = physical_memory_bytes()
    assert ram is not None and parse_max_job_memory(None) == int(ram * 0.5)
    assert JobSettings(home=Path("/h")).max_job_memory_bytes == int(ram * 0.5)
    for bad in ("lots", "4X", -1, float("nan"), 10, True):
        with pytest.raises(ConfigError, match="--max-job-memory"):
            parse_max_job_memory(bad, "--max-job-memory")  # type: ignore[arg-type]
    assert parse_max_job_seconds(None) == DEFAULT_MAX_JOB_SECONDS == 6 * 3600
    assert parse_max_job_seconds(90) == 90.0 and parse_max_job_seconds(0) is None
    with pytest.raises(ConfigError, match="max_job_seconds"):
        parse_max_job_seconds(-5)


def test_limits_reach_job_settings_from_cli_and_connect(home: Path):
    setup = resolve_worker("t", "ws://127.0.0.1:1/ws", max_job_memory="2G", max_job_seconds=600, env={})
    assert setup.settings.max_job_memory_bytes == 2 * 2**30 and setup.settings.max_job_seconds == 600
    lines: list[str] = []
    url = ["--token", "t", "--ws-url", "ws://127.0.0.1:1/ws"]
    assert main([*url, "--max-job-memory", "10"], out=lines.append) == 2
    assert "--max-job-memory" in lines[-1] and "64 MB" in lines[-1]
    assert main([*url, "--max-job-seconds", "-1"], out=lines.append) == 2
    assert "--max-job-seconds" in lines[-1]


def test_the_limits_in_words():
    settings = JobSettings(home=Path("/h"), max_job_memory_bytes=4 * 2**30, max_job_seconds=None)
    assert describe_limits(settings) == "4096 MB of memory, no time limit (--max-job-memory, --max-job-seconds)"


# -- BLAS threads per job ---------------------------------------------------------------------------------


async def test_job_processes_share_the_cores_between_the_job_slots(tmp_path: Path):
    cores = os.cpu_count() or 1
    capped = await ProcessRunner().run(
        "jobfuncs:blas_threads_job", {}, JobSettings(home=tmp_path, blas_threads=1), lambda *a: None
    )
    assert capped["blas"] and all(n == 1 for n in capped["blas"])
    # ...and one thread means no BLAS thread pool at all: a pool started anew spins ~0.1 s per thread, which
    # made a 40-row prediction take 125 ms instead of 35 (see statsbot_nb.blasenv)
    assert capped["threads"] in (None, 1)
    if cores > 1 and not any(os.environ.get(v) for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")):
        free = await ProcessRunner().run("jobfuncs:blas_threads_job", {}, JobSettings(home=tmp_path), lambda *a: None)
        assert all(n == cores for n in free["blas"])  # None: every core, as the libraries would by default
    from statsbot_nb.worker import Worker

    worker = Worker("t", "ws://127.0.0.1:1/ws", settings=JobSettings(home=tmp_path), max_jobs=2, journal=False)
    assert worker.settings.blas_threads == max(1, cores // 2)
    own = JobSettings(home=tmp_path, blas_threads=cores)
    assert Worker("t", "ws://127.0.0.1:1/ws", settings=own, journal=False).settings.blas_threads == cores


def test_a_handler_called_in_this_process_leaves_its_threads_alone(tmp_path: Path):
    from threadpoolctl import threadpool_info

    from statsbot_nb.context import JobContext

    before = [info["num_threads"] for info in threadpool_info()]
    JobContext(JobSettings(home=tmp_path, blas_threads=1)).limit_threads()  # a notebook or test calling a handler
    assert [info["num_threads"] for info in threadpool_info()] == before
