"""Plain-text views of the worker, shared by the panel's text fallback, the magics and the CLI-like output.

Nothing here imports ipywidgets or IPython: where widgets cannot render (a terminal IPython, nbconvert to
text) these strings are what the user sees.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from ..jobs import file_of
from ..ml.headline import headline_text
from ..worker import JobRecord, Worker


def status_line(worker: Worker | None) -> str:
    """One line: the state in words."""
    if worker is None:
        return "Not connected. Paste the token from /connect in the bot and click Connect."
    return f"{worker.state}: {worker.status_message}"


def job_line(job: JobRecord) -> str:
    """One line per job: time, action, file, status, duration, outcome."""
    when = time.strftime("%H:%M:%S", time.localtime(job.started_at or job.accepted_at))
    file = file_of(job.params)
    seconds = job.elapsed(time.time())
    duration = f"{seconds:.1f} s" if seconds is not None else "-"
    if job.status == "running":
        eta = f", ~{job.eta:.0f} s left" if job.eta is not None else ""
        outcome = f"{job.progress:.0f}% {job.message}{eta}"
    else:
        outcome = job.error if job.status in ("failed", "cancelled") else job.message
    parts = [when, job.action, file, job.status, duration, outcome or ""]
    return "  ".join(p for p in parts if p)


def jobs_text(jobs: Iterable[JobRecord], limit: int = 20) -> str:
    """The newest ``limit`` jobs, newest first, with a summary of older ones."""
    records = list(jobs)[::-1]
    if not records:
        return "No jobs yet."
    lines = [job_line(job) for job in records[:limit]]
    older = records[limit:]
    if older:
        counts: dict[str, int] = {}
        for job in older:
            counts[job.status] = counts.get(job.status, 0) + 1
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        lines.append(f"... and {len(older)} older job(s): {summary}")
    return "\n".join(lines)


def models_text(models: list[dict[str, Any]]) -> str:
    """The local models, newest first: id, name, task, headline metric, when (``%statsbot models``)."""
    if not models:
        return "No models in the local store yet."
    lines = []
    for m in models:
        score = headline_text(m) or "-"
        lines.append(
            "  ".join(
                str(x)
                for x in (
                    m.get("model_id"),
                    repr(m.get("display_name")),
                    m.get("task_type") or "?",
                    score,
                    m.get("created_at") or "",
                )
            )
        )
    return "\n".join(lines)


def status_text(worker: Worker | None) -> str:
    """State, allowed folders, data sharing and job counts (``%statsbot status``)."""
    lines = [f"StatsBot worker - {status_line(worker)}"]
    if worker is not None:
        extra = ", ".join(str(p) for p in worker.settings.allowed_dirs) or "none"
        lines.append(f"Allowed folders: your home, the working folder, extra: {extra}")
        lines.append(f"Data sharing (load_data): {'on' if worker.settings.share_data else 'off'}")
        counts: dict[str, int] = {}
        for job in worker.jobs.values():
            counts[job.status] = counts.get(job.status, 0) + 1
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none yet"
        lines.append(f"Jobs: {summary}")
    return "\n".join(lines)


def worker_text(worker: Worker | None, limit: int = 10) -> str:
    """The whole panel as text: the status and the recent jobs."""
    if worker is None:
        return status_text(None)
    return status_text(worker) + "\n" + jobs_text(worker.jobs.values(), limit)
