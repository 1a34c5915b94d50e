"""Hypothesis drives the worker core through random interleavings and checks what must always hold.

A rule-based state machine plays server, driver and job processes around :class:`WorkerCore`: jobs (with
repeated ids), garbage frames, progress, outcomes, pongs, acks, cancels, dropped connections, and crashes
of the whole worker process (a new core restored from the real SQLite journal the old one wrote). After
every step it checks: a job id never starts twice; on each connection, no progress for a job follows its
result and a job's result goes out at most once per time the server asked (plus one re-send after a
reconnect); every accepted job is finished, running, or has a result kept until the server confirms it;
the memory held stays within its caps. ``settle`` then proves nothing was lost: once jobs end and a
connection is up, every result is delivered and confirmed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from statsbot_nb import protocol
from statsbot_nb.core import (
    CancelJob,
    ConnectionLost,
    ConnectionOpened,
    CoreConfig,
    FrameReceived,
    JobEnded,
    JobProgressed,
    JobReserved,
    JournalConfirmed,
    JournalResult,
    JournalStarted,
    OpenConnection,
    PongReceived,
    ReserveJob,
    ScheduleTimer,
    SendFrame,
    SendPing,
    Start,
    StartJob,
    TimerFired,
    WorkerCore,
)
from statsbot_nb.core import limits as core_module
from statsbot_nb.jobs import ActionSpec
from statsbot_nb.journal import Journal
from statsbot_nb.retry import Backoff

ACTIONS = {"heavy": ActionSpec("t:h", isolated=True), "light": ActionSpec("t:l", isolated=False)}
JOB_IDS = [f"j{i}" for i in range(10)]
URL = "ws://127.0.0.1:1/ws"
CAPS = {"MAX_JOB_RECORDS": 4, "MAX_ACTIVE_JOBS": 3}
REMEMBER = 3


class WorkerModel(RuleBasedStateMachine):
    """The world around one worker core (and its successors after crashes)."""

    def __init__(self) -> None:
        super().__init__()
        self._saved = {name: getattr(core_module, name) for name in CAPS}
        for name, value in CAPS.items():
            setattr(core_module, name, value)
        self.home = Path(tempfile.mkdtemp(prefix="statsbot-core-"))
        self.now = 0.0
        self.generation = 0
        self.started: Counter[str] = Counter()  # StartJob per job id, across crashes
        self.accepted: set[str] = set()  # every job id the worker accepted (journal says so)
        self.confirmed: set[str] = set()
        self.sent: dict[tuple[int, int], list[tuple[str, str]]] = defaultdict(list)  # (gen, conn) -> frames
        self.asks: Counter[tuple[int, int, str]] = Counter()
        self.outcomes: dict[str, str] = {}  # job id -> how its run ended
        self.first_result: dict[str, dict[str, Any]] = {}  # job id -> the first result the server received
        self.other: Journal | None = None  # a second worker sharing the home (a notebook and a terminal)
        self.other_holds: set[str] = set()  # ids that worker took (and so ran)
        self.rechecks: list[int] = []  # pending "recheck" timer keys
        self._new_core()

    def _new_core(self) -> None:
        self.generation += 1
        config = CoreConfig(URL, "m", "t", {}, ACTIONS, max_jobs=1, backoff=Backoff(initial=1.0, jitter=0.0))
        self.core = WorkerCore("tok", config)
        self.core.outbox._remember = REMEMBER
        self.journal = Journal(self.home, URL)
        self.running: set[str] = set()
        self.pings: list[tuple[int, int]] = []
        self.claimed_for: int | None = None
        self.journal.open()
        self._do(Start())

    def teardown(self) -> None:
        self.journal.close()
        if self.other is not None:
            self.other.close()
        shutil.rmtree(self.home, ignore_errors=True)
        for name, value in self._saved.items():
            setattr(core_module, name, value)

    # ------------------------------------------------------------------ the driver, as a model

    def _do(self, event: Any) -> list[Any]:
        """Feed ``event`` the way the driver does: run to completion, answering reservations and claiming."""
        queue, outs = [event], []
        while queue:
            self.now += 0.5
            out = self.core.handle(queue.pop(0), self.now)
            outs += out
            live = self.core.live_connection
            for action in out:
                if isinstance(action, SendFrame) and action.conn == live and action.kind != "auth":
                    self.sent[(self.generation, action.conn)].append((action.kind, action.job_id or ""))
                    if action.kind == "result":
                        self.first_result.setdefault(action.job_id or "", json.loads(action.frame))
                elif isinstance(action, SendPing) and action.conn == live:
                    self.pings.append((action.conn, action.ping))
                elif isinstance(action, StartJob):
                    self.started[action.job_id] += 1
                    self.running.add(action.job_id)
                elif isinstance(action, CancelJob):
                    assert action.job_id in self.running
                elif isinstance(action, ReserveJob):
                    existing = self.journal.reserve(action.job_id, action.action)
                    if existing is None:
                        self.accepted.add(action.job_id)
                    queue.append(JobReserved(action.job_id, existing))
                elif isinstance(action, JournalStarted):
                    self.journal.started(action.job_id)
                elif isinstance(action, JournalResult):
                    self.journal.result(action.job_id, action.frame)
                elif isinstance(action, JournalConfirmed):
                    self.journal.confirmed(action.job_id)
                    self.confirmed.add(action.job_id)
                elif isinstance(action, ScheduleTimer) and action.name == "recheck":
                    self.rechecks.append(action.key)
            if self.core.connected and self.core.live_connection != self.claimed_for:
                self.claimed_for = self.core.live_connection
                queue.append(self.journal.claim(self.core.user_id))
        return outs

    @property
    def conn(self) -> int:
        return self.core._conn

    @property
    def ready(self) -> bool:
        return self.core.connected

    # ------------------------------------------------------------------ rules

    @precondition(lambda self: not self.core.connected and not self.core.finished_connecting)
    @rule(version=st.sampled_from([1, 2]))
    def connect(self, version: int) -> None:
        if self.core._phase == "waiting":
            assert any(isinstance(a, OpenConnection) for a in self._do(TimerFired("reconnect", self.conn)))
        self._do(ConnectionOpened(self.conn))
        reply = protocol.encode_auth_response(1, protocol=version if version == 2 else None, session_token=None)
        self._do(FrameReceived(self.conn, reply))
        assert self.core.connected

    @precondition(lambda self: self.core.live_connection is not None)
    @rule()
    def drop(self) -> None:
        self.pings = [p for p in self.pings if p[0] != self.conn]
        self._do(ConnectionLost(self.conn, reason="cut"))

    @precondition(lambda self: self.ready)
    @rule(job_id=st.sampled_from(JOB_IDS), action=st.sampled_from(["heavy", "heavy", "light", "nope"]))
    def job(self, job_id: str, action: str) -> None:
        self.asks[(self.generation, self.conn, job_id)] += 1
        self._do(FrameReceived(self.conn, protocol.encode_job(job_id, action, {"k": 1})))

    @precondition(lambda self: self.ready)
    @rule(frame=st.one_of(st.text(max_size=40), st.binary(max_size=40)))
    def garbage(self, frame: str | bytes) -> None:
        self._do(FrameReceived(self.conn, frame))

    @precondition(lambda self: bool(self.running))
    @rule(data=st.data(), percent=st.floats(0, 100))
    def progress(self, data: st.DataObject, percent: float) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.running)))
        self._do(JobProgressed(job_id, percent, "working", "fitting"))

    @precondition(lambda self: bool(self.running))
    @rule(data=st.data(), outcome=st.sampled_from(["ok", "error", "cancelled"]))
    def end(self, data: st.DataObject, outcome: str) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.running)))
        self.running.discard(job_id)
        self.outcomes[job_id] = outcome
        self._do(JobEnded(job_id, outcome, data={"v": 1} if outcome == "ok" else None, error="why"))  # type: ignore[arg-type]

    @precondition(lambda self: bool(self.pings))
    @rule(data=st.data())
    def pong(self, data: st.DataObject) -> None:
        conn, ping = data.draw(st.sampled_from(self.pings))
        self.pings.remove((conn, ping))
        self._do(PongReceived(conn, ping))

    @precondition(lambda self: self.ready and self.core.server_protocol == 2)
    @rule(job_id=st.sampled_from(JOB_IDS))
    def ack(self, job_id: str) -> None:
        # a protocol-2 server acks only what it received on this connection
        if ("result", job_id) in self.sent[(self.generation, self.conn)]:
            self._do(FrameReceived(self.conn, protocol.encode_ack(job_id)))

    @precondition(lambda self: self.ready)
    @rule(job_id=st.sampled_from(JOB_IDS))
    def server_cancel(self, job_id: str) -> None:
        self._do(FrameReceived(self.conn, protocol.encode_cancel(job_id)))

    @rule(job_id=st.sampled_from(JOB_IDS))
    def user_cancel(self, job_id: str) -> None:
        _, out = self.core.cancel(job_id, self.now)
        for action in out:
            if isinstance(action, CancelJob):
                assert action.job_id in self.running

    @rule(job_id=st.sampled_from(JOB_IDS))
    def other_worker_takes(self, job_id: str) -> None:
        """The second worker of this home takes a job the server sent it (its own connection)."""
        if self.other is None:
            self.other = Journal(self.home, URL)
            self.other.open()
            self.other.set_user(1)
        if self.other.reserve(job_id, "heavy") is None:
            self.other_holds.add(job_id)
            self.other.started(job_id)

    @precondition(lambda self: self.other is not None and bool(self.other_holds))
    @rule(data=st.data())
    def other_worker_finishes(self, data: st.DataObject) -> None:
        assert self.other is not None
        job_id = data.draw(st.sampled_from(sorted(self.other_holds)))
        self.other.result(job_id, protocol.encode_result_ok(job_id, {"by": "other"}))

    @precondition(lambda self: self.other is not None)
    @rule()
    def other_worker_dies(self) -> None:
        assert self.other is not None
        self.other.close()
        self.other = None

    @precondition(lambda self: bool(self.rechecks))
    @rule(data=st.data())
    def recheck_fires(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(self.rechecks))
        self.rechecks.remove(key)
        self._do(TimerFired("recheck", key))

    @rule()
    def crash(self) -> None:
        """The worker's process dies (kernel restart): its jobs die with it; a new worker opens the journal."""
        self.journal.close()
        self.rechecks = []
        self._new_core()

    @rule()
    def settle(self) -> None:
        """Jobs end, a connection comes up, the server confirms what it got: nothing may be left unconfirmed."""
        if self.other is not None:  # the other worker's jobs are settled by the journal once it has gone
            self.other_worker_dies()
        while self.running:  # ending one job may start a queued one
            job_id = min(self.running)
            self.running.discard(job_id)
            self.outcomes[job_id] = "ok"
            self._do(JobEnded(job_id, "ok", data={}))
        if not self.core.connected:
            if self.core.live_connection is not None:
                self.drop()
            self.connect(version=1)
        while self.rechecks:
            self._do(TimerFired("recheck", self.rechecks.pop(0)))
        assert self.core.idle, "a job the journal held was never settled"
        while self.pings:
            conn, ping = self.pings.pop(0)
            self._do(PongReceived(conn, ping))
        pending = [job_id for job_id, _ in self.core.outbox.pending()]
        for job_id in pending:  # protocol 2: the server acks what it got
            self._do(FrameReceived(self.conn, protocol.encode_ack(job_id)))
        assert len(self.core.outbox) == 0, self.core.outbox.pending()
        assert self.accepted <= self.confirmed, self.accepted - self.confirmed

    # ------------------------------------------------------------------ invariants

    @invariant()
    def never_runs_twice(self) -> None:
        assert all(n == 1 for n in self.started.values()), self.started
        assert not (set(self.started) & self.other_holds), "ran a job the other worker of this home took"

    @invariant()
    def progress_never_follows_its_result(self) -> None:
        for frames in self.sent.values():
            answered: set[str] = set()
            for kind, job_id in frames:
                if kind == "result":
                    answered.add(job_id)
                else:
                    assert job_id not in answered, frames

    @invariant()
    def answered_once_per_ask(self) -> None:
        for (gen, conn), frames in self.sent.items():
            results = Counter(job_id for kind, job_id in frames if kind == "result")
            for job_id, n in results.items():
                assert n <= self.asks[(gen, conn, job_id)] + 1, (job_id, n, frames)

    @invariant()
    def nothing_lost(self) -> None:
        pending = {job_id for job_id, _ in self.core.outbox.pending()}
        durable = {  # what the journal holds for the next worker to claim
            row[0] for row in self.journal._require().execute("SELECT job_id FROM jobs WHERE state != 'confirmed'")
        }
        lost = self.accepted - self.confirmed - pending - self.core.active - durable
        assert not lost, lost

    @invariant()
    def the_server_gets_the_real_outcome(self) -> None:
        """A job that ran to an end is reported with that end, never replaced (e.g. by "restarted")."""
        for job_id, outcome in self.outcomes.items():
            first = self.first_result.get(job_id)
            if first is not None:
                assert first["success"] == (outcome == "ok"), (job_id, outcome, first)
                assert bool(first.get("cancelled")) == (outcome == "cancelled"), (job_id, outcome, first)

    @invariant()
    def memory_bounded(self) -> None:
        assert len(self.core.jobs) <= CAPS["MAX_JOB_RECORDS"] + CAPS["MAX_ACTIVE_JOBS"]
        assert len(self.core.active) <= CAPS["MAX_ACTIVE_JOBS"]
        assert len(self.core.outbox._delivered) <= REMEMBER
        assert len(self.core._forgotten) <= core_module.MAX_FORGOTTEN_IDS


WorkerModel.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestWorkerModel = WorkerModel.TestCase


# ---------------------------------------------------------------------------------------------- frame fuzzing

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_types = st.sampled_from(["job", "cancel", "ack", "auth_response", "auth_failed", "connected", "ping", "", 1, None])
_frames = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    _json.map(json.dumps),
    st.fixed_dictionaries(
        {"type": _types},
        optional={"job_id": st.one_of(st.sampled_from(JOB_IDS), _json), "action": _json, "params": _json},
    ).map(lambda d: json.dumps(d, allow_nan=True)),
)


@settings(max_examples=600, deadline=None)
def _fuzz(frame: str | bytes, ready: bool) -> None:
    config = CoreConfig(URL, "m", "t", {}, ACTIONS)
    core = WorkerCore("tok", config)
    core.handle(Start(), 0.0)
    core.handle(ConnectionOpened(1), 0.0)
    if ready:
        core.handle(FrameReceived(1, protocol.encode_auth_response(1, protocol=2)), 0.0)
    out = core.handle(FrameReceived(1, frame), 1.0)  # never raises
    assert out, "every frame is acted on or logged"
    answered = [a for a in out if isinstance(a, SendFrame) and a.kind == "result"]
    for action in answered:
        msg = json.loads(action.frame)
        assert msg["type"] == "result" and isinstance(msg["job_id"], str) and msg["success"] is False


def test_every_frame_is_answered_or_skipped_with_a_log_line_and_none_raises() -> None:
    from hypothesis import given

    given(frame=_frames, ready=st.booleans())(_fuzz)()
