"""The panel's rows: a running job (bar, stage, ETA, Cancel) and a job waiting for approval (Allow / Deny / Always)."""

from __future__ import annotations

import html
from collections.abc import Callable

import ipywidgets as W

from ..jobs import describe_job, file_of
from ..worker import JobRecord

Answer = Callable[[str, str], None]


#: Rows shown at most; more running jobs are counted on one line below them.
MAX_JOB_ROWS = 6
#: A job run in a thread (``list_models``, renames) gets a row only once it has taken this long: most take
#: milliseconds, and making a row's widgets costs the kernel's loop several milliseconds per row.
LIGHT_JOB_ROW_AFTER_S = 0.5


class JobRow:
    """A progress bar, stage/ETA label and Cancel button for one running job (re-bound to the next job
    when this one ends: widgets are made once and reused)."""

    def __init__(self, job: JobRecord | None, on_cancel: Callable[[str], None]) -> None:
        self.job_id = ""
        self.label = W.HTML()
        self.bar = W.FloatProgress(value=0.0, min=0.0, max=100.0, layout=W.Layout(width="40%"))
        self.bar.add_class("statsbot-progress")
        self.detail = W.Label("queued")
        self.cancel = W.Button(description="Cancel", button_style="warning", layout=W.Layout(width="80px"))
        self.cancel.add_class("statsbot-cancel")
        self.cancel.on_click(lambda _b: on_cancel(self.job_id) if self.job_id else None)
        self.box = W.HBox([self.label, self.bar, self.detail, self.cancel])
        if job is not None:
            self.bind(job)

    def bind(self, job: JobRecord) -> None:
        """Show ``job`` in this row from now on."""
        self.job_id = job.job_id
        self.label.value = f"<b>{html.escape(job.action)}</b> {html.escape(file_of(job.params))}"
        self.update(job)

    def update(self, job: JobRecord) -> None:
        """Show the job's progress, stage and ETA."""
        self.bar.value = float(job.progress)
        eta = f", ~{job.eta:.0f} s left" if job.eta is not None else ""
        self.detail.value = f"{job.progress:.0f}% {job.stage}: {job.message}{eta}"[:120]

    def close(self) -> None:
        """Close the row's widgets."""
        for widget in (self.label, self.bar, self.detail, self.cancel, self.box):
            widget.close()


class JobRows:
    """The panel's rows of running jobs: at most :data:`MAX_JOB_ROWS`, their widgets reused from job to job.

    A burst of quick jobs (fifty ``list_models`` at once) must not make and close hundreds of widgets on
    the kernel's loop: a thread job gets a row only after :data:`LIGHT_JOB_ROW_AFTER_S`, rows beyond the
    limit become one "and N more" line, and a finished job's row waits (hidden) for the next job.
    """

    def __init__(self, on_cancel: Callable[[str], None], *, ready: int = 2) -> None:
        self.rows: dict[str, JobRow] = {}
        self.more = W.HTML()
        self._on_cancel = on_cancel
        self._free = [JobRow(None, on_cancel) for _ in range(ready)]  # made with the panel, not mid-training

    def show(self, jobs: list[JobRecord], now: float) -> tuple[list[W.Widget], float | None]:
        """Bind rows to ``jobs`` (queued or running, oldest first); the widgets to show, and in how many
        seconds to look again (a quick job that may deserve a row by then), or None."""
        due: list[JobRecord] = []
        again: float | None = None
        for job in jobs:
            waited = now - job.accepted_at
            if job.isolated or waited >= LIGHT_JOB_ROW_AFTER_S or job.job_id in self.rows:
                due.append(job)
            else:
                left = LIGHT_JOB_ROW_AFTER_S - waited
                again = left if again is None else min(again, left)
        shown, hidden = due[:MAX_JOB_ROWS], len(due) - MAX_JOB_ROWS
        keep = {job.job_id for job in shown}
        for job_id in [j for j in self.rows if j not in keep]:
            row = self.rows.pop(job_id)
            row.job_id = ""
            self._free.append(row)
        for job in shown:
            row = self.rows.get(job.job_id)
            if row is None:
                row = self.rows[job.job_id] = self._free.pop() if self._free else JobRow(None, self._on_cancel)
                row.bind(job)
            else:
                row.update(job)
        for spare in self._free[MAX_JOB_ROWS:]:
            spare.close()
        del self._free[MAX_JOB_ROWS:]
        widgets: list[W.Widget] = [self.rows[job.job_id].box for job in shown]
        if hidden > 0:
            self.more.value = f"<i>... and {hidden} more job(s) queued or running</i>"
            widgets.append(self.more)
        return widgets, again

    def clear(self) -> None:
        """Forget every job (the panel follows another worker)."""
        self.show([], 0.0)


class ApprovalRow:
    """One job waiting for the user: its description in words and the three answers."""

    def __init__(self, job: JobRecord, on_answer: Answer) -> None:
        self.job_id = job.job_id
        description = html.escape(describe_job(job.action, job.params))
        self.label = W.HTML(
            f"<span style='color:#9a6700'><b>Waiting for you:</b></span> {description}",
            layout=W.Layout(width="60%"),
        )
        buttons = []
        for answer, text, style in (
            ("allow", "Allow", "success"),
            ("deny", "Deny", "danger"),
            ("always", "Always", ""),
        ):
            button = W.Button(description=text, button_style=style, layout=W.Layout(width="80px"))
            button.add_class(f"statsbot-{answer}")
            button.tooltip = {
                "allow": "run this job",
                "deny": "refuse it (the server is told you declined)",
                "always": f"run this and every later {job.action} job without asking",
            }[answer]
            button.on_click(lambda _b, a=answer: on_answer(self.job_id, a))
            buttons.append(button)
        self.box = W.HBox([self.label, *buttons])
