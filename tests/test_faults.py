"""Fault tests on the real worker: real sockets, a real server, and a proxy that breaks the link on purpose.

Each scenario checks the delivery promise end to end:

- every job the server queued gets exactly one stored result (nothing lost);
- no job ran twice: the ``mark`` test job appends one line per run to a marker file, counted per job id;
- the worker answered each job once (one finished/failed event per job; re-sends of a stored result are
  re-deliveries of the same frame, counted separately from the result frames the server received);
- the worker never crashed (its task kept running, no error logged) and, once the link is healthy again,
  it ends connected, idle and with ``pending_results == 0``.

Scenarios: (a) seeded chaos through :class:`~faultproxy.FaultProxy` (cuts by RST/FIN, cuts at a random byte,
stalls, delays, fragmenting) while jobs stream in; (b) 1,000 jobs queued at once; (c) the server restarting
mid-job; (d) the token rejected mid-session.

Figures: each test prints a ``FIGURES`` line. ``PYTHONPATH=. python3 tests/test_faults.py`` runs this file
and prints them as a table for README's reliability section.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from faultproxy import Chaos, FaultProxy
from legacy_server import LegacyServer
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from statsbot_nb import protocol
from statsbot_nb.events import JobFailed, JobFinished, StateChanged
from statsbot_nb.retry import Backoff
from statsbot_nb.server import JobServer
from statsbot_nb.server.core import JobHandle, WorkerInfo
from statsbot_nb.worker import Worker

#: Reconnect quickly (the proxy cuts often) but still back off when cuts come during the handshake.
CHAOS_BACKOFF = Backoff(initial=0.02, factor=2.0, cap=0.3, jitter=0.5)
#: Keepalive short enough that a stall longer than ~0.6 s is noticed and the worker reconnects.
WORKER_LINK = {"ping_interval": 0.3, "ping_timeout": 0.6, "open_timeout": 3.0, "auth_timeout": 3.0}
#: Worker states that mean "alive"; anything else during a scenario is a failure.
ALIVE_STATES = {"connecting", "reconnecting", "connected"}
#: Where figures go when tests/test_faults.py runs as a script.
FIGURES_ENV = "STATSBOT_FAULT_FIGURES"


class CountingServer(JobServer):
    """The reference server, also counting every result frame it receives per job id (re-sends included).

    The reference server stores the first result of a job and drops later ones; counting frames as they
    arrive shows how often the worker sent a result again (after a lost ack, a re-dispatch or a restart).
    """

    def __init__(
        self, *args: Any, ping_timeout: float | None = 20.0, close_timeout: float | None = 10.0, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.ping_timeout, self.close_timeout = ping_timeout, close_timeout
        self.result_frames: Counter[str] = Counter()

    async def start(self) -> CountingServer:
        """Start listening, as :meth:`JobServer.start`, with this test's keepalive and close timeouts.

        The reference server fixes websockets' defaults (a dead link is noticed after 20 s of silence and a
        10 s close handshake); the black-hole test needs the server to notice within a second or two.
        """
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            max_size=protocol.MAX_FRAME_BYTES,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            close_timeout=self.close_timeout,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _on_frame(self, info: WorkerInfo, frame: str | bytes) -> None:
        try:
            msg = protocol.parse_worker_message(frame)
        except protocol.ProtocolError:
            msg = None
        if isinstance(msg, protocol.Result):
            self.result_frames[msg.job_id] += 1
        await super()._on_frame(info, frame)

    def adopt(self, old: JobServer, *, sessions: bool = True) -> None:
        """Take over ``old``'s durable state, as a server with a database would after a restart.

        The reference server keeps tokens, sessions and jobs in memory only, so a restart is modelled by a
        new server on the same port that is handed the old one's tokens, (optionally) its session tokens,
        and every job without a result, re-queued under the same job id.
        """
        self._tokens.update(old._tokens)
        if sessions:
            self._sessions.update(old._sessions)
        for handle in old._jobs.values():
            if not handle.done:
                self.submit(handle.action, handle.params, job_id=handle.job_id, user_id=handle.user_id)


def runs_per_job(marker: Path) -> Counter[str]:
    """How many times each job id ran (one marker line per run)."""
    if not marker.exists():
        return Counter()
    return Counter(line.split()[0] for line in marker.read_text(encoding="utf-8").splitlines() if line.strip())


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str | Callable[[], str]) -> None:
    """Wait for ``predicate`` to hold (checked every 20 ms); fail with ``what`` after ``timeout`` s.

    ``what`` may be a callable, called at the timeout so the message shows the state at that moment.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for: {what() if callable(what) else what}")
        await asyncio.sleep(0.02)


async def all_stored(handles: Iterable[JobHandle], timeout: float) -> None:
    """Wait until every handle has a stored result."""
    pending = [h for h in handles if not h.done]
    if pending:
        await asyncio.wait_for(asyncio.gather(*(asyncio.shield(h.future) for h in pending)), timeout)


class Watch:
    """Records a worker's states and its answers (one finished/failed event per job it answered)."""

    def __init__(self, worker: Worker) -> None:
        self.states: list[StateChanged] = []
        self.answers: Counter[str] = Counter()
        worker.events.subscribe(self._on_event)

    def _on_event(self, event: object) -> None:
        if isinstance(event, StateChanged):
            self.states.append(event)
        elif isinstance(event, (JobFinished, JobFailed)):
            self.answers[event.job_id] += 1

    @property
    def reconnects(self) -> int:
        """Connections after the first."""
        return max(0, sum(1 for s in self.states if s.state == "connected") - 1)


def refused_attempts(watch: Watch) -> int:
    """Reconnect attempts that found nothing listening."""
    return sum(1 for s in watch.states if s.retry_in is not None and "Nothing is accepting" in s.message)


def _benign(record: logging.LogRecord) -> bool:
    """websockets' keepalive racing a close it did not expect (logged as an error, harmless).

    websockets 17 logs "keepalive ping failed" when its keepalive task sends a ping on a connection that
    is already closing and ``ping()`` raises ``ConnectionClosed`` (its source says this cannot happen). The
    connection is going away anyway and the worker reconnects; nothing of the worker's is involved.
    """
    exc = record.exc_info[1] if record.exc_info else None
    return record.getMessage() == "keepalive ping failed" and isinstance(exc, ConnectionClosed)


def logged_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Every error logged during the test (worker, job runners, websockets, asyncio, the proxy's tasks).

    An unexpected exception in any task ends up here ("Task exception was never retrieved", "connection
    handler failed", "The worker stopped on an unexpected error"): a scenario must log none, except the
    websockets race described in :func:`_benign`.
    """
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR and not _benign(r)]


def check_exactly_once(
    server: CountingServer,
    handles: list[JobHandle],
    marker: Path,
    watch: Watch,
    *,
    must_run: bool = True,
    elsewhere: Iterable[str] = (),
) -> dict[str, int]:
    """Assert the delivery promise for ``handles`` and return the counts for the figures.

    ``elsewhere``: ids of jobs that ran legitimately but were queued on another server (before a restart).
    """
    runs = runs_per_job(marker)
    ids = {h.job_id for h in handles}
    lost = [h.job_id for h in handles if not h.done]
    duplicated = {j: n for j, n in runs.items() if n > 1}
    twice_answered = {j: n for j, n in watch.answers.items() if j in ids and n > 1}
    unknown_runs = set(runs) - ids - set(elsewhere)
    assert not lost, f"{len(lost)} job(s) never got a stored result: {lost[:5]}"
    assert not duplicated, f"job(s) ran more than once: {duplicated}"
    assert not twice_answered, f"the worker answered job(s) more than once: {twice_answered}"
    assert not unknown_runs, f"runs of jobs nobody queued: {unknown_runs}"
    if must_run:
        succeeded = [h.job_id for h in handles if h.future.result().success]
        assert all(runs[j] == 1 for j in succeeded), "a successful job left no marker line"
    for h in handles:
        assert server.result_frames[h.job_id] >= 1, f"{h.job_id} stored without a result frame"
    return {
        "jobs": len(handles),
        "stored": sum(1 for h in handles if h.done),
        "lost": len(lost),
        "duplicated_runs": sum(n - 1 for n in duplicated.values()),
        "result_frames": sum(server.result_frames[j] for j in ids),
        "resent_results": sum(server.result_frames[j] - 1 for j in ids),
        "duplicates_dropped_by_server": server.duplicate_results,
    }


def report(scenario: str, figures: dict[str, Any]) -> None:
    """Print one ``FIGURES`` line (and append it to $STATSBOT_FAULT_FIGURES when set)."""
    print(f"\nFIGURES {scenario}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
    path = os.environ.get(FIGURES_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"scenario": scenario, **figures}) + "\n")


async def settle_healthy(worker: Worker, task: asyncio.Task[None], timeout: float = 20.0) -> None:
    """Once the link is healthy: the worker is connected, idle, every result confirmed, and still running."""
    await wait_until(
        lambda: worker.state == "connected" and worker.pending_results == 0,
        timeout,
        lambda: (
            f"connected with no pending result (now {worker.state}, {worker.pending_results} pending: "
            f"{worker.status_message})"
        ),
    )
    await worker.wait_idle(timeout)
    assert not task.done(), f"the worker task ended: {worker.state}: {worker.status_message}"
    assert worker.fatal_error is None and worker.rejection is None


# ---------------------------------------------------------------- (a) chaos


@pytest.mark.parametrize("seed", [11, 22, 33])
async def test_chaos_every_job_answered_once(
    seed: int, make_worker: Callable[..., Worker], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """200 quick jobs stream in while the proxy cuts, stalls, delays and fragments at random (seeded)."""
    caplog.set_level(logging.WARNING)
    jobs = 200
    marker = tmp_path / "runs.txt"
    rng = random.Random(seed)
    async with CountingServer(ping_interval=0.5) as server, FaultProxy(server.port, seed=seed) as proxy:
        worker = make_worker(proxy.url, server.issue_token(), backoff=CHAOS_BACKOFF, **WORKER_LINK)
        watch = Watch(worker)
        task = worker.start()
        await worker.wait_connected(timeout=10)
        started = time.monotonic()
        proxy.start_chaos(Chaos(seed))
        handles: list[JobHandle] = []
        for _ in range(jobs):
            # one job in ten runs in its own process, the rest in threads; each takes 1-20 ms
            action = "mark_proc" if rng.random() < 0.1 else "mark"
            handles.append(server.submit(action, {"marker": str(marker), "seconds": rng.uniform(0.001, 0.02)}))
            await asyncio.sleep(rng.uniform(0.0, 0.03))
            assert not task.done(), f"the worker task ended: {worker.status_message}"
        # keep the chaos on until every job is answered (or 8 s have passed), then let the link heal
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            await all_stored(handles, timeout=max(0.1, 8.0 - (time.monotonic() - started)))
        await proxy.heal()
        chaos_seconds = time.monotonic() - started
        await all_stored(handles, timeout=20)
        await settle_healthy(worker, task)
        wall = time.monotonic() - started
        assert {s.state for s in watch.states} <= ALIVE_STATES, [s.state for s in watch.states]
        figures = check_exactly_once(server, handles, marker, watch)
        assert all(h.future.result().success for h in handles), [
            h.future.result().error for h in handles if not h.future.result().success
        ][:3]
        assert logged_errors(caplog) == []
        assert proxy.stats.cuts >= 3, f"the chaos hardly cut anything: {proxy.stats}"
    report(
        f"chaos seed={seed}",
        {
            **figures,
            "cuts": proxy.stats.cuts,
            "cuts_mid_stream": proxy.stats.cuts_mid_stream,
            "stalls": proxy.stats.stalls,
            "fragmented_chunks": proxy.stats.fragmented_chunks,
            "delayed_chunks": proxy.stats.delayed_chunks,
            "reconnects": watch.reconnects,
            "chaos_s": round(chaos_seconds, 1),
            "wall_s": round(wall, 1),
        },
    )


@pytest.mark.parametrize("seed", [5, 6])
async def test_chaos_todays_protocol_confirm_by_ping(
    seed: int, make_worker: Callable[..., Worker], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The same chaos against today's protocol: no acks, so results are confirmed by ping/pong.

    Today's server never re-sends a job whose worker dropped; after the link heals the test re-sends every
    job still without a result, under the same id (what a re-queueing server does). The worker must run
    each job once, re-send results the server may have missed, and end with nothing pending.
    """
    caplog.set_level(logging.WARNING)
    jobs = 120
    marker = tmp_path / "runs.txt"
    rng = random.Random(seed)
    async with LegacyServer() as server, FaultProxy(server.port, seed=seed) as proxy:
        worker = make_worker(proxy.url, server.token, backoff=CHAOS_BACKOFF, **WORKER_LINK)
        watch = Watch(worker)
        task = worker.start()
        await worker.wait_connected(timeout=10)
        started = time.monotonic()
        proxy.start_chaos(Chaos(seed))
        params = {"marker": str(marker), "seconds": 0.005}
        ids = [f"job_legacy{seed}_{i:04d}" for i in range(jobs)]
        for job_id in ids:
            with contextlib.suppress(ConnectionClosed):  # cut while sending: re-sent after the heal
                await server.send_job("mark", params, job_id=job_id)
            await asyncio.sleep(rng.uniform(0.0, 0.03))
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            await server.wait_for(lambda: all(j in server.results for j in ids), timeout=2.0)
        await proxy.heal()
        chaos_seconds = time.monotonic() - started
        resent_jobs = 0
        for _ in range(3):
            missing = [j for j in ids if j not in server.results]
            if not missing:
                break
            await wait_until(lambda: worker.state == "connected", 10, "the worker to reconnect")
            for job_id in missing:
                with contextlib.suppress(ConnectionClosed):
                    await server.send_job("mark", params, job_id=job_id)
            resent_jobs += len(missing)
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await server.wait_for(lambda: all(j in server.results for j in ids), timeout=10)
        await settle_healthy(worker, task)
        runs = runs_per_job(marker)
        assert [j for j in ids if j not in server.results] == []
        assert {j: n for j, n in runs.items() if n != 1} == {}, "every job runs exactly once"
        assert set(runs) == set(ids)
        assert all(server.results[j][0]["success"] for j in ids)
        assert {j: n for j, n in watch.answers.items() if n != 1} == {}
        assert server.violations == []
        assert {s.state for s in watch.states} <= ALIVE_STATES
        assert logged_errors(caplog) == []
        assert proxy.stats.cuts >= 3, f"the chaos hardly cut anything: {proxy.stats}"
        frames = sum(len(server.results[j]) for j in ids)
    report(
        f"chaos, today's protocol (ping-confirmed) seed={seed}",
        {
            "jobs": jobs,
            "stored": jobs,
            "lost": 0,
            "duplicated_runs": 0,
            "result_frames": frames,
            "resent_results": frames - jobs,
            "jobs_resent_by_server": resent_jobs,
            "cuts": proxy.stats.cuts,
            "cuts_mid_stream": proxy.stats.cuts_mid_stream,
            "stalls": proxy.stats.stalls,
            "fragmented_chunks": proxy.stats.fragmented_chunks,
            "reconnects": watch.reconnects,
            "chaos_s": round(chaos_seconds, 1),
            "wall_s": round(time.monotonic() - started, 1),
        },
    )


# ---------------------------------------------------------------- (b) 1,000 jobs at once


@pytest.mark.parametrize("cut", [False, True], ids=["clean", "cut_mid_flood"])
async def test_thousand_jobs_queued_at_once(
    cut: bool, make_worker: Callable[..., Worker], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """1,000 jobs: 500 queued before the worker connects, 500 while it connects; each answered once.

    ``cut_mid_flood`` goes through the proxy, which resets the connection at the 20,000th byte (of about
    72,000: frames are compressed), in the middle of the burst of job frames; the server re-queues what it
    had not stored and sends it again.
    """
    caplog.set_level(logging.WARNING)
    marker = tmp_path / "runs.txt"
    async with CountingServer() as server, FaultProxy(server.port) as proxy:
        params = {"marker": str(marker), "seconds": 0.0}
        handles = [server.submit("mark", params) for _ in range(500)]
        if cut:
            proxy.cut_after(20_000, "rst")
        worker = make_worker(proxy.url if cut else server.url, server.issue_token(), backoff=CHAOS_BACKOFF)
        watch = Watch(worker)
        started = time.monotonic()
        task = worker.start()
        handles += [server.submit("mark", params) for _ in range(500)]
        await all_stored(handles, timeout=60)
        wall = time.monotonic() - started
        await settle_healthy(worker, task)
        figures = check_exactly_once(server, handles, marker, watch)
        results = [h.future.result() for h in handles]
        refused = [r for r in results if not r.success]
        # the worker holds at most MAX_ACTIVE_JOBS (256) jobs; the reference server pushes all 1,000 at
        # once, so the rest are answered at once with a sentence, and never run
        assert all("already has" in (r.error or "") for r in refused), refused[:3]
        assert all(runs_per_job(marker)[r.job_id] == 0 for r in refused)
        if cut:
            assert proxy.stats.cuts_mid_stream == 1 and watch.reconnects >= 1
        else:
            assert figures["resent_results"] == 0 and server.duplicate_results == 0
        assert logged_errors(caplog) == []
    report(
        "1000 jobs queued at once" + (", cut mid-flood" if cut else ""),
        {
            **figures,
            "succeeded": len(results) - len(refused),
            "refused_busy": len(refused),
            "cuts": proxy.stats.cuts,
            "reconnects": watch.reconnects,
            "wall_s": round(wall, 2),
        },
    )


# ---------------------------------------------------------------- black hole


async def test_black_holed_connection_mid_job(
    make_worker: Callable[..., Worker], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The link goes silent mid-job (no RST, no FIN): the worker's keepalive notices and it reconnects.

    The running job's result reaches the server over the new connection; the server drops the dead one when
    its own keepalive gives up, and a job submitted afterwards is answered. Nothing runs twice.
    """
    caplog.set_level(logging.WARNING)
    marker = tmp_path / "runs.txt"
    async with (
        CountingServer(ping_interval=0.5, ping_timeout=1.0, close_timeout=1.0) as server,
        FaultProxy(server.port) as proxy,
    ):
        worker = make_worker(proxy.url, server.issue_token(), backoff=CHAOS_BACKOFF, **WORKER_LINK)
        watch = Watch(worker)
        task = worker.start()
        await worker.wait_connected(timeout=10)
        running = server.submit("mark", {"marker": str(marker), "seconds": 1.0})
        await wait_until(lambda: runs_per_job(marker)[running.job_id] == 1, 10, "the job to start")
        frozen_at = time.monotonic()
        assert proxy.freeze() == 1
        await asyncio.wait_for(asyncio.shield(running.future), 30)
        to_result = time.monotonic() - frozen_at
        await wait_until(lambda: len(server.workers) == 1, 15, "the server to drop the dead connection")
        after = server.submit("mark", {"marker": str(marker)})
        await asyncio.wait_for(asyncio.shield(after.future), 10)
        to_next = time.monotonic() - frozen_at
        await settle_healthy(worker, task)
        figures = check_exactly_once(server, [running, after], marker, watch)
        assert running.future.result().success and after.future.result().success
        assert proxy.stats.connections == 2
        assert logged_errors(caplog) == []
    report(
        "black-holed connection mid-job",
        {**figures, "to_result_s": round(to_result, 2), "to_next_job_s": round(to_next, 2)},
    )


async def test_black_hole_noticed_within_keepalive(make_worker: Callable[..., Worker]) -> None:
    """Once the link is silent, the worker is back on a new connection within ping_interval + ping_timeout + 1 s."""
    async with CountingServer() as server, FaultProxy(server.port) as proxy:
        worker = make_worker(proxy.url, server.issue_token(), backoff=CHAOS_BACKOFF, **WORKER_LINK)
        worker.start()
        await worker.wait_connected(timeout=10)
        proxy.freeze()
        bound = WORKER_LINK["ping_interval"] + WORKER_LINK["ping_timeout"] + 1.0
        await wait_until(
            lambda: proxy.stats.connections == 2 and worker.state == "connected",
            bound,
            lambda: f"a new connection (state {worker.state}: {worker.status_message})",
        )


# ---------------------------------------------------------------- (c) server restart mid-job


@pytest.mark.parametrize(
    "case",
    ["finishes_after_restart", "finishes_during_outage", "sessions_lost"],
)
async def test_server_restart_mid_job(
    case: str, make_worker: Callable[..., Worker], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The server stops while a job runs and a new one comes up on the same port with the old state.

    ``finishes_after_restart``: the job is still running when the new server is up; its result goes to the
    new server. ``finishes_during_outage``: the job ends while no server listens; the worker keeps the
    result and sends it after reconnecting. ``sessions_lost``: the new server kept tokens and jobs but not
    session tokens; the worker's session token is refused once and it falls back to its original token,
    which both servers accept again as today's StatsBot server does (reusable until it expires).
    """
    caplog.set_level(logging.WARNING)
    marker = tmp_path / "runs.txt"
    seconds = 0.4 if case == "finishes_during_outage" else 2.0
    reusable = case == "sessions_lost"  # a one-time token could not bring the worker back
    old = await CountingServer(one_time_tokens=not reusable).start()
    port = old.port
    new: CountingServer | None = None
    try:
        worker = make_worker(old.url, old.issue_token(), backoff=CHAOS_BACKOFF, **WORKER_LINK)
        watch = Watch(worker)
        task = worker.start()
        await worker.wait_connected(timeout=10)
        before = old.submit("mark", {"marker": str(marker)})
        await asyncio.wait_for(asyncio.shield(before.future), 10)
        handle = old.submit("mark_proc", {"marker": str(marker), "seconds": seconds})
        job_id = handle.job_id
        await wait_until(lambda: runs_per_job(marker)[job_id] == 1, 20, "the job to start")
        await old.close()  # the server goes down mid-job: connections closed, nothing listens
        down_at = time.monotonic()
        # stay down until the worker has been refused twice (nothing listens on the port)
        await wait_until(lambda: refused_attempts(watch) >= 2, 10, "two refused reconnect attempts")
        if case == "finishes_during_outage":
            await wait_until(lambda: worker.jobs[job_id].finished, 10, "the job to end during the outage")
            assert worker.pending_results == 1
        else:
            assert not worker.jobs[job_id].finished
        new = CountingServer(port=port, one_time_tokens=not reusable)
        new.adopt(old, sessions=case != "sessions_lost")
        await new.start()
        up_at = time.time()
        downtime = time.monotonic() - down_at
        result = await asyncio.wait_for(asyncio.shield(new.job(job_id).future), 20)
        assert result.success and result.data is not None and result.data["job_id"] == job_id
        if case != "finishes_during_outage":
            ended = worker.jobs[job_id].ended_at
            assert ended is not None and ended > up_at, "the job was to end after the restart"
        await settle_healthy(worker, task)
        assert runs_per_job(marker)[job_id] == 1, "the job ran again after the restart"
        assert watch.answers[job_id] == 1
        assert new.rejected_auths == (1 if case == "sessions_lost" else 0)
        assert {s.state for s in watch.states} <= ALIVE_STATES
        assert logged_errors(caplog) == []
        figures = check_exactly_once(new, [new.job(job_id)], marker, watch, elsewhere=[before.job_id])
    finally:
        await old.close()
        if new is not None:
            await new.close()
    report(
        f"server restart ({case})",
        {
            **figures,
            "downtime_s": round(downtime, 2),
            "refused_attempts": refused_attempts(watch),
            "reconnects": watch.reconnects,
            "rejected_auths": new.rejected_auths,
        },
    )


# ---------------------------------------------------------------- (d) token rejected mid-session


async def test_token_revoked_mid_session_reference(
    make_worker: Callable[..., Worker], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Protocol 2: the server revokes the token and the session token, then the link is cut mid-job.

    The worker tries its session token (refused), falls back once to its original token (refused), and
    stops in state "rejected" with a sentence that says what to do. It never retries in a loop; the job that
    was running is cancelled, not run again.
    """
    caplog.set_level(logging.WARNING)
    marker = tmp_path / "runs.txt"
    async with CountingServer() as server, FaultProxy(server.port) as proxy:
        worker = make_worker(proxy.url, server.issue_token(), backoff=CHAOS_BACKOFF, **WORKER_LINK)
        watch = Watch(worker)
        task = worker.start()
        await worker.wait_connected(timeout=10)
        done = [server.submit("mark", {"marker": str(marker)}) for _ in range(5)]
        await all_stored(done, timeout=10)
        await wait_until(lambda: worker.pending_results == 0, 5, "the acks")
        running = server.submit("mark", {"marker": str(marker), "seconds": 1.0})
        await wait_until(lambda: runs_per_job(marker)[running.job_id] == 1, 10, "the job to start")
        server.revoke_tokens()
        cut_at = time.monotonic()
        proxy.cut("rst")
        await asyncio.wait_for(asyncio.shield(task), 10)  # the worker ends by itself: it cannot spin
        to_rejected = time.monotonic() - cut_at
        assert worker.state == "rejected"
        assert "rejected the token" in worker.status_message and "/connect" in worker.status_message
        assert server.rejected_auths == 2, "session token once, then the original token once"
        assert proxy.stats.connections == 3
        assert worker.rejection is not None and worker.fatal_error is None
        assert to_rejected < 5
        states = [s.state for s in watch.states]
        assert states[-1] == "rejected" and "stopped" not in states
        figures = check_exactly_once(server, done, marker, watch, elsewhere=[running.job_id])
        runs = runs_per_job(marker)
        assert runs[running.job_id] == 1 and watch.answers[running.job_id] <= 1
        assert not running.done  # the server refused the worker before it could answer
        assert logged_errors(caplog) == []
    report(
        "token revoked mid-session (protocol 2)",
        {**figures, "auth_attempts_after_cut": server.rejected_auths, "to_rejected_s": round(to_rejected, 2)},
    )


async def test_token_revoked_mid_session_legacy(make_worker: Callable[..., Worker], tmp_path: Path) -> None:
    """Today's server (no session token): after the cut the token is refused once and the worker stops."""
    async with LegacyServer() as server, FaultProxy(server.port) as proxy:
        worker = make_worker(proxy.url, server.token, backoff=CHAOS_BACKOFF, **WORKER_LINK)
        task = worker.start()
        await worker.wait_connected(timeout=10)
        job_id = await server.send_job("list_models")
        await server.wait_result(job_id)
        await wait_until(lambda: worker.pending_results == 0, 5, "the confirming pong")
        server.valid_tokens.clear()
        proxy.cut("fin")
        await asyncio.wait_for(asyncio.shield(task), 10)
        assert worker.state == "rejected" and "/connect" in worker.status_message
        assert len(server.auths) == 2 and proxy.stats.connections == 2
        assert len(server.results[job_id]) == 1
        assert server.violations == []


# ---------------------------------------------------------------- figures as a table


def _print_table(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    keys = ["scenario", "jobs", "lost", "duplicated_runs", "resent_results", "cuts", "stalls", "reconnects"]
    keys += ["wall_s"]
    print("\n| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row.get(k, "")) for k in keys) + " |")
    print("\nAll figures:")
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "figures.jsonl"
        os.environ[FIGURES_ENV] = str(out)
        here = Path(__file__).resolve()
        code = pytest.main([str(here), "-q", "-p", "no:cacheprovider", "--rootdir", str(here.parent.parent)])
        if out.exists():
            _print_table(out)
    sys.exit(int(code))
