"""The core's job decisions: accepting, slots, duplicates, outcomes, the outbox and what the journal records."""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, Literal

from .. import protocol
from ..events import (
    ApprovalNeeded,
    JobAccepted,
    JobFailed,
    JobFinished,
    JobProgress,
    JobStarted,
    LogLine,
)
from ..jobs import describe_job, summarize, unknown_action_error
from ..journal import Restored
from ..outbox import Outbox
from . import limits
from .limits import RESTARTED, STOPPING
from .vocabulary import (
    Action,
    CancelJob,
    CoreConfig,
    JobEnded,
    JobProgressed,
    JobRecord,
    JobReserved,
    JournalConfirmed,
    JournalResult,
    JournalStarted,
    Log,
    PongReceived,
    Publish,
    ReserveJob,
    SendFrame,
    SendPing,
    StartJob,
    bounded_params,
)


class JobDecisions:
    """Job bookkeeping for :class:`~statsbot_nb.core.machine.WorkerCore` (a mixin: it shares its state)."""

    config: CoreConfig
    jobs: dict[str, JobRecord]
    outbox: Outbox
    server_protocol: int
    _phase: str
    _conn: int
    _stopping: bool
    _queued: dict[bool, list[str]]
    _running: dict[bool, int]
    _active: set[str]
    _forgotten: OrderedDict[str, None]
    _ping: int
    _reserving: set[str]
    _watching: dict[int, protocol.Job]
    _watch_tries: dict[str, int]
    _held: list[protocol.Job]
    _params: dict[str, dict[str, Any]]
    _ask: bool
    _awaiting: set[str]
    _always_allowed: set[str]
    _watch_key: int
    _pings: dict[int, tuple[int, tuple[str, ...]]]

    def _on_pong(self, event: PongReceived, out: list[Action]) -> None:
        entry = self._pings.pop(event.ping, None)
        if entry is None or entry[0] != event.conn:
            return
        for job_id in entry[1]:
            self._confirm(job_id, out)

    def _confirm(self, job_id: str, out: list[Action]) -> None:
        if self.outbox.confirm(job_id):
            out.append(Log(logging.DEBUG, f"Result for {job_id} confirmed"))
            record = self.jobs.get(job_id)
            if record is None or record.journaled:
                out.append(JournalConfirmed(job_id))
        else:
            out.append(Log(logging.DEBUG, f"Confirmation for {job_id}, which has no pending result"))

    # ------------------------------------------------------------------ jobs

    def _accept(self, job: protocol.Job, now: float, out: list[Action]) -> None:
        if self._answer_again(job.job_id, out):
            return
        if self._stopping:
            self._fail_at_once(job.job_id, job.action, STOPPING, now, out)
            return
        if len(self._active) >= limits.MAX_ACTIVE_JOBS:
            error = (
                f"This worker already has {len(self._active)} jobs queued or running; "
                "send this one again when some have finished."
            )
            self._fail_at_once(job.job_id, job.action, error, now, out)
            return
        spec = self.config.actions.get(job.action)
        if spec is None:
            self._fail_at_once(job.job_id, job.action, unknown_action_error(job.action, self.config.actions), now, out)
            return
        # The record (kept after the job ends, shown in the panel) holds a bounded copy of the parameters;
        # the full ones (a save_file table can be many MB) live only until the job starts.
        record = JobRecord(
            job.job_id,
            job.action,
            bounded_params(job.params),
            accepted_at=now,
            isolated=spec.isolated,
            journaled=spec.journaled,
        )
        self._params[job.job_id] = job.params
        self.jobs[job.job_id] = record
        self._active.add(job.job_id)
        self._reserving.add(job.job_id)
        if spec.journaled:
            out.append(ReserveJob(job.job_id, job.action))  # the journal answers with JobReserved
        else:  # read-only: nothing to reserve, it may run again after a restart
            self._on_reserved(JobReserved(job.job_id, None), now, out)

    def _on_reserved(self, event: JobReserved, now: float, out: list[Action]) -> None:
        """The journal's answer: a new id runs; an id it already holds is answered from there, never re-run."""
        job_id = event.job_id
        if job_id not in self._reserving:
            return
        self._reserving.discard(job_id)
        record = self.jobs.get(job_id)
        if record is None or record.finished:
            return  # cancelled while the journal was asked
        existing = event.existing
        if existing is None:
            out.append(Publish(JobAccepted(job_id, record.action, dict(record.params))))
            if self._ask and record.action not in self._always_allowed:
                self._awaiting.add(job_id)
                description = describe_job(record.action, record.params)
                out.append(Publish(ApprovalNeeded(job_id, record.action, description)))
                out.append(Log(logging.INFO, f"Job {job_id} waits for the user to allow it"))
                return
            self._queued[record.isolated].append(job_id)
            self._start_ready(now, out)
            return
        del self.jobs[job_id]
        self._active.discard(job_id)
        params = self._params.pop(job_id, record.params)
        if existing.frame is not None:
            out.append(Log(logging.INFO, f"Job {job_id} is in the journal with a result; re-sending it"))
            self._remember_forgotten(job_id)
            self._send_result(job_id, existing.frame, out, journal=False)
        elif existing.state == "confirmed":
            self._remember_forgotten(job_id)
            self._answer_again(job_id, out)
        elif existing.owner_alive:
            # Another worker of this home holds it (it answers on its own connection, unless it dies first:
            # its lock may outlive its connection by a moment), or the journal could not be read just now.
            # Never run it on a guess: look again until the journal settles it.
            self._watch(protocol.Job(job_id, record.action, params), existing.state, now, out)
        else:
            state = "running" if existing.state == "running" else "waiting to run"
            self._fail_at_once(job_id, record.action, RESTARTED.format(state=state), now, out)
        if existing.owner_alive is False or existing.frame is not None or existing.state == "confirmed":
            self._watch_tries.pop(job_id, None)

    def _answer_again(self, job_id: str, out: list[Action]) -> bool:
        """A job id seen before is never run twice; True when it needs nothing more (still running, or answered).

        A finished job's result is sent again while it is remembered (a malformed repeat of the frame must
        not replace it); after that, a failed result says the job already ran.
        """
        known = self.jobs.get(job_id)
        if known is not None and not known.finished:
            out.append(Log(logging.INFO, f"Job {job_id} arrived again while still running; keeping the running one"))
            return True
        frame = self.outbox.known(job_id)
        if frame is not None:
            out.append(
                Log(logging.INFO, f"Job {job_id} arrived again; re-sending its result instead of running it twice")
            )
            self._send_result(job_id, frame, out, journal=False)
            return True
        if known is not None or job_id in self._forgotten:
            out.append(Log(logging.INFO, f"Job {job_id} arrived again after its result was confirmed; not run twice"))
            error = (
                f"Job {job_id} already ran on this worker and its result was delivered; it is not run "
                "twice. Start a new job to run it again."
            )
            self._send_result(job_id, protocol.encode_result_error(job_id, error), out, journal=False, keep=False)
            return True
        return False

    def _fail_at_once(self, job_id: str, action: str, error: str, now: float, out: list[Action]) -> None:
        """Answer a job that cannot even start (unknown action, malformed, over the limit) with a failed result."""
        if self._answer_again(job_id, out):
            return
        record = JobRecord(job_id, action, {}, status="failed", error=error, accepted_at=now)
        record.started_at = record.ended_at = now
        record.message = error
        self.jobs[job_id] = record
        self._send_result(job_id, protocol.encode_result_error(job_id, error), out)
        out.append(Publish(JobFailed(job_id, action, 0.0, error)))
        self._prune()

    def _start_ready(self, now: float, out: list[Action]) -> None:
        for isolated, limit in ((True, self.config.max_jobs), (False, limits.LIGHT_SLOTS)):
            queue = self._queued[isolated]
            while queue and self._running[isolated] < limit:
                record = self.jobs[queue.pop(0)]
                self._running[isolated] += 1
                record.status, record.stage, record.started_at = "running", "starting", now
                if record.journaled:
                    out.append(JournalStarted(record.job_id))
                out.append(Publish(JobStarted(record.job_id, record.action)))
                # A light job (the store's listing, a rename) answers within milliseconds: its start is
                # shown locally, and the server gets only the result, as from today's worker.
                self._progress(record, 0.0, f"Started {record.action}", "starting", now, out, send=isolated)
                spec = self.config.actions[record.action]
                params = self._params.pop(record.job_id, record.params)
                out.append(StartJob(record.job_id, record.action, params, spec))

    def _on_progress(self, event: JobProgressed, now: float, out: list[Action]) -> None:
        record = self.jobs.get(event.job_id)
        if record is None or record.status != "running":
            return
        self._progress(record, event.percent, event.message, event.stage, now, out)

    def _progress(
        self,
        record: JobRecord,
        percent: float,
        message: str,
        stage: str,
        now: float,
        out: list[Action],
        send: bool = True,
    ) -> None:
        record.progress, record.message, record.stage = percent, message, stage
        elapsed = now - (record.started_at if record.started_at is not None else now)
        record.eta = elapsed * (100.0 - percent) / percent if 1.0 <= percent < 100.0 else None
        out.append(Publish(JobProgress(record.job_id, record.action, percent, stage, message, record.eta)))
        if self._phase == "ready" and send:
            frame = protocol.encode_progress(record.job_id, percent, message, status=stage)
            out.append(SendFrame(self._conn, frame, "progress", record.job_id))

    def _on_job_ended(self, event: JobEnded, now: float, out: list[Action]) -> None:
        record = self.jobs.get(event.job_id)
        if record is None or record.status != "running":
            return
        self._running[record.isolated] -= 1
        self._finish(record, event.outcome, event.data, event.error, now, out)
        self._start_ready(now, out)

    def _finish(
        self,
        record: JobRecord,
        outcome: Literal["ok", "error", "cancelled"],
        data: dict[str, Any] | None,
        error: str,
        now: float,
        out: list[Action],
    ) -> None:
        """Give ``record`` its outcome, keep and send its result, tell observers."""
        if outcome == "ok":
            try:  # encode before any state changes: a result that cannot be sent becomes a failure
                frame = protocol.encode_result_ok(record.job_id, data or {})
            except Exception as exc:
                out.append(Log(logging.ERROR, f"Job {record.job_id}: its result could not be encoded ({exc!r})"))
                outcome, error = (
                    "error",
                    (
                        f"The {record.action} job finished but its result could not be encoded as JSON "
                        f"({type(exc).__name__}); details are in the worker's local log."
                    ),
                )
        record.ended_at = now
        if record.started_at is None:
            record.started_at = now
        if outcome == "ok":
            record.status, record.result, record.progress = "done", data or {}, 100.0
        elif outcome == "cancelled":
            record.status, record.error = "cancelled", error or "The job was cancelled."
            frame = protocol.encode_result_error(record.job_id, record.error, cancelled=True)
        else:
            record.status, record.error = "failed", error or "The job failed."
            frame = protocol.encode_result_error(record.job_id, record.error)
        self._active.discard(record.job_id)
        self._params.pop(record.job_id, None)
        self._send_result(record.job_id, frame, out, journal=record.journaled)
        duration = record.duration or 0.0
        if record.status == "done":
            record.message = summarize(record.action, record.result or {})
            out.append(
                Publish(JobFinished(record.job_id, record.action, duration, record.message, record.result or {}))
            )
        else:
            record.message = record.error or ""
            out.append(
                Publish(
                    JobFailed(
                        record.job_id, record.action, duration, record.message, cancelled=record.status == "cancelled"
                    )
                )
            )
        self._prune()

    def _send_result(
        self, job_id: str, frame: str, out: list[Action], *, journal: bool = True, keep: bool = True
    ) -> None:
        """Keep a result until confirmed (durably first), and send it now if connected."""
        if keep:
            if journal:
                out.append(JournalResult(job_id, frame))
            self.outbox.add(job_id, frame)
        if self._phase != "ready":
            return
        out.append(SendFrame(self._conn, frame, "result", job_id))
        if self.server_protocol < 2 and keep:
            # Without acks, a pong received after the result frame proves the server has it.
            self._ping += 1
            self._pings[self._ping] = (self._conn, (job_id,))
            out.append(SendPing(self._conn, self._ping))

    def _cancel(self, job_id: str, now: float, out: list[Action]) -> bool:
        record = self.jobs.get(job_id)
        if record is None or record.finished or job_id not in self._active:
            return False
        if record.status == "queued":
            if job_id in self._queued[record.isolated]:
                self._queued[record.isolated].remove(job_id)
            self._reserving.discard(job_id)
            self._awaiting.discard(job_id)
            self._finish(record, "cancelled", None, "The job was cancelled before it started.", now, out)
            return True
        if not record.cancel_requested:
            record.cancel_requested = True
            out.append(CancelJob(job_id))
        return True

    def _on_restored(self, event: Restored, now: float, out: list[Action]) -> None:
        for job_id in event.finished:
            self._remember_forgotten(job_id)
        for job_id, frame in event.pending:
            if job_id not in self.jobs and self.outbox.known(job_id) is None:
                self._send_result(job_id, frame, out, journal=False)
        for job_id, action, state in event.interrupted:
            if job_id in self.jobs or self.outbox.known(job_id) is not None:
                continue
            error = RESTARTED.format(state="running" if state == "running" else "waiting to run")
            record = JobRecord(job_id, action, {}, status="failed", error=error, message=error, accepted_at=now)
            record.started_at = record.ended_at = now
            self.jobs[job_id] = record
            self._send_result(job_id, protocol.encode_result_error(job_id, error), out)
            out.append(Publish(JobFailed(job_id, action, 0.0, error)))
        if event.pending or event.interrupted:
            message = (
                f"Restored from the journal: {len(event.pending)} result(s) the server had not confirmed, "
                f"{len(event.interrupted)} job(s) interrupted by a restart (answered as failed)."
            )
            out.append(Log(logging.INFO, message))
            out.append(Publish(LogLine("info", message)))
        self._prune()

    def _remember_forgotten(self, job_id: str) -> None:
        self._forgotten[job_id] = None
        self._forgotten.move_to_end(job_id)
        while len(self._forgotten) > limits.MAX_FORGOTTEN_IDS:
            self._forgotten.popitem(last=False)

    def _prune(self) -> None:
        """Keep ``jobs`` bounded in a long session: forget the oldest finished records beyond the cap."""
        excess = len(self.jobs) - limits.MAX_JOB_RECORDS
        if excess <= 0:
            return
        oldest: list[str] = []
        for job_id, record in self.jobs.items():  # oldest first; stop at the excess (a long session: 10,000s)
            if record.finished:
                oldest.append(job_id)
                if len(oldest) == excess:
                    break
        for job_id in oldest:
            del self.jobs[job_id]
            self._remember_forgotten(job_id)
