"""What a job's run raising an exception means for its result: cancelled, failed with the handler's own
sentence, or failed with a sentence pointing to the local log (the traceback stays on this machine)."""

from __future__ import annotations

import asyncio
import logging

from .core import JobEnded, StartJob
from .errors import JobCancelled, JobError
from .shutdown import exiting

log = logging.getLogger("statsbot_nb.driver")


def ended_by(action: StartJob, exc: BaseException) -> JobEnded:
    """The outcome of ``action`` whose run raised ``exc``; re-raises what is not the job's to report
    (``KeyboardInterrupt``, ``SystemExit``)."""
    job_id = action.job_id
    if isinstance(exc, asyncio.CancelledError | JobCancelled):
        error = str(exc) if isinstance(exc, JobCancelled) and str(exc) else "The job was cancelled."
        return JobEnded(job_id, "cancelled", error=error)
    if isinstance(exc, JobError):
        return JobEnded(job_id, "error", error=str(exc))
    if not isinstance(exc, Exception):
        raise exc
    if exiting():  # the interpreter is going away under the job: not an internal error to report loudly
        log.debug("Job %s (%s) stopped as the interpreter exited", job_id, action.action, exc_info=exc)
        return JobEnded(job_id, "error", error="The worker stopped: the Python process it ran in exited.")
    log.error("Job %s (%s) failed inside the worker", job_id, action.action, exc_info=exc)
    error = (
        f"The worker hit an internal error running {action.action} "
        f"({type(exc).__name__}); details are in the worker's local log."
    )
    return JobEnded(job_id, "error", error=error)
