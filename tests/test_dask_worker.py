"""The Dask switch end to end (issue 14): the real ``statsbot-worker`` process against a real
:class:`~statsbot_nb.server.JobServer`, with a ``LocalCluster`` of its own or with a cluster of real
``dask scheduler`` / ``dask worker`` processes that the test starts, kills, stops and watches.

What must hold: a job trains on the cluster and says so, a job that cannot runs here with a sentence, the
cluster dies with the worker; a cluster that dies or stalls mid-job gives a failed result with a sentence
within a bounded time; a cancel (or the job's time limit) stops the cluster's work."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from jobenv import JobEnv, job_env
from test_cli import SCRIPT, _env

from statsbot_nb.context import JobContext
from statsbot_nb.errors import JobError
from statsbot_nb.server import JobServer

pytestmark = pytest.mark.extra("dask")

FEATURES = ["x1", "x2", "city"]


def write_table(path: Path, n: int, seed: int = 1) -> Path:
    """``n`` rows of two numbers and a city, and a target ``y`` linear in them."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n) * 3, "city": rng.choice(list("abcde"), n)})
    df["y"] = 2 * df.x1 - df.x2 + df.city.map(dict(zip("abcde", range(5), strict=True))) + rng.normal(size=n) * 0.1
    df.to_csv(path, index=False)
    return path


def train_params(path: Path, model_type: str = "linear") -> dict[str, Any]:
    return {
        "file_path": str(path),
        "target_column": "y",
        "feature_columns": FEATURES,
        "model_type": model_type,
        "task_type": "regression",
    }


class DaskProcs:
    """A cluster of this test's own: ``dask scheduler`` and ``dask worker --no-nanny`` processes, each in a
    session of its own so a kill takes exactly it; all killed on exit."""

    def __init__(self, tmp: Path, workers: int = 2) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.file = tmp / "scheduler.json"
        self.scheduler = self._spawn("distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0")
        deadline = time.monotonic() + 60
        while not self.file.exists() or not self.file.read_text().strip():
            assert time.monotonic() < deadline, "the dask scheduler did not start within 60 s"
            time.sleep(0.1)
        self.address: str = json.loads(self.file.read_text())["address"]
        self.workers = [
            self._spawn("distributed.cli.dask_worker", "--nthreads", "1", "--no-nanny", "--no-dashboard")
            for _ in range(workers)
        ]
        if workers:
            with self.observer() as client:
                client.wait_for_workers(workers, timeout=60)

    def _spawn(self, module: str, *args: str) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", module, "--scheduler-file", str(self.file), *args]
        if module.endswith("dask_scheduler"):
            command.extend(["--dashboard-address", ":0"])
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    @contextlib.contextmanager
    def observer(self) -> Iterator[Any]:
        """A second client, to look at the scheduler while a job's client works."""
        from distributed import Client

        with Client(self.address, timeout=30, set_as_default=False) as client:
            yield client

    def kill(self, *procs: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)

    def close(self) -> None:
        self.kill(self.scheduler, *self.workers)
        for proc in (self.scheduler, *self.workers):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGCONT)
            proc.wait(10)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[DaskProcs]:
    cluster = DaskProcs(tmp_path)
    try:
        yield cluster
    finally:
        cluster.close()


def scheduler_tasks(client: Any) -> int:
    return int(client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)))


def executing(client: Any) -> int:
    return sum(client.run(lambda dask_worker: dask_worker.state.executing_count).values())


async def eventually(check: Any, timeout: float, what: str) -> float:
    """Seconds until ``check()`` (run in a thread) is true; fails the test past ``timeout``."""
    started = time.monotonic()
    while not await asyncio.to_thread(check):
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout:g} s"
        await asyncio.sleep(0.2)
    return time.monotonic() - started


class Worker:
    """The ``statsbot-worker`` console script as a user starts it, connected to ``server``."""

    def __init__(self, server: JobServer, home: Path, data: Path, *args: str) -> None:
        self.server, self.home, self.data, self.args = server, home, data, args
        self.proc: asyncio.subprocess.Process | None = None
        self.out = self.err = ""

    async def __aenter__(self) -> Worker:
        assert SCRIPT, "the statsbot-worker console script is not installed (pip install -e .)"
        token = self.server.issue_token()
        self.proc = await asyncio.create_subprocess_exec(
            SCRIPT,
            *["--token", token, "--ws-url", self.server.url, "--allow", str(self.data), *self.args],
            env=_env(self.home),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        await self.server.wait_for_worker(timeout=120)
        return self

    def descendants(self) -> list[Any]:
        import psutil

        assert self.proc is not None
        return psutil.Process(self.proc.pid).children(recursive=True)

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
        stdout, stderr = await asyncio.wait_for(self.proc.communicate(), 60)
        self.out, self.err = stdout.decode(), stderr.decode()
        return int(self.proc.returncode or 0)

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            try:
                await self.stop()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def command(proc: Any) -> str:
    """A process's command line ('' for one that ended meanwhile, or a zombie: a job process being reaped)."""
    import psutil

    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


@pytest.fixture
async def server() -> AsyncIterator[JobServer]:
    async with JobServer() as running:
        yield running


@pytest.fixture
def data(home: Path) -> Path:
    folder = home.parent / "data"
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400,000 rows (16 MB, one partition): some seconds of work for each pass over it on the cluster."""
    return write_table(tmp_path_factory.mktemp("big") / "big.csv", 400_000)


async def test_a_local_cluster_trains_says_so_and_ends_with_the_worker(server: JobServer, home: Path, data: Path):
    import psutil

    table = write_table(data / "t.csv", 3000)
    async with Worker(server, home, data, "--dask-local", "2", "-v") as worker:
        linear = await server.run_job("train", train_params(table), timeout=300)
        assert linear.success, linear.error
        meta = json.loads((home / "models" / linear.data["model_id"] / "metadata.json").read_text())
        assert meta["trained_on"]["where"] == "dask" and meta["trained_on"]["workers"] == 2
        assert meta["trained_on"]["rows"] == 3000
        forest = await server.run_job("train", train_params(table, "random_forest"), timeout=300)
        assert forest.success, forest.error
        assert any("not on the Dask cluster" in n and "xgboost_*" in n for n in forest.data["notes"])
        meta = json.loads((home / "models" / forest.data["model_id"] / "metadata.json").read_text())
        assert meta.get("trained_on", {}).get("where") != "dask"
        spawned = worker.descendants()
        dask_procs = [p for p in spawned if "spawn_main" in command(p)]
        assert len(dask_procs) >= 2, [command(p) for p in spawned]  # the LocalCluster's worker processes
        assert await worker.stop() == 0, worker.err
    lines = worker.out.splitlines()
    job_lines = [line for line in lines if " ok     train " in line]  # the job log's line of each job
    assert any(linear.data["model_id"] in line and "(on the Dask cluster)" in line for line in job_lines), worker.out
    assert any(forest.data["model_id"] in line and "(on the Dask cluster)" not in line for line in job_lines)
    assert "Traceback" not in worker.out + worker.err
    _, alive = psutil.wait_procs(spawned, timeout=20)
    assert not alive, f"left running after the worker stopped: {[command(p) for p in alive]}"


async def test_a_scheduler_killed_mid_job_gives_a_failed_result(
    server: JobServer, home: Path, data: Path, procs: DaskProcs, big: Path
):
    async with Worker(server, home, data, "--allow", str(big.parent), "--dask-scheduler", procs.address):
        killed: list[float] = []

        def on_progress(_handle: Any, _percent: float, message: str) -> None:
            if message.startswith("Types: partition") and not killed:  # the first pass is over, the next began
                procs.kill(procs.scheduler)
                killed.append(time.monotonic())

        handle = server.submit("train", train_params(big), on_progress=on_progress)
        result = await asyncio.wait_for(asyncio.shield(handle.future), 120)
    assert killed, "the job ended before the scheduler could be killed mid-job"
    assert result.success is False and "went away" in result.error, result.error
    assert time.monotonic() - killed[0] < 30


@pytest.mark.parametrize("how", ["cancel", "time limit"])
async def test_a_stopped_job_stops_the_clusters_work(
    server: JobServer, home: Path, data: Path, procs: DaskProcs, big: Path, how: str
):
    """The worker kills the job's process (a cancel, or past ``--max-job-seconds``); its client's
    connection closes and the scheduler drops its tasks; the workers finish at most what they were running."""
    limit = ["--max-job-seconds", "8"] if how == "time limit" else []
    with procs.observer() as watcher:
        async with Worker(server, home, data, "--allow", str(big.parent), "--dask-scheduler", procs.address, *limit):
            handle = server.submit("train", train_params(big))
            await eventually(lambda: scheduler_tasks(watcher) > 0, 60, "the job's tasks on the scheduler")
            if how == "cancel":
                assert await server.cancel(handle.job_id)
            result = await asyncio.wait_for(asyncio.shield(handle.future), 120)
            assert result.success is False, "the job finished before it could be stopped"
            if how == "cancel":
                assert result.cancelled, result
            else:
                assert "longer than 8 s" in str(result.error), result
            await eventually(lambda: scheduler_tasks(watcher) == 0, 5, "the scheduler still holds the job's tasks")
            await eventually(lambda: executing(watcher) == 0, 30, "the cluster's workers still run the job's work")


# ---------------------------------------------------------------- the handler, with a short dask_timeout


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> JobEnv:
    return job_env(tmp_path, monkeypatch)


def train_here(
    env: JobEnv, address: str, table: Path, on_message: Any = None, timeout: float = 3.0, **params: Any
) -> float:
    """The ``train`` handler against ``address`` with ``dask_timeout=timeout``; seconds until it raised."""
    from statsbot_nb.handlers.train import train

    def sink(_percent: float, message: str, _stage: str) -> None:
        if on_message is not None:
            on_message(message)

    settings = replace(env.settings, dask_scheduler=address, dask_timeout=timeout)
    started = time.monotonic()
    with pytest.raises(JobError) as raised:
        train({**train_params(table), **params}, JobContext(settings, sink, min_interval=0))
    elapsed = time.monotonic() - started
    env.events.append((elapsed, str(raised.value), "raised"))
    return elapsed


def test_workers_killed_mid_job_end_it_after_the_timeout(env: JobEnv, tmp_path: Path):
    table = write_table(env.data / "t.csv", 50_000)
    cluster = DaskProcs(tmp_path)
    killed: list[float] = []

    def kill(message: str) -> None:
        if message.startswith("Types: partition") and not killed:
            cluster.kill(*cluster.workers)
            killed.append(time.monotonic())

    try:
        train_here(env, cluster.address, table, kill)
    finally:
        cluster.close()
    assert killed
    assert "has had no workers for 3 s" in env.events[-1][1]
    assert time.monotonic() - killed[0] < 20


@pytest.mark.extra("xgboost")
def test_workers_killed_mid_boosting_end_it_after_the_timeout(env: JobEnv, tmp_path: Path):
    """xgboost.dask's fit waits on the cluster's collective: without a watch it waited forever."""
    table = write_table(env.data / "t.csv", 20_000)
    cluster = DaskProcs(tmp_path)
    killed: list[float] = []

    def kill(message: str) -> None:
        if message.startswith("Boosting round") and not message.startswith("Boosting round 0/") and not killed:
            cluster.kill(*cluster.workers)
            killed.append(time.monotonic())

    try:
        train_here(
            env,
            cluster.address,
            table,
            kill,
            model_type="xgboost_regression",
            hyperparameters={"n_estimators": 20_000, "max_depth": 8},
        )
    finally:
        cluster.close()
    assert killed, env.events
    assert "has had no workers for 3 s" in env.events[-1][1] or "went away" in env.events[-1][1], env.events[-1]
    assert time.monotonic() - killed[0] < 30


def test_a_cluster_without_workers_fails_after_the_timeout(env: JobEnv, tmp_path: Path):
    table = write_table(env.data / "t.csv", 300)
    cluster = DaskProcs(tmp_path, workers=0)
    try:
        elapsed = train_here(env, cluster.address, table)
    finally:
        cluster.close()
    assert "has had no workers for 3 s" in env.events[-1][1] and "dask worker" in env.events[-1][1]
    assert 3 <= elapsed < 20


def test_a_scheduler_that_stops_answering_fails_after_the_timeout(env: JobEnv, tmp_path: Path):
    """A frozen scheduler (SIGSTOP: the connection stays open, nothing answers), as behind a network cut."""
    table = write_table(env.data / "t.csv", 50_000)
    cluster = DaskProcs(tmp_path)
    stopped: list[float] = []

    def freeze(message: str) -> None:
        if message.startswith("Types: partition") and not stopped:
            cluster.kill(cluster.scheduler, sig=signal.SIGSTOP)
            stopped.append(time.monotonic())

    try:
        train_here(env, cluster.address, table, freeze)
    finally:
        cluster.close()
    assert stopped
    assert "has not answered for 3 s" in env.events[-1][1], env.events[-1]
    assert time.monotonic() - stopped[0] < 25


def test_bounded_result_waits_for_a_live_cluster_and_not_for_an_empty_one(tmp_path: Path, procs: DaskProcs):
    """The helper other cluster jobs use for one future (prediction's parts, for example)."""
    from statsbot_nb.cluster.connect import bounded_result, open_client, watch_for

    with open_client(procs.address, 2.0) as client:
        slow = client.submit(time.sleep, 3, pure=False)  # longer than the bound: a live cluster is waited for
        assert bounded_result(slow, watch_for(client, procs.address)) is None
    empty = DaskProcs(tmp_path / "empty", workers=0)
    try:
        with open_client(empty.address, 2.0) as client:
            started = time.monotonic()
            with pytest.raises(JobError, match="has had no workers for 2 s"):
                bounded_result(client.submit(sum, [1, 2]), watch_for(client, empty.address, "prediction"))
            assert time.monotonic() - started < 15
    finally:
        empty.close()
