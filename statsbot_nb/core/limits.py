"""The core's caps and the sentences it answers with (one home, so tests and docs can name them)."""

from __future__ import annotations

from typing import Literal

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
#: Finished job records kept in ``jobs`` (their results stay re-sendable through the outbox).
MAX_JOB_RECORDS = 1000
#: Ids of jobs whose records were dropped, still remembered so that they never run twice.
MAX_FORGOTTEN_IDS = 20000
#: Jobs queued or running at once; beyond this a job is answered at once with a failed result.
MAX_ACTIVE_JOBS = 256
#: A connection must last this long (seconds) for the reconnect delays to start again from the shortest.
BACKOFF_RESET_AFTER_S = 30.0
#: Seconds between looks at a job another live worker of this home holds (it may have just died).
RECHECK_S = 1.0
#: Looks after which a job the journal cannot settle is answered with :data:`HELD_ELSEWHERE` (5 minutes).
RECHECK_GIVE_UP = 300
#: Quick jobs (threads) running at once.
LIGHT_SLOTS = 4
REJECTED_HINT = (
    "Get a fresh token (with /connect in the StatsBot bot, or from whoever runs your server) and connect again."
)
RESTARTED = (
    "The worker restarted (its process or notebook kernel ended) while this job was {state}, so it did not "
    "finish. Start it again."
)
STOPPING = "This worker is stopping (it was disconnected), so the job was not run. Send it again to a connected worker."
HELD_ELSEWHERE = (
    "Job {job_id} was not run: another StatsBot worker on this machine holds it (or the job journal could not be "
    "read) and nothing settled it for 5 minutes; this worker does not run a job twice. Send it again later."
)
DENIED = "The user of this worker declined to run this job on their machine."
