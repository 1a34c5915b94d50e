"""The real worker (driver, core, runners) against a strict stand-in for today's server and the reference server.

The core's decisions are tested without I/O in ``test_core.py``; these tests check that the whole worker
carries them out over real sockets. They wait for conditions, never for a guessed time, except where a
test shows that something does *not* happen.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from legacy_server import LegacyServer

from statsbot_nb.errors import TokenRejectedError
from statsbot_nb.events import JobProgress, StateChanged
from statsbot_nb.server import JobServer
from statsbot_nb.worker import Worker


async def until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Wait until ``condition()`` holds (polling the loop), or fail saying ``what`` never happened."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(0.02)


def running(worker: Worker, job_id: str) -> Callable[[], bool]:
    """A condition: ``job_id`` is running on ``worker``."""
    return lambda: job_id in worker.jobs and worker.jobs[job_id].status == "running"


async def test_connects_and_answers_list_models_and_unknown_action(legacy: LegacyServer, make_worker):
    worker = make_worker(legacy.url, legacy.token)
    worker.start()
    await worker.wait_connected(timeout=10)
    assert worker.state == "connected" and worker.user_id == 4242
    auth = legacy.auths[0]
    assert auth["type"] == "auth" and auth["token"] == legacy.token and auth["machine_id"] == "test-machine"

    listed = await legacy.wait_result(await legacy.send_job("list_models"))
    assert listed["success"] is True and listed["data"] == {"models": []}

    unknown = await legacy.wait_result(await legacy.send_job("make_coffee", {"x": 1}))
    assert unknown["success"] is False
    assert unknown["error"].startswith("Unknown action: make_coffee")
    assert "Traceback" not in unknown["error"]
    assert legacy.violations == []


async def test_results_are_strict_json(legacy: LegacyServer, make_worker):
    worker = make_worker(legacy.url, legacy.token)
    worker.start()
    result = await legacy.wait_result(await legacy.send_job("burn", {"seconds": 0.3}))
    assert result["success"] is True
    assert result["data"]["nan"] is None and result["data"]["inf"] is None
    assert legacy.violations == []


async def test_rejected_token_is_final_and_fast(legacy: LegacyServer, make_worker):
    worker = make_worker(legacy.url, "not-a-valid-token")
    states: list[str] = []
    worker.events.subscribe(lambda e: states.append(e.state) if isinstance(e, StateChanged) else None)
    started = time.monotonic()
    with pytest.raises(TokenRejectedError, match="/connect"):
        await asyncio.wait_for(worker.run(), 10)
    assert time.monotonic() - started < 5
    assert worker.state == "rejected"
    assert "rejected" in states
    await asyncio.sleep(0.5)  # an absence: give a wrong retry the time to show up
    assert len(legacy.auths) == 1, "a rejected token must not be retried"


async def test_wait_connected_raises_on_rejection(legacy: LegacyServer, make_worker):
    worker = make_worker(legacy.url, "wrong")
    worker.start()
    with pytest.raises(TokenRejectedError):
        await worker.wait_connected(timeout=10)


async def test_malformed_frames_are_skipped_and_bad_jobs_answered(legacy: LegacyServer, make_worker):
    worker = make_worker(legacy.url, legacy.token)
    worker.start()
    await worker.wait_connected(timeout=10)
    for frame in (
        "not json",
        "[1, 2]",
        '{"no_type": 1}',
        '{"type": "job"}',
        '{"type":"job","job_id":"../x"}',
        '{"type": "job", "job_id": "job_1", "action": "x", "params": NaN}',
        b"\xff\xfe",
    ):
        await legacy.send_raw(frame)
    await legacy.send_raw(
        json.dumps({"type": "job", "job_id": "job_badparams", "action": "list_models", "params": [1, 2]})
    )
    await legacy.send_raw(json.dumps({"type": "job", "job_id": "job_noaction", "params": {}}))
    bad = await legacy.wait_result("job_badparams")
    assert bad["success"] is False and "'params' must be an object" in bad["error"]
    noaction = await legacy.wait_result("job_noaction")
    assert noaction["success"] is False and "action" in noaction["error"]
    # still serving
    ok = await legacy.wait_result(await legacy.send_job("list_models"))
    assert ok["success"] is True
    assert worker.state == "connected" and legacy.connections == 1
    assert legacy.violations == []


async def test_duplicate_job_id_never_runs_twice(legacy: LegacyServer, make_worker, tmp_path: Path):
    marker = tmp_path / "marker.txt"
    worker = make_worker(legacy.url, legacy.token)
    worker.start()
    params = {"seconds": 1.0, "marker": str(marker)}
    job_id = await legacy.send_job("sleep", params)
    await until(running(worker, job_id), "the job to run")
    await legacy.send_job("sleep", params, job_id=job_id)  # again while running
    first = await legacy.wait_result(job_id)
    assert first["success"] is True
    await legacy.send_job("sleep", params, job_id=job_id)  # again after it finished: result re-sent
    await legacy.wait_for(lambda: len(legacy.results[job_id]) == 2, timeout=10)
    assert legacy.results[job_id][1] == first
    assert marker.read_text().count("start") == 1
    assert legacy.violations == []


async def test_several_jobs_run_at_once(legacy: LegacyServer, make_worker, tmp_path: Path):
    worker = make_worker(legacy.url, legacy.token, max_jobs=3)
    worker.start()
    markers = [tmp_path / f"m{i}.txt" for i in range(3)]
    ids = [await legacy.send_job("sleep", {"seconds": 1.5, "marker": str(m)}) for m in markers]
    for job_id in ids:
        assert (await legacy.wait_result(job_id, timeout=30))["success"] is True
    spans = []
    for m in markers:
        lines = dict(line.split() for line in m.read_text().splitlines())
        spans.append((float(lines["start"]), float(lines["end"])))
    latest_start = max(s for s, _ in spans)
    earliest_end = min(e for _, e in spans)
    assert latest_start < earliest_end, f"jobs did not overlap: {spans}"


async def test_max_jobs_bounds_concurrency(legacy: LegacyServer, make_worker, tmp_path: Path):
    worker = make_worker(legacy.url, legacy.token, max_jobs=1)
    worker.start()
    markers = [tmp_path / f"m{i}.txt" for i in range(2)]
    ids = [await legacy.send_job("sleep", {"seconds": 0.5, "marker": str(m)}) for m in markers]
    await legacy.wait_result(ids[1], timeout=30)
    await legacy.wait_result(ids[0], timeout=30)
    spans = sorted(tuple(float(x.split()[1]) for x in m.read_text().splitlines()) for m in markers)
    assert spans[0][1] <= spans[1][0], "with max_jobs=1 the second job must start after the first ended"
    # a quick job is not held up by the busy heavy slot
    slow = await legacy.send_job("sleep", {"seconds": 3})
    await until(running(worker, slow), "the slow job to run")
    started = time.monotonic()
    quick = await legacy.wait_result(await legacy.send_job("list_models"), timeout=10)
    assert quick["success"] and time.monotonic() - started < 2
    assert slow not in legacy.results


async def test_progress_arrives_while_the_job_runs(legacy: LegacyServer, make_worker):
    worker = make_worker(legacy.url, legacy.token)
    seen: list[JobProgress] = []
    worker.events.subscribe(lambda e: seen.append(e) if isinstance(e, JobProgress) else None)
    worker.start()
    job_id = await legacy.send_job("sleep", {"seconds": 2.0})
    await legacy.wait_result(job_id)
    stamps = [t for t, _ in legacy.progress[job_id]]
    assert len(stamps) >= 5
    assert stamps[-1] - stamps[0] > 1.0, "progress must be spread over the job, not a burst at the end"
    assert any(e.eta is not None for e in seen)
    assert legacy.violations == []


async def test_pings_answered_while_cpu_heavy_job_runs(legacy: LegacyServer, make_worker):
    worker = make_worker(legacy.url, legacy.token, max_jobs=2)
    worker.start()
    await worker.wait_connected(timeout=10)
    job_ids = [await legacy.send_job("burn", {"seconds": 4}) for _ in range(2)]
    await legacy.wait_for(lambda: all(j in legacy.progress for j in job_ids), timeout=20)
    rtts = []
    while not all(j in legacy.results for j in job_ids):
        assert legacy.ws is not None
        rtts.append(await asyncio.wait_for(await legacy.ws.ping(), 5))
        await asyncio.sleep(0.05)
    assert len(rtts) > 10
    # a generous liveness bound (shared, noisy machines); benchmarks/ measures the real figure
    assert max(rtts) < 1.0, f"ping stalled: max {max(rtts):.3f} s, median {statistics.median(rtts):.4f} s"


async def test_crashing_job_gives_failed_result_and_worker_stays(legacy: LegacyServer, make_worker):
    worker = make_worker(legacy.url, legacy.token)
    worker.start()
    died = await legacy.wait_result(await legacy.send_job("die"))
    assert died["success"] is False and "killed" in died["error"]
    boom = await legacy.wait_result(await legacy.send_job("boom"))
    assert boom["success"] is False and "ValueError" in boom["error"] and "Traceback" not in boom["error"]
    ok = await legacy.wait_result(await legacy.send_job("list_models"))
    assert ok["success"] is True and worker.state == "connected"


async def test_cut_during_job_result_arrives_once_after_reconnect(legacy: LegacyServer, make_worker):
    worker = make_worker(legacy.url, legacy.token)
    worker.start()
    await worker.wait_connected(timeout=10)
    job_id = await legacy.send_job("sleep", {"seconds": 2.0})
    await until(running(worker, job_id), "the job to run")
    legacy.drop()
    result = await legacy.wait_result(job_id, timeout=20)
    assert result["success"] is True
    assert legacy.connections >= 2
    await asyncio.sleep(1.0)  # nothing more arrives: the pong confirmed it
    assert len(legacy.results[job_id]) == 1
    assert worker.pending_results == 0
    assert legacy.violations == []


async def test_outbox_resends_result_finished_while_server_was_away(make_worker):
    server = await LegacyServer().start()
    port = server.port
    worker = make_worker(server.url, server.token)
    worker.start()
    await worker.wait_connected(timeout=10)
    job_id = await server.send_job("sleep", {"seconds": 1.0})
    await until(running(worker, job_id), "the job to run")
    await server.stop()  # the server goes away; the job finishes meanwhile
    await worker.wait_idle(timeout=10)
    assert worker.jobs[job_id].status == "done" and worker.pending_results == 1
    await asyncio.sleep(1.0)  # the outage lasts a while (the worker keeps retrying meanwhile)
    back = await LegacyServer(valid_tokens=server.valid_tokens, port=port).start()
    try:
        started = time.monotonic()
        result = await back.wait_result(job_id, timeout=15)
        assert result["success"] is True
        assert time.monotonic() - started < 5, "the worker must be back within seconds"
        await until(lambda: worker.pending_results == 0, "the pong that confirms the result")
        assert len(back.results[job_id]) == 1
        assert back.violations == []
    finally:
        await back.stop()


async def test_a_dozen_outages_in_a_row(legacy: LegacyServer, make_worker):
    worker = make_worker(legacy.url, legacy.token)
    states: list[StateChanged] = []
    worker.events.subscribe(lambda e: states.append(e) if isinstance(e, StateChanged) else None)
    worker.start()
    await worker.wait_connected(timeout=10)
    for i in range(12):
        await legacy.wait_for(lambda: legacy.ws is not None, timeout=10)
        legacy.drop()
        await legacy.wait_for(lambda n=i: legacy.connections >= n + 2, timeout=10)
    ok = await legacy.wait_result(await legacy.send_job("list_models"))
    assert ok["success"] is True and worker.state == "connected"
    reconnecting = [s for s in states if s.state == "reconnecting" and s.retry_in is not None]
    assert len(reconnecting) >= 12
    # connections that drop at once (a flapping server) keep backing off, up to the cap (FAST_BACKOFF: 0.05 s
    # growing to 0.5 s); only a connection that lasted resets the delays (tests/test_core.py pins that)
    delays = [s.retry_in for s in reconnecting]
    assert max(delays) <= 0.5 + 1e-9 and max(delays[-4:]) > 0.05
    assert all("Reconnecting in" in s.message for s in reconnecting)


async def test_unreachable_server_is_explained_and_retried(make_worker):
    worker = make_worker("ws://127.0.0.1:9/ws", "token")
    states: list[StateChanged] = []
    worker.events.subscribe(lambda e: states.append(e) if isinstance(e, StateChanged) else None)
    worker.start()
    with pytest.raises(TimeoutError, match="Nothing is accepting connections"):
        await worker.wait_connected(timeout=1.5)
    retries = [s for s in states if s.state == "reconnecting" and s.retry_in is not None]
    assert len(retries) >= 2
    assert retries[0].retry_in <= 1.0
    assert "is the StatsBot server running" in retries[0].message


async def test_backoff_grows_then_caps():
    from statsbot_nb.retry import Backoff

    delays = Backoff(initial=1.0, factor=2.0, cap=60.0, jitter=0.5).delays()
    values = [next(delays) for _ in range(12)]
    assert values[0] <= 1.0
    assert 30.0 <= values[-1] <= 60.0
    assert all(v <= 60.0 for v in values)


# ---------------------------------------------------------------- reference server (protocol 2)


async def test_reference_server_acks_progress_and_cancel(reference: JobServer, make_worker):
    worker = make_worker(reference.url, reference.issue_token())
    worker.start()
    await worker.wait_connected(timeout=10)
    assert worker.server_protocol == 2
    progress: list[float] = []
    result = await reference.run_job(
        "sleep", {"seconds": 0.5}, timeout=30, on_progress=lambda h, p, m: progress.append(p)
    )
    assert result.success and result.data["slept"] == 0.5
    assert progress and progress[-1] == 100
    await until(lambda: worker.pending_results == 0, "the ack")

    handle = reference.submit("sleep", {"seconds": 30})
    await until(running(worker, handle.job_id), "the job to run")
    assert await reference.cancel(handle.job_id)
    cancelled = await asyncio.wait_for(handle, 10)
    assert cancelled.cancelled and not cancelled.success
    assert worker.jobs[handle.job_id].status == "cancelled"


async def test_reference_server_requeues_and_session_token(reference: JobServer, make_worker):
    worker = make_worker(reference.url, reference.issue_token())
    worker.start()
    await worker.wait_connected(timeout=10)
    handle = reference.submit("sleep", {"seconds": 1.5})
    await until(running(worker, handle.job_id), "the job to run")
    reference._tokens.clear()  # the one-time token expired: only the session token works now
    await reference.drop_workers()
    result = await asyncio.wait_for(handle, 20)
    assert result.success
    assert handle.dispatch_count == 2  # re-queued to the reconnected worker, which kept the running job
    assert len(worker.jobs) == 1
    assert worker.state == "connected"


async def test_user_cancel_sends_cancelled_result(reference: JobServer, make_worker):
    worker = make_worker(reference.url, reference.issue_token())
    worker.start()
    await worker.wait_connected(timeout=10)
    handle = reference.submit("sleep", {"seconds": 30})
    await until(running(worker, handle.job_id), "the job to run")
    assert worker.cancel(handle.job_id)
    result = await asyncio.wait_for(handle, 10)
    assert result.cancelled and "cancelled" in result.error
    await worker.wait_idle(timeout=5)


async def test_stop_interrupts_a_pending_authentication(make_worker):
    from websockets.asyncio.server import serve

    got_auth = asyncio.Event()

    async def silent(ws):  # reads the auth frame and never answers
        await ws.recv()
        got_auth.set()
        await ws.wait_closed()

    async with serve(silent, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        worker = make_worker(f"ws://127.0.0.1:{port}/ws", "token")
        worker.start()
        await asyncio.wait_for(got_auth.wait(), 10)
        started = time.monotonic()
        await asyncio.wait_for(worker.stop(), 10)
        assert time.monotonic() - started < 3
        assert worker.state == "stopped"


async def _first_failure(worker) -> str:
    """Start ``worker`` and return the words of its first failed connection attempt."""
    failures: list[StateChanged] = []
    worker.events.subscribe(
        lambda e: failures.append(e) if isinstance(e, StateChanged) and e.retry_in is not None else None
    )
    worker.start()
    for _ in range(200):
        if failures:
            return failures[0].message
        await asyncio.sleep(0.05)
    raise AssertionError(f"no failed attempt reported; state {worker.state}: {worker.status_message}")


async def test_dns_failure_is_explained(make_worker):
    message = await _first_failure(make_worker("wss://statsbot-nowhere.invalid:8765/ws", "t"))
    assert "could not be resolved" in message and "Reconnecting in" in message


async def test_http_status_is_explained(make_worker):
    async def not_websocket(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(not_websocket, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        message = await _first_failure(make_worker(f"ws://127.0.0.1:{port}/wrong-path", "t"))
    assert "answered HTTP 404" in message and "check the URL" in message


async def test_tls_failure_is_explained(legacy: LegacyServer, make_worker):
    message = await _first_failure(make_worker(f"wss://127.0.0.1:{legacy.port}/ws", legacy.token))
    assert "TLS handshake" in message and "use ws:// instead of wss://" in message
    assert legacy.auths == []


async def test_proxy_failure_names_the_proxy_not_the_server(make_worker, monkeypatch: pytest.MonkeyPatch):
    for var in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(var, "http://someone:s3cret@127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    message = await _first_failure(make_worker("wss://statsbot.example.invalid:8765/ws", "t"))
    assert "HTTP proxy http://127.0.0.1:9" in message and "no_proxy" in message
    assert "s3cret" not in message and "someone" not in message


async def test_job_processes_work_in_a_throwaway_folder(legacy: LegacyServer, make_worker, settings):
    worker = make_worker(legacy.url, legacy.token)
    worker.start()
    result = await legacy.wait_result(await legacy.send_job("write_relative"))
    job_cwd = Path(result["data"]["cwd"])
    assert job_cwd != Path.cwd() and job_cwd != settings.cwd
    assert not job_cwd.exists(), "the job's scratch folder is removed when the job ends"
    assert not (Path.cwd() / "relative.txt").exists() and not (settings.cwd / "relative.txt").exists()


async def test_lone_surrogates_from_the_server_cannot_break_the_connection(legacy: LegacyServer, make_worker):
    worker = make_worker(legacy.url, legacy.token)
    worker.start()
    await worker.wait_connected(timeout=10)
    await legacy.send_raw('{"type":"job","job_id":"job_sur","action":"\\ud800evil","params":{}}')
    bad = await legacy.wait_result("job_sur")
    assert bad["success"] is False and "Unknown action" in bad["error"]
    ok = await legacy.wait_result(await legacy.send_job("list_models"))
    assert ok["success"] and legacy.connections == 1 and worker.pending_results <= 1
    await until(lambda: worker.pending_results == 0, "the pongs that confirm both results")


async def test_token_never_logged_even_at_debug(legacy: LegacyServer, make_worker, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    worker = make_worker(legacy.url, legacy.token)
    worker.start()
    await worker.wait_connected(timeout=10)
    await legacy.wait_result(await legacy.send_job("list_models"))
    assert caplog.records, "debug logging was on"
    assert all(legacy.token not in record.getMessage() for record in caplog.records)


async def test_stopping_answers_running_jobs_before_closing(legacy: LegacyServer, make_worker):
    worker = make_worker(legacy.url, legacy.token)
    worker.start()
    job_id = await legacy.send_job("sleep", {"seconds": 30})
    await legacy.wait_for(lambda: job_id in legacy.progress, timeout=20)
    await asyncio.wait_for(worker.stop(), 10)
    result = await legacy.wait_result(job_id, timeout=5)
    assert result["success"] is False and "cancelled" in result["error"]
    assert legacy.violations == []


async def test_too_many_queued_jobs_are_answered_at_once(legacy: LegacyServer, make_worker, monkeypatch):
    from statsbot_nb.core import limits as core_module

    monkeypatch.setattr(core_module, "MAX_ACTIVE_JOBS", 2)
    worker = make_worker(legacy.url, legacy.token, max_jobs=1)
    worker.start()
    ids = [await legacy.send_job("sleep", {"seconds": 2}) for _ in range(3)]
    refused = await legacy.wait_result(ids[2], timeout=10)
    assert refused["success"] is False and "already has 2 jobs" in refused["error"]


async def test_a_malformed_repeat_of_a_finished_job_keeps_its_result(legacy: LegacyServer, make_worker):
    """A broken frame naming a finished job's id is answered with that job's result, never a new failure."""
    worker = make_worker(legacy.url, legacy.token)
    worker.start()
    job_id = await legacy.send_job("list_models")
    first = await legacy.wait_result(job_id)
    assert first["success"] is True
    await legacy.send_raw(json.dumps({"type": "job", "job_id": job_id, "action": "list_models", "params": [1]}))
    broken = json.dumps({"type": "job", "job_id": job_id, "action": "list_models"})[:-1] + ', "params": {'
    await legacy.send_raw(broken)
    await legacy.wait_for(lambda: len(legacy.results.get(job_id, [])) >= 3, 10)
    assert [r["success"] for r in legacy.results[job_id]] == [True, True, True]
    assert worker.jobs[job_id].status == "done"
    assert legacy.violations == []


def test_plain_ws_to_another_machine_is_refused_unless_the_user_says_so(settings) -> None:
    """The token would travel in cleartext: ws:// only to this machine, wss:// anywhere, or an explicit flag."""
    from statsbot_nb.errors import ConfigError

    with pytest.raises(ConfigError, match=r"unencrypted.*--insecure-ws"):
        Worker("t", "ws://statsbot.example.com:8765/ws", settings=settings, journal=False)
    Worker("t", "ws://statsbot.example.com:8765/ws", settings=settings, journal=False, insecure_ws=True)
    Worker("t", "wss://statsbot.example.com/ws", settings=settings, journal=False)
    for local in ("ws://127.0.0.1:8765/ws", "ws://localhost:8765/ws", "ws://[::1]:8765/ws"):
        Worker("t", local, settings=settings, journal=False)
