"""The learning curves of running jobs, as their job processes send them: kept per job, published as events.

A job that trains a model in rounds sends its curve's newest rounds a few times a second (see
:meth:`statsbot_nb.context.JobContext.curve_point`). The driver hands each chunk here: it is added to the
job's :class:`~statsbot_nb.ml.curves.LiveCurve` (bounded, so a 100,000-round fit costs a fixed amount of
memory) and published as a :class:`~statsbot_nb.events.JobCurve` for observers (the panel draws it).

Local only by construction: nothing here reaches the core, which alone decides what is sent, so a curve
can never leave the machine; the progress frames stay exactly as they were.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from .events import Event, EventBus, JobCurve, JobFailed, JobFinished
from .ml.curves import LiveCurve

log = logging.getLogger(__name__)

#: Jobs whose curves are kept at once (more running jobs than this would be a runaway; the oldest goes).
MAX_JOBS = 64


class CurveBook:
    """Job id -> :class:`LiveCurve` of the jobs running now; a job's curve goes when the job ends (its
    :class:`JobFinished` or :class:`JobFailed` event), or when :data:`MAX_JOBS` newer ones came."""

    def __init__(self, events: EventBus) -> None:
        self._events = events
        self._curves: dict[str, LiveCurve] = {}
        events.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, JobFinished | JobFailed):
            self.end(event.job_id)

    @property
    def curves(self) -> Mapping[str, LiveCurve]:
        """The running jobs' curves (read only)."""
        return self._curves

    def sink(self, job_id: str, action: str) -> Callable[[dict[str, Any]], None]:
        """The callable a runner gives a job's curve chunks to (on the event loop's thread)."""
        return lambda chunk: self.add(job_id, action, chunk)

    def add(self, job_id: str, action: str, chunk: Any) -> None:
        """Add ``chunk`` to the job's curve and publish it; a malformed chunk is logged and dropped."""
        if not isinstance(chunk, dict):
            return
        curve = self._curves.get(job_id)
        if curve is None:
            while len(self._curves) >= MAX_JOBS:
                self._curves.pop(next(iter(self._curves)))
            curve = self._curves[job_id] = LiveCurve()
        try:
            curve.add(chunk)
        except (TypeError, ValueError, AttributeError):
            log.warning("Dropped a malformed learning-curve chunk of job %s", job_id, exc_info=True)
            return
        self._events.publish(JobCurve(job_id, action, chunk))

    def end(self, job_id: str) -> None:
        """Forget the job's curve (it ended; the model keeps the whole curve in its metadata)."""
        self._curves.pop(job_id, None)
