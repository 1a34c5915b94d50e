"""The panel's rows: a running job (bar, stage, ETA, Cancel) and a job waiting for approval (Allow / Deny / Always)."""

from __future__ import annotations

import html
from collections.abc import Callable

import ipywidgets as W

from ..jobs import describe_job, file_of
from ..worker import JobRecord

Answer = Callable[[str, str], None]


class JobRow:
    """A progress bar, stage/ETA label and Cancel button for one running job."""

    def __init__(self, job: JobRecord, on_cancel: Callable[[str], None]) -> None:
        self.job_id = job.job_id
        self.label = W.HTML(f"<b>{html.escape(job.action)}</b> {html.escape(file_of(job.params))}")
        self.bar = W.FloatProgress(value=0.0, min=0.0, max=100.0, layout=W.Layout(width="40%"))
        self.bar.add_class("statsbot-progress")
        self.detail = W.Label("queued")
        self.cancel = W.Button(description="Cancel", button_style="warning", layout=W.Layout(width="80px"))
        self.cancel.add_class("statsbot-cancel")
        self.cancel.on_click(lambda _b: on_cancel(self.job_id))
        self.box = W.HBox([self.label, self.bar, self.detail, self.cancel])

    def update(self, job: JobRecord) -> None:
        """Show the job's progress, stage and ETA."""
        self.bar.value = float(job.progress)
        eta = f", ~{job.eta:.0f} s left" if job.eta is not None else ""
        self.detail.value = f"{job.progress:.0f}% {job.stage}: {job.message}{eta}"[:120]


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
