"""The durable job journal: unit behaviour, and the real worker SIGKILLed at random points of jobs' lives.

The kill test runs the real worker (``tests/killworker.py``) against the reference server on loopback,
kills it with SIGKILL at random moments (during connecting, while jobs are accepted, running, answered,
awaiting their ack), starts a new one with a fresh token each time, and counts: results lost (must be 0)
and jobs run twice (must be 0). ``STATSBOT_KILLS=500`` runs more rounds; the default keeps CI short.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from killworker import ACTIONS as KILL_ACTIONS

from statsbot_nb import protocol
from statsbot_nb.journal import KEEP_IDS, Journal, Restored
from statsbot_nb.server import JobServer

URL = "ws://127.0.0.1:9/ws"
TESTS = Path(__file__).parent


# ---------------------------------------------------------------------------------------------- unit


def _open(home: Path, url: str = URL, user: int | None = 1) -> Journal:
    journal = Journal(home, url)
    journal.open()
    journal.claim(user)
    return journal


def test_a_new_worker_restores_what_an_ended_one_left(tmp_path: Path) -> None:
    first = _open(tmp_path)
    assert first.reserve("a", "train") is None
    first.started("a")
    first.reserve("b", "predict")
    first.result("b", protocol.encode_result_ok("b", {"n": 1}))
    first.reserve("c", "list_models")
    first.result("c", protocol.encode_result_ok("c", {}))
    first.confirmed("c")
    first.reserve("q", "train")  # accepted, never started
    first.close()  # like a process that ended: its lock is free

    second = Journal(tmp_path, URL)
    second.open()
    restored = second.claim(1)
    assert [job_id for job_id, _ in restored.pending] == ["b"]
    assert sorted(restored.interrupted) == [("a", "train", "running"), ("q", "train", "queued")]
    assert restored.finished == ("c",)
    assert second.claim(1).pending == ()  # claimed once: a second claim finds nothing new
    second.close()


def test_a_live_workers_rows_another_servers_and_another_users_are_not_claimed(tmp_path: Path) -> None:
    alive = _open(tmp_path)
    alive.reserve("mine", "train")
    other_server = _open(tmp_path, "ws://elsewhere:1/ws")
    other_server.reserve("theirs", "train")
    other_server.close()
    other_user = _open(tmp_path, user=2)
    other_user.reserve("user2", "load_data")
    other_user.result("user2", protocol.encode_result_ok("user2", {"dataframe": [{"salary": 1}]}))
    other_user.close()

    newcomer = _open(tmp_path)  # user 1 on URL
    restored = newcomer.claim(1)
    assert restored.interrupted == () and restored.pending == ()  # "mine" is live; the rest are not user 1's
    existing = newcomer.reserve("mine", "train")  # the server re-sends a live worker's job to this one
    assert existing is not None and existing.state == "queued" and existing.owner_alive
    newcomer.close()
    alive.close()
    successor = Journal(tmp_path, URL)
    successor.open()
    assert [j for j, _, _ in successor.claim(1).interrupted] == ["mine"]
    assert successor.claim(2).pending[0][0] == "user2"  # only a worker of user 2 gets user 2's result
    successor.close()


def test_reserving_tells_how_a_known_id_stands(tmp_path: Path) -> None:
    j = _open(tmp_path)
    assert j.reserve("x", "train") is None
    frame = protocol.encode_result_ok("x", {})
    j.result("x", frame)
    existing = j.reserve("x", "train")
    # its own row, asked about by a core that does not know it: lost track of, so not "held by a live worker"
    assert existing is not None and (existing.state, existing.frame, existing.owner_alive) == ("answered", frame, False)
    j.confirmed("x")
    existing = j.reserve("x", "train")
    assert existing is not None and existing.state == "confirmed" and existing.frame is None  # no rows kept
    j.close()


def test_the_journal_stays_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from statsbot_nb import journal as journal_module

    monkeypatch.setattr(journal_module, "KEEP_IDS", 50)
    j = _open(tmp_path)
    for i in range(400):
        j.reserve(f"j{i}", "list_models")
        j.result(f"j{i}", protocol.encode_result_ok(f"j{i}", {"i": i}))
        j.confirmed(f"j{i}")
    j.prune()
    assert j.counts() == {"confirmed": 50}
    kept = j._require().execute("SELECT COUNT(*) FROM jobs WHERE result IS NOT NULL").fetchone()[0]
    assert kept == 0
    j.close()
    assert KEEP_IDS >= 1000  # the real bound remembers many more ids than any session's record cap


def test_the_journal_is_private_and_leaves_no_lock_files_behind(tmp_path: Path) -> None:
    for _ in range(5):
        j = _open(tmp_path)
        j.reserve(f"a{_}", "train")
        j.result(f"a{_}", protocol.encode_result_ok(f"a{_}", {}))
        j.confirmed(f"a{_}")
        j.close()
    assert (j.dir.stat().st_mode & 0o777) == 0o700
    assert (j.path.stat().st_mode & 0o777) == 0o600
    assert list(j.dir.glob("owner-*.lock")) == []


def test_a_damaged_journal_is_set_aside_and_a_new_one_started(tmp_path: Path) -> None:
    j = Journal(tmp_path, URL)
    j.dir.mkdir(parents=True)
    j.path.write_bytes(b"this is not a database" * 100)
    j.open()
    assert j.note is not None and "damaged" in j.note
    assert len(list(j.dir.glob("journal.sqlite3.corrupt-*"))) == 1
    assert j.claim(1).pending == () and j.reserve("a", "train") is None
    j.close()


def test_a_journal_in_another_format_is_set_aside_not_misread(tmp_path: Path) -> None:
    import sqlite3

    j = Journal(tmp_path, URL)
    j.dir.mkdir(parents=True)
    old = sqlite3.connect(j.path)
    old.execute("CREATE TABLE jobs (url TEXT, job_id TEXT, owner TEXT, state TEXT)")  # no user, no version
    old.execute("INSERT INTO jobs VALUES (?, 'x', 'o', 'answered')", (URL,))
    old.commit()
    old.close()
    j.open()
    assert j.note is not None and "older format" in j.note
    assert len(list(j.dir.glob("journal.sqlite3.older-*"))) == 1
    assert j.claim(1) == Restored() and j.reserve("x", "train") is None
    j.close()
    again = Journal(tmp_path, URL)
    again.open()  # the new file has the current format: nothing set aside this time
    assert again.note is None
    again.close()


# ---------------------------------------------------------------------------------------------- the real worker


async def _spawn(server: JobServer, home: Path, marker: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "TEST_TOKEN": server.issue_token(), "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(TESTS / "killworker.py"),
        server.url,
        str(home),
        str(marker),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def _kill(proc: asyncio.subprocess.Process) -> bytes:
    if proc.returncode is None:
        proc.send_signal(signal.SIGKILL)
    _, err = await proc.communicate()
    return err


async def test_a_job_running_when_the_worker_is_killed_is_answered_by_the_next_worker(tmp_path: Path) -> None:
    marker = tmp_path / "runs.txt"
    async with JobServer() as server:
        handle = server.submit("slow_mark", {"marker": str(marker), "seconds": 30})
        proc = await _spawn(server, tmp_path, marker)
        try:
            deadline = time.monotonic() + 30
            while not (marker.exists() and marker.read_text()):
                assert time.monotonic() < deadline, "the job never started"
                await asyncio.sleep(0.05)
        finally:
            await _kill(proc)
        successor = await _spawn(server, tmp_path, marker)
        try:
            result = await asyncio.wait_for(asyncio.shield(handle.future), 30)
        finally:
            await _kill(successor)
    assert result.success is False and "restarted" in (result.error or "")
    assert [line.split()[0] for line in marker.read_text().splitlines()] == [handle.job_id]  # ran once


async def test_sigkill_at_random_points_loses_no_result_and_runs_no_job_twice(tmp_path: Path) -> None:
    rounds = int(os.environ.get("STATSBOT_KILLS", "60"))
    rng = random.Random(20261201)
    marker = tmp_path / "runs.txt"
    marker.touch()
    started = time.monotonic()
    async with JobServer() as server:
        handles = []
        for _ in range(rounds):
            for _ in range(rng.randint(1, 4)):
                params = {"marker": str(marker), "seconds": round(rng.uniform(0.0, 0.3), 3)}
                handles.append(server.submit("mark", params))
            proc = await _spawn(server, tmp_path, marker)
            await asyncio.sleep(rng.uniform(0.0, 0.9))  # from before the connection to mid-job
            err = await _kill(proc)
            assert b"Traceback" not in err, err.decode()
        final = await _spawn(server, tmp_path, marker)
        try:
            pending = [asyncio.shield(h.future) for h in handles]
            await asyncio.wait_for(asyncio.gather(*pending), 120)
        finally:
            err = await _kill(final)
        assert b"Traceback" not in err, err.decode()
        duplicates_received = server.duplicate_results
    runs = Counter(line.split()[0] for line in marker.read_text().splitlines())
    lost = [h.job_id for h in handles if not h.done]
    twice = {job_id: n for job_id, n in runs.items() if n > 1}
    outcomes = Counter(
        "ok"
        if h.future.result().success
        else ("restarted" if "restarted" in (h.future.result().error or "") else "other")
        for h in handles
    )
    print(
        f"\nkill test: {rounds} SIGKILLs, {len(handles)} jobs, {sum(runs.values())} runs, results lost {len(lost)}, "
        f"jobs run twice {len(twice)}, outcomes {dict(outcomes)}, re-sent results the server already had "
        f"{duplicates_received}, {time.monotonic() - started:.0f} s"
    )
    assert lost == [] and twice == {}
    assert outcomes["other"] == 0, [h.future.result() for h in handles if not h.future.result().success]
    assert outcomes["ok"] > 0 and outcomes["restarted"] > 0  # the kills did land mid-job
    assert all(runs[h.job_id] == 1 for h in handles if h.future.result().success)


async def test_two_workers_share_a_home_and_a_dead_ones_job_is_not_run_again_by_the_live_one(
    tmp_path: Path, make_worker
) -> None:
    """A notebook worker and a terminal worker on one home: when one dies mid-job and the server hands its
    job to the other, the other answers it from the journal instead of running it a second time."""
    from statsbot_nb.context import JobSettings

    marker = tmp_path / "runs.txt"
    async with JobServer() as server:
        dying = await _spawn(server, tmp_path, marker)
        try:
            await server.wait_for_worker(timeout=30)
            handle = server.submit("slow_mark", {"marker": str(marker), "seconds": 30})
            deadline = time.monotonic() + 30
            while not (marker.exists() and marker.read_text()):
                assert time.monotonic() < deadline, "the job never started"
                await asyncio.sleep(0.05)
            live = make_worker(
                server.url,
                server.issue_token(),
                actions=KILL_ACTIONS,
                settings=JobSettings(home=tmp_path, cwd=tmp_path),
            )
            live.start()
            await live.wait_connected(timeout=30)
        finally:
            await _kill(dying)
        result = await asyncio.wait_for(asyncio.shield(handle.future), 30)
    assert handle.dispatch_count == 2  # the server did send it to the live worker
    assert result.success is False and "restarted" in (result.error or "")
    assert [line.split()[0] for line in marker.read_text().splitlines()] == [handle.job_id]
