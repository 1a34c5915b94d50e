"""The core's jobs that wait: for the journal to settle an id another worker holds, or for the user's approval.

Part of :class:`~statsbot_nb.core.machine.WorkerCore` (see :mod:`.jobbook` for the rest of the job decisions).
"""

from __future__ import annotations

import logging

from .. import protocol
from . import limits
from .jobbook import JobDecisions
from .limits import DENIED, HELD_ELSEWHERE
from .vocabulary import Action, Log, ScheduleTimer


class JobHolds(JobDecisions):
    """Watching ids the journal cannot settle yet, and jobs waiting for the user's answer."""

    def _watch(self, job: protocol.Job, state: str, now: float, out: list[Action]) -> None:
        tries = self._watch_tries.get(job.job_id, 0) + 1
        if tries > limits.RECHECK_GIVE_UP:
            self._watch_tries.pop(job.job_id, None)
            self._fail_at_once(job.job_id, job.action, HELD_ELSEWHERE.format(job_id=job.job_id), now, out)
            return
        self._watch_tries[job.job_id] = tries
        if tries == 1:
            why = "the job journal could not be read" if state == "unknown" else "another worker here holds it"
            out.append(Log(logging.INFO, f"Job {job.job_id} waits: {why}; it is not run twice"))
        self._watch_key += 1
        self._watching[self._watch_key] = job
        out.append(ScheduleTimer("recheck", limits.RECHECK_S, self._watch_key))

    def _recheck(self, key: int, now: float, out: list[Action]) -> None:
        """Ask the journal again about a job it could not settle (see :meth:`_on_reserved`)."""
        job = self._watching.pop(key, None)
        if job is None:
            return
        if self._stopping:
            self._watch_tries.pop(job.job_id, None)  # its holder answers it; this worker is leaving
            return
        if self._phase != "ready":
            self._held.append(job)  # asked again once connected
            return
        self._accept(job, now, out)

    def _on_approval(self, job_id: str, answer: str, now: float, out: list[Action]) -> bool:
        """The user allowed or denied a waiting job; "always" allows every later job of that action too."""
        record = self.jobs.get(job_id)
        if job_id not in self._awaiting or record is None:
            return False
        self._awaiting.discard(job_id)
        if answer == "deny":
            self._finish(record, "error", None, DENIED, now, out)
            return True
        self._queued[record.isolated].append(job_id)
        if answer == "always":
            self._always_allowed.add(record.action)
            for other in sorted(self._awaiting):  # the same action, already waiting: allowed too
                waiting = self.jobs.get(other)
                if waiting is not None and waiting.action == record.action:
                    self._awaiting.discard(other)
                    self._queued[waiting.isolated].append(other)
        self._start_ready(now, out)
        return True

    def _set_ask(self, ask: bool, now: float, out: list[Action]) -> None:
        self._ask = ask
        if not ask:
            for job_id in sorted(self._awaiting):
                self._on_approval(job_id, "allow", now, out)
