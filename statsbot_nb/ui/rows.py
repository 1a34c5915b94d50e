"""The panel's rows: a running job (bar, learning curve, stage, ETA, Cancel) and a job waiting for approval
(Allow / Deny / Always)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping

import ipywidgets as W

from ..jobs import describe_job, file_of
from ..ml.curves import LiveCurve
from ..worker import JobRecord
from . import theme
from .curvechart import curve_svg

Answer = Callable[[str, str], None]


#: Rows shown at most; more running jobs are counted on one line below them.
MAX_JOB_ROWS = 6
#: A job run in a thread (``list_models``, renames) gets a row only once it has taken this long: most take
#: milliseconds, and making a row's widgets costs the kernel's loop several milliseconds per row.
LIGHT_JOB_ROW_AFTER_S = 0.5
#: Splits a path at its separators (POSIX or Windows): the row shows the file's name, the title its path.
_LAST_PART = re.compile(r"[\\/]")
#: The stage text shows at most this many characters (it wraps; the whole text is the hover title).
MAX_DETAIL = 240


class JobRow:
    """A progress bar, learning-curve chart, stage/ETA text and Cancel button for one running job (re-bound
    to the next job when this one ends: widgets are made once and reused).

    The row wraps instead of cutting things off: at the notebook's width everything sits on one line, in a
    narrow side panel (~350 px) the chart, the stage text and the button move to lines of their own, and
    long stage text wraps (its whole text is also the hover title).
    """

    def __init__(self, job: JobRecord | None, on_cancel: Callable[[str], None]) -> None:
        self.job_id = ""
        self.label = W.HTML(layout=W.Layout(flex="0 1 auto", min_width="0"))
        self.bar = W.FloatProgress(
            value=0.0, min=0.0, max=100.0, layout=W.Layout(flex="1 1 120px", min_width="100px", max_width="320px")
        )
        self.bar.add_class("statsbot-progress")
        self.chart = W.HTML(layout=W.Layout(flex="0 0 auto", display="none"))
        self.chart.add_class("statsbot-curve-chart")
        self.detail = W.HTML("queued", layout=W.Layout(flex="1 1 180px", min_width="0"))
        self.detail.add_class("statsbot-job-detail")
        keep_whole = W.Layout(flex="0 0 auto", width="auto", min_width="76px")
        # "danger": white on ipywidgets' red is 4.98:1; on its "warning" orange it was 2.7:1 (front-end test)
        self.cancel = W.Button(description="Cancel", button_style="danger", layout=keep_whole)
        self.cancel.add_class("statsbot-cancel")
        self.cancel.on_click(lambda _b: on_cancel(self.job_id) if self.job_id else None)
        self.box = W.HBox(
            [self.label, self.bar, self.chart, self.detail, self.cancel],
            layout=W.Layout(flex_flow="row wrap", align_items="center", width="100%", grid_gap="2px 8px"),
        )
        self.box.add_class("statsbot-job-row")
        self._curve_version = -1
        if job is not None:
            self.bind(job)

    def bind(self, job: JobRecord, curve: LiveCurve | None = None) -> None:
        """Show ``job`` (and its learning curve, if it records one) in this row from now on."""
        self.job_id = job.job_id
        file = file_of(job.params)
        name = f"{job.action} {file}".strip()  # the whole path on hover; its last part in the row
        short = _LAST_PART.split(file)[-1]
        self.label.value = (
            f"<span title='{html.escape(name)}' style='overflow-wrap:anywhere;line-height:1.3'>"
            f"<b>{html.escape(job.action)}</b> {html.escape(short)}</span>"
        )
        self._curve_version = -1
        self.update(job, curve)

    def update(self, job: JobRecord, curve: LiveCurve | None = None) -> None:
        """Show the job's progress, stage and ETA, and its curve when it changed."""
        self.bar.value = float(job.progress)
        eta = f", ~{job.eta:.0f} s left" if job.eta is not None else ""
        text = f"{job.progress:.0f}% {job.stage}: {job.message}{eta}"
        shown = text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"
        self.detail.value = (
            f"<div title='{html.escape(text)}' style='line-height:1.3;white-space:normal;overflow-wrap:anywhere'>"
            f"{html.escape(shown)}</div>"
        )
        version = curve.version if curve is not None else -1
        if version != self._curve_version:
            self._curve_version = version
            self.chart.value = curve_svg(curve)
            self.chart.layout.display = "" if self.chart.value else "none"

    def close(self) -> None:
        """Close the row's widgets."""
        for widget in (self.label, self.bar, self.chart, self.detail, self.cancel, self.box):
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

    def show(
        self, jobs: list[JobRecord], now: float, curves: Mapping[str, LiveCurve] | None = None
    ) -> tuple[list[W.Widget], float | None]:
        """Bind rows to ``jobs`` (queued or running, oldest first; ``curves`` has the learning curves of those
        that record one); the widgets to show, and in how many seconds to look again (a quick job that may
        deserve a row by then), or None."""
        curves = curves or {}
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
                row.bind(job, curves.get(job.job_id))
            else:
                row.update(job, curves.get(job.job_id))
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
            f"<div style='line-height:1.3;white-space:normal;overflow-wrap:anywhere'>{theme.dot(theme.WARN)} "
            f"<b>Waiting for you:</b> {description}</div>",
            layout=W.Layout(flex="1 1 260px", min_width="0"),
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
        self.box = W.HBox([self.label, *buttons], layout=W.Layout(flex_flow="row wrap", align_items="center"))
