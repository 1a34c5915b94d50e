"""The worker's decisions, tested by calling the sans-I/O core: no sockets, no tasks, no sleeps.

Each test feeds :class:`~statsbot_nb.core.WorkerCore` the events a driver would (frames, connections,
timers, job outcomes) with a fake clock, and checks the actions it returns.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from statsbot_nb import protocol
from statsbot_nb.core import (
    CancelJob,
    CloseConnection,
    ConnectionLost,
    ConnectionOpened,
    CoreConfig,
    Ended,
    Finish,
    FrameReceived,
    JobEnded,
    JobProgressed,
    JobReserved,
    JournalConfirmed,
    JournalResult,
    JournalStarted,
    Log,
    OpenConnection,
    PongReceived,
    Publish,
    ReserveJob,
    ScheduleTimer,
    SendFrame,
    SendPing,
    Start,
    StartJob,
    StopRequested,
    TimerFired,
    WorkerCore,
)
from statsbot_nb.core import limits as core_module
from statsbot_nb.events import JobFailed, StateChanged
from statsbot_nb.jobs import ActionSpec
from statsbot_nb.journal import Restored
from statsbot_nb.retry import Backoff

ACTIONS = {
    "heavy": ActionSpec("tests:heavy", isolated=True),
    "light": ActionSpec("tests:light", isolated=False),
    "read": ActionSpec("tests:read", isolated=False, journaled=False),
}
TOKEN = "one-time-token"


class Harness:
    """A core plus a fake clock and the actions it returned, with shorthands for what a server sends."""

    def __init__(self, max_jobs: int = 2, backoff: Backoff | None = None) -> None:
        config = CoreConfig(
            url="ws://127.0.0.1:1/ws",
            machine_id="m1",
            worker_version="test",
            capabilities={},
            actions=ACTIONS,
            max_jobs=max_jobs,
            auth_timeout=30.0,
            backoff=backoff or Backoff(initial=1.0, jitter=0.0),
        )
        self.core = WorkerCore(TOKEN, config)
        self.now = 1000.0
        self.log: list[Any] = []
        self.auto_reserve = True

    def feed(self, event: Any) -> list[Any]:
        """Feed one event; a reservation is answered as a journal with no such id would (then it runs)."""
        self.now += 0.01
        out = self.core.handle(event, self.now)
        self.log.extend(out)
        for action in list(out):
            if isinstance(action, ReserveJob) and self.auto_reserve:
                out += self.feed(JobReserved(action.job_id, None))
        return out

    @property
    def conn(self) -> int:
        return self.core._conn

    def connect(self, protocol_version: int = 2, session: str | None = "session-1") -> list[Any]:
        """From not connected to authenticated: fire the pending reconnect timer if any, open, authenticate."""
        if not self.core.started:
            opened = self.feed(Start())
        else:
            opened = self.feed(TimerFired("reconnect", self.conn))
        assert any(isinstance(a, OpenConnection) for a in opened)
        self.feed(ConnectionOpened(self.conn))
        reply = protocol.encode_auth_response(
            7, protocol=protocol_version if protocol_version > 1 else None, session_token=session
        )
        return self.feed(FrameReceived(self.conn, reply))

    def job(self, job_id: str, action: str = "heavy", **params: Any) -> list[Any]:
        return self.feed(FrameReceived(self.conn, protocol.encode_job(job_id, action, params)))

    def drop(self, **kwargs: Any) -> list[Any]:
        return self.feed(ConnectionLost(self.conn, **kwargs))


def _started(actions: list[Any]) -> list[str]:
    return [a.job_id for a in actions if isinstance(a, StartJob)]


def _results(actions: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(a.frame) for a in actions if isinstance(a, SendFrame) and a.kind == "result"]


def _auth_token(actions: list[Any]) -> str:
    frames = [json.loads(a.frame) for a in actions if isinstance(a, SendFrame) and a.kind == "auth"]
    assert len(frames) == 1
    return frames[0]["token"]


# ---------------------------------------------------------------------------------------------- connection


def test_authenticates_with_the_token_then_reports_connected() -> None:
    h = Harness()
    assert _auth_token(h.feed(Start()) + h.feed(ConnectionOpened(1))) == TOKEN
    out = h.feed(FrameReceived(1, protocol.encode_auth_response(7, protocol=2, session_token="s")))
    assert h.core.connected and h.core.state == "connected" and h.core.user_id == 7
    assert any(isinstance(a, Publish) and isinstance(a.event, StateChanged) for a in out)


def test_a_refused_token_is_final_and_says_what_to_do() -> None:
    h = Harness()
    h.feed(Start())
    h.feed(ConnectionOpened(1))
    out = h.feed(FrameReceived(1, protocol.encode_auth_failed()))
    finish = [a for a in out if isinstance(a, Finish)]
    assert finish and "/connect" in (finish[0].rejection or "") and h.core.state == "rejected"
    assert any(isinstance(a, CloseConnection) for a in out)
    assert not any(isinstance(a, ScheduleTimer) for a in h.drop())  # and it never reconnects


def test_a_refused_session_token_falls_back_to_the_original_token_once() -> None:
    h = Harness()
    h.connect(session="session-1")
    h.drop(reason="cut")
    out = h.feed(TimerFired("reconnect", h.conn))
    out += h.feed(ConnectionOpened(h.conn))
    assert _auth_token(out) == "session-1"
    out = h.feed(FrameReceived(h.conn, protocol.encode_auth_failed()))
    assert h.core.state != "rejected" and any(isinstance(a, CloseConnection) for a in out)
    lost = h.drop(policy_close=True)  # servers close with 1008 after auth_failed: not a second refusal
    assert any(isinstance(a, ScheduleTimer) and a.name == "reconnect" for a in lost)
    out = h.feed(TimerFired("reconnect", h.conn)) + h.feed(ConnectionOpened(h.conn))
    assert _auth_token(out) == TOKEN
    out = h.feed(FrameReceived(h.conn, protocol.encode_auth_failed()))
    assert h.core.state == "rejected"


def test_a_policy_close_during_authentication_rejects_the_token() -> None:
    h = Harness()
    h.feed(Start())
    h.feed(ConnectionOpened(1))
    out = h.drop(policy_close=True, reason="closed 1008")
    assert h.core.state == "rejected" and any(isinstance(a, Finish) and a.rejection for a in out)


def test_authentication_that_never_answers_times_out_and_retries() -> None:
    h = Harness()
    h.feed(Start())
    out = h.feed(ConnectionOpened(1))
    timer = next(a for a in out if isinstance(a, ScheduleTimer))
    assert timer.name == "auth" and timer.delay == 30.0
    assert any(isinstance(a, CloseConnection) for a in h.feed(TimerFired("auth", 1)))
    h.drop()
    assert "did not answer the authentication in time" in h.core.status_message
    assert h.core.state == "reconnecting"


def test_reconnect_delays_grow_and_reset_only_after_a_connection_that_lasted() -> None:
    h = Harness(backoff=Backoff(initial=1.0, factor=2.0, cap=60.0, jitter=0.0))
    h.feed(Start())
    delays = []
    for _ in range(3):
        out = h.drop(reason="refused")
        delays.append(next(a.delay for a in out if isinstance(a, ScheduleTimer)))
        h.feed(TimerFired("reconnect", h.conn))
    assert delays == [1.0, 2.0, 4.0]
    h.feed(ConnectionOpened(h.conn))
    h.feed(FrameReceived(h.conn, protocol.encode_auth_response(7)))
    out = h.drop(reason="cut")  # a connection that flaps (accepted, then dropped at once) keeps backing off
    assert next(a.delay for a in out if isinstance(a, ScheduleTimer)) == 8.0
    h.feed(TimerFired("reconnect", h.conn))
    h.feed(ConnectionOpened(h.conn))
    h.feed(FrameReceived(h.conn, protocol.encode_auth_response(7)))
    h.now += 31.0  # one that lasted starts again from the shortest delay
    out = h.drop(reason="cut")
    assert next(a.delay for a in out if isinstance(a, ScheduleTimer)) == 1.0


def test_a_fatal_connection_error_stops_without_retrying() -> None:
    h = Harness()
    h.feed(Start())
    out = h.drop(reason="The server URL is not valid.", fatal=True)
    assert any(isinstance(a, Finish) and a.fatal for a in out) and h.core.state == "stopped"
    assert not any(isinstance(a, ScheduleTimer) for a in out)


def test_frames_and_timers_of_an_old_connection_are_ignored() -> None:
    h = Harness()
    h.connect()
    old = h.conn
    h.drop()
    h.connect()
    assert h.feed(FrameReceived(old, protocol.encode_job("j1", "heavy", {}))) == []
    assert h.feed(TimerFired("auth", old)) == []
    assert h.feed(ConnectionLost(old)) == [] and h.core.connected


def test_jobs_before_authentication_are_not_run() -> None:
    h = Harness()
    h.feed(Start())
    h.feed(ConnectionOpened(1))
    out = h.job("early")
    assert _started(out) == [] and "early" not in h.core.jobs


# ---------------------------------------------------------------------------------------------- jobs


def test_journal_records_come_before_the_job_starts_and_before_its_result_leaves() -> None:
    h = Harness()
    h.connect()
    out = h.job("j1")
    kinds = [type(a) for a in out]
    assert kinds.index(ReserveJob) < kinds.index(StartJob)
    h.auto_reserve = False  # without the journal's answer, nothing starts
    assert _started(h.job("j2")) == [] and h.core.jobs["j2"].status == "queued"
    out = h.feed(JobEnded("j1", "ok", data={"x": 1}))
    journal = next(i for i, a in enumerate(out) if isinstance(a, JournalResult))
    send = next(i for i, a in enumerate(out) if isinstance(a, SendFrame) and a.kind == "result")
    assert journal < send


def test_a_job_id_seen_again_never_runs_twice() -> None:
    h = Harness()
    h.connect()
    assert _started(h.job("j1")) == ["j1"]
    assert _started(h.job("j1")) == [] and _results(h.log) == []  # again while running: keep the running one
    h.feed(JobEnded("j1", "ok", data={"n": 1}))
    again = h.job("j1")  # again after it finished: the same result, not a second run
    assert _started(again) == [] and _results(again) == [
        {"type": "result", "job_id": "j1", "success": True, "data": {"n": 1}}
    ]


def test_a_malformed_repeat_of_a_finished_job_keeps_its_result() -> None:
    h = Harness()
    h.connect()
    h.job("j1")
    h.feed(JobEnded("j1", "ok", data={"n": 1}))
    bad = json.dumps({"type": "job", "job_id": "j1", "action": "heavy", "params": [1]})
    out = h.feed(FrameReceived(h.conn, bad))
    assert [r["success"] for r in _results(out)] == [True]


def test_a_forgotten_finished_job_is_refused_with_a_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_module, "MAX_JOB_RECORDS", 2)
    h = Harness()
    h.core.outbox._remember = 1
    h.connect()
    for i in range(5):
        h.job(f"j{i}")
        h.feed(JobEnded(f"j{i}", "ok", data={}))
        h.feed(FrameReceived(h.conn, protocol.encode_ack(f"j{i}")))
    assert "j0" not in h.core.jobs and len(h.core.jobs) <= 2
    out = h.job("j0")
    assert _started(out) == []
    (result,) = _results(out)
    assert result["success"] is False and "already ran" in result["error"]


def test_a_read_only_job_runs_without_journal_actions_and_a_repeat_is_answered_not_rerun() -> None:
    h = Harness()
    h.connect()
    out = h.job("r1", "read")
    assert _started(out) == ["r1"]
    journal_kinds = (ReserveJob, JournalStarted, JournalResult, JournalConfirmed)
    out += h.feed(JobEnded("r1", "ok", data={"models": []}))
    out += h.feed(FrameReceived(h.conn, protocol.encode_ack("r1")))
    assert [a for a in out if isinstance(a, journal_kinds)] == []
    assert _results(out) == [{"type": "result", "job_id": "r1", "success": True, "data": {"models": []}}]
    again = h.job("r1", "read")  # answered from memory, as any job is
    assert _started(again) == [] and _results(again) == _results(out)
    # a journaled job in the same session still gets every record
    out = h.job("j1", "light") + h.feed(JobEnded("j1", "ok", data={}))
    out += h.feed(FrameReceived(h.conn, protocol.encode_ack("j1")))
    assert [type(a) for a in out if isinstance(a, journal_kinds)] == [
        ReserveJob,
        JournalStarted,
        JournalResult,
        JournalConfirmed,
    ]


def test_heavy_jobs_wait_for_a_slot_and_light_jobs_do_not_wait_for_heavy_ones() -> None:
    h = Harness(max_jobs=1)
    h.connect()
    assert _started(h.job("h1")) == ["h1"]
    assert _started(h.job("h2")) == []
    assert h.core.jobs["h2"].status == "queued"
    assert _started(h.job("l1", "light")) == ["l1"]
    assert _started(h.feed(JobEnded("h1", "ok", data={}))) == ["h2"]


def test_too_many_active_jobs_are_answered_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_module, "MAX_ACTIVE_JOBS", 2)
    h = Harness(max_jobs=1)
    h.connect()
    h.job("a")
    h.job("b")
    (refused,) = _results(h.job("c"))
    assert refused["success"] is False and "already has 2 jobs" in refused["error"]


def test_an_unknown_action_is_answered_with_the_actions_this_worker_has() -> None:
    h = Harness()
    h.connect()
    (result,) = _results(h.job("j1", "mine_bitcoin"))
    assert result["success"] is False and "Unknown action: mine_bitcoin" in result["error"]
    assert "heavy" in result["error"]


def test_a_malformed_job_frame_is_answered_and_other_garbage_is_skipped() -> None:
    h = Harness()
    h.connect()
    out = h.feed(FrameReceived(h.conn, json.dumps({"type": "job", "job_id": "j9", "params": {}})))
    (result,) = _results(out)
    assert result["job_id"] == "j9" and "no 'action'" in result["error"]
    out = h.feed(FrameReceived(h.conn, "{not json"))
    assert _results(out) == [] and any(isinstance(a, Log) and a.level == logging.WARNING for a in out)


def test_progress_goes_to_the_server_and_never_follows_the_result() -> None:
    h = Harness()
    h.connect()
    h.job("j1")
    out = h.feed(JobProgressed("j1", 50.0, "half", "fitting"))
    (frame,) = [json.loads(a.frame) for a in out if isinstance(a, SendFrame)]
    assert frame["type"] == "progress" and frame["progress"] == 50
    assert h.core.jobs["j1"].eta is not None
    h.feed(JobEnded("j1", "ok", data={}))
    assert h.feed(JobProgressed("j1", 90.0, "late", "fitting")) == []


def test_protocol_1_results_are_confirmed_by_a_pong_after_them() -> None:
    h = Harness()
    h.connect(protocol_version=1, session=None)
    h.job("j1")
    out = h.feed(JobEnded("j1", "ok", data={}))
    ping = next(a for a in out if isinstance(a, SendPing))
    assert h.core.outbox.is_pending("j1")
    assert any(isinstance(a, JournalConfirmed) for a in h.feed(PongReceived(h.conn, ping.ping)))
    assert not h.core.outbox.is_pending("j1")


def test_a_pong_from_a_dropped_connection_confirms_nothing() -> None:
    h = Harness()
    h.connect(protocol_version=1, session=None)
    h.job("j1")
    ping = next(a for a in h.feed(JobEnded("j1", "ok", data={})) if isinstance(a, SendPing))
    old = h.conn
    h.drop()
    assert h.feed(PongReceived(old, ping.ping)) == []
    out = h.connect(protocol_version=1, session=None)  # re-sent on the next connection
    assert [r["job_id"] for r in _results(out)] == ["j1"]


def test_protocol_2_results_are_confirmed_by_ack_without_pings() -> None:
    h = Harness()
    h.connect()
    h.job("j1")
    out = h.feed(JobEnded("j1", "ok", data={}))
    assert not any(isinstance(a, SendPing) for a in out)
    h.feed(FrameReceived(h.conn, protocol.encode_ack("j1")))
    assert len(h.core.outbox) == 0


def test_a_result_finished_while_disconnected_is_sent_after_reconnecting() -> None:
    h = Harness()
    h.connect()
    h.job("j1")
    h.drop(reason="cut")
    out = h.feed(JobEnded("j1", "ok", data={"n": 2}))
    assert _results(out) == [] and any(isinstance(a, JournalResult) for a in out)
    out = h.connect()
    assert [r["job_id"] for r in _results(out)] == ["j1"]


def test_cancel_a_queued_job_answers_at_once_and_a_running_one_asks_the_driver() -> None:
    h = Harness(max_jobs=1)
    h.connect()
    h.job("run")
    h.job("wait")
    ok, out = h.core.cancel("wait", h.now)
    assert ok and _results(out)[0]["cancelled"] is True and _started(out) == []
    ok, out = h.core.cancel("run", h.now)
    assert ok and out == [CancelJob("run")]
    assert h.core.cancel("run", h.now) == (True, [])  # asked once
    h.feed(JobEnded("run", "cancelled", error="The job was cancelled."))
    assert h.core.cancel("run", h.now) == (False, [])
    assert h.core.jobs["run"].status == "cancelled"


def test_a_server_cancel_frame_cancels_the_job() -> None:
    h = Harness()
    h.connect()
    h.job("j1")
    out = h.feed(FrameReceived(h.conn, protocol.encode_cancel("j1")))
    assert CancelJob("j1") in out


def test_stop_cancels_jobs_refuses_new_ones_and_never_reconnects() -> None:
    h = Harness()
    h.connect()
    h.job("j1")
    out = h.feed(StopRequested())
    assert CancelJob("j1") in out
    (refused,) = _results(h.job("j2"))
    assert refused["success"] is False and "stopping" in refused["error"]
    h.feed(JobEnded("j1", "cancelled", error="The job was cancelled."))
    out = h.drop()
    assert not any(isinstance(a, ScheduleTimer | OpenConnection) for a in out)
    h.feed(Ended())
    assert h.core.state == "stopped" and h.core.idle


def test_restored_results_are_re_sent_and_interrupted_jobs_answered_as_failed() -> None:
    h = Harness()
    pending = protocol.encode_result_ok("old", {"n": 1})
    out = h.feed(
        Restored(pending=(("old", pending),), interrupted=(("gone", "train", "running"),), finished=("done1",))
    )
    failed = [a.event for a in out if isinstance(a, Publish) and isinstance(a.event, JobFailed)]
    assert failed and "restarted" in failed[0].error
    assert any(isinstance(a, JournalResult) and a.job_id == "gone" for a in out)
    out = h.connect()
    sent = {r["job_id"]: r for r in _results(out)}
    assert sent["old"]["success"] is True
    assert sent["gone"]["success"] is False and "restarted" in sent["gone"]["error"]
    again = h.job("done1")  # confirmed before the restart: never runs again
    assert _started(again) == [] and "already ran" in _results(again)[0]["error"]
    assert _started(h.job("gone")) == []  # an interrupted job is answered, not re-run


def test_memory_stays_bounded_with_many_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_module, "MAX_JOB_RECORDS", 10)
    monkeypatch.setattr(core_module, "MAX_FORGOTTEN_IDS", 50)
    h = Harness()
    h.core.outbox._remember = 10
    h.connect()
    for i in range(300):
        h.job(f"j{i}", "light")
        h.feed(JobEnded(f"j{i}", "ok", data={"i": i}))
        h.feed(FrameReceived(h.conn, protocol.encode_ack(f"j{i}")))
        h.job(f"bad{i}", "nope")
        h.feed(FrameReceived(h.conn, protocol.encode_ack(f"bad{i}")))
    assert len(h.core.jobs) <= 10 and len(h.core._forgotten) <= 50
    assert len(h.core.outbox._delivered) <= 10 and len(h.core.outbox) == 0


def test_a_job_sent_before_the_auth_response_runs_once_authenticated() -> None:
    h = Harness()
    h.feed(Start())
    h.feed(ConnectionOpened(1))
    assert _started(h.job("early")) == []
    out = h.feed(FrameReceived(1, protocol.encode_auth_response(7, protocol=2)))
    assert _started(out) == ["early"]


def test_the_journal_decides_about_ids_other_workers_of_this_home_took() -> None:
    from statsbot_nb.journal import Existing

    h = Harness()
    h.connect()
    h.auto_reserve = False
    frame = protocol.encode_result_ok("a", {"n": 1})
    h.job("a")
    out = h.feed(JobReserved("a", Existing("answered", frame, owner_alive=False)))
    assert _started(out) == [] and _results(out) == [json.loads(frame)]  # its stored result, not a new run
    h.job("b")
    out = h.feed(JobReserved("b", Existing("running", None, owner_alive=True)))
    assert _started(out) == [] and _results(out) == [] and not h.core.idle  # the live worker answers it ...
    (timer,) = [a for a in out if isinstance(a, ScheduleTimer)]
    out = h.feed(TimerFired("recheck", timer.key))  # ... unless it died just after its connection dropped
    assert [a.job_id for a in out if isinstance(a, ReserveJob)] == ["b"]
    out = h.feed(JobReserved("b", Existing("running", None, owner_alive=False)))
    assert _started(out) == [] and "restarted" in _results(out)[0]["error"]
    h.job("c")
    out = h.feed(JobReserved("c", Existing("running", None, owner_alive=False)))
    assert _started(out) == [] and "restarted" in _results(out)[0]["error"]
    h.job("d")
    out = h.feed(JobReserved("d", Existing("confirmed", None, owner_alive=False)))
    assert _started(out) == [] and "already ran" in _results(out)[0]["error"]


def test_a_result_that_cannot_be_encoded_becomes_a_failed_result() -> None:
    h = Harness()
    h.connect()
    h.job("deep")
    nested: list[Any] = []
    for _ in range(5000):
        nested = [nested]
    out = h.feed(JobEnded("deep", "ok", data={"x": nested}))
    (result,) = _results(out)
    assert result["success"] is False and "could not be encoded" in result["error"]
    assert h.core.idle and h.core.jobs["deep"].status == "failed"


def test_a_job_the_journal_cannot_settle_waits_across_a_reconnect_and_is_never_run_on_a_guess(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from statsbot_nb.journal import Existing

    monkeypatch.setattr(core_module, "RECHECK_GIVE_UP", 3)
    h = Harness()
    h.connect()
    h.auto_reserve = False
    h.job("u")
    out = h.feed(JobReserved("u", Existing("unknown", None, owner_alive=True)))  # the journal was locked
    (timer,) = [a for a in out if isinstance(a, ScheduleTimer) and a.name == "recheck"]
    h.drop(reason="cut")
    assert h.feed(TimerFired("recheck", timer.key)) == [] and not h.core.idle  # kept while disconnected
    out = h.connect()
    assert [a.job_id for a in out if isinstance(a, ReserveJob)] == ["u"]  # asked again once connected
    for _ in range(3):
        out = h.feed(JobReserved("u", Existing("unknown", None, owner_alive=True)))
        timers = [a for a in out if isinstance(a, ScheduleTimer) and a.name == "recheck"]
        if not timers:
            break
        h.feed(TimerFired("recheck", timers[0].key))
    (result,) = _results(out)  # after RECHECK_GIVE_UP looks it is answered, not run
    assert result["success"] is False and "not run" in result["error"] and h.core.idle
    assert _started(h.log) == []


def test_stop_lets_the_holder_answer_a_watched_job() -> None:
    from statsbot_nb.journal import Existing

    h = Harness()
    h.connect()
    h.auto_reserve = False
    h.job("w")
    h.feed(JobReserved("w", Existing("running", None, owner_alive=True)))
    assert not h.core.idle
    h.feed(StopRequested())
    assert h.core.idle


def test_ask_before_running_holds_each_job_until_the_user_answers() -> None:
    from statsbot_nb.core import AskChanged
    from statsbot_nb.events import ApprovalNeeded

    h = Harness()
    h.core._ask = True
    h.connect()
    out = h.job("a", file_path="/data/x.csv", target_column="y")
    (asked,) = [a.event for a in out if isinstance(a, Publish) and isinstance(a.event, ApprovalNeeded)]
    assert "file path: /data/x.csv" in asked.description and "target column: y" in asked.description
    assert _started(out) == [] and not h.core.idle
    ok, out = h.core.approve("a", "allow", h.now)
    assert ok and _started(out) == ["a"]
    h.job("b")
    ok, out = h.core.approve("b", "deny", h.now)
    assert ok and "declined" in _results(out)[0]["error"] and _started(out) == []
    h.job("c")
    h.job("d")
    ok, out = h.core.approve("c", "always", h.now)  # the waiting "d" (same action) is allowed with it
    h.log.extend(out)
    h.feed(JobEnded("a", "ok", data={}))
    assert "c" in _started(h.log) and "d" in _started(h.log)
    assert not any(isinstance(a, Publish) and isinstance(a.event, ApprovalNeeded) for a in h.job("f"))
    h.core._always_allowed.clear()
    h.job("g")
    h.feed(AskChanged(False))  # switching asking off lets what waits run
    assert "g" not in h.core.awaiting_approval


def test_a_light_job_sends_only_its_result_and_a_heavy_one_says_it_started() -> None:
    """A listing answers in milliseconds: its start is shown locally (an event) but not sent; today's worker
    sends none for it either. A heavy job's start still reaches the server at once."""
    h = Harness()
    h.connect()
    light = h.job("j1", "light")
    assert [a for a in light if isinstance(a, SendFrame)] == []
    assert any(isinstance(a, Publish) and getattr(a.event, "stage", "") == "starting" for a in light)
    (frame,) = [json.loads(a.frame) for a in h.job("j2", "heavy") if isinstance(a, SendFrame)]
    assert frame["type"] == "progress" and frame["job_id"] == "j2"
    assert [r["job_id"] for r in _results(h.feed(JobEnded("j1", "ok", data={"models": []})))] == ["j1"]
