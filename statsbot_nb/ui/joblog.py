"""The panel's job log as HTML: readable at any width, names before ids, files relative to their folder.

Each finished job is one row (time, action, file, status, duration, outcome). What a person reads first
is shown and what a machine needs is on hover (a ``title``): a trained model shows the display name the
user gave ("Churn forest") with its id on hover; a prediction names the model the same way when the
panel knows it; a file shows its path relative to the allowed folder it is in (the most specific one),
the whole path on hover. Fields wrap as wholes instead of being cut, so nothing is lost in a narrow side panel.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePath
from typing import Any

from ..core import JobRecord
from ..jobs import file_of
from . import theme

#: the longest cell text shown in full; longer text is cut with its whole on hover
MAX_CELL = 200
_WRAP = "overflow-wrap:break-word;min-width:0"
_LINE = "display:flex;flex-wrap:wrap;gap:0 12px;align-items:baseline"
_ROW = "padding:2px 0;border-bottom:1px solid rgba(128,128,128,.2)"


def relative_file(path: str, folders: Iterable[PurePath]) -> str:
    """``path`` relative to the most specific of ``folders`` containing it (home shown as ``~``); else as is."""
    if not path:
        return ""
    target = PurePath(path)
    best: PurePath | None = None
    for folder in folders:
        try:
            target.relative_to(folder)
        except ValueError:
            continue
        if best is None or len(folder.parts) > len(best.parts):
            best = folder
    if best is None:
        return path
    inside = str(target.relative_to(best))
    return inside if inside != "." else target.name


def outcome_of(job: JobRecord, names: Mapping[str, str]) -> tuple[str, str]:
    """What the outcome cell shows, and its hover text (the full message with ids)."""
    if job.status != "done":
        error = job.error or job.status
        return error, error
    message = job.message or ""
    result = job.result if isinstance(job.result, Mapping) else {}
    model_id = result.get("model_id") or job.params.get("model_id")
    name = result.get("display_name") or (names.get(model_id) if isinstance(model_id, str) else None)
    if isinstance(model_id, str) and model_id and isinstance(name, str) and name:
        shown = message.replace(model_id, f"“{name}”", 1) if model_id in message else f"“{name}”: {message}"
        return shown, message
    return message, message


def _field(text: str, hover: str = "", marker: str = "", wrap: bool = False) -> str:
    """One field of a job's line: kept whole (it moves to the next line rather than being split), unless
    ``wrap`` (a file name or an outcome: split between words, and inside one only when it alone is too wide)."""
    shown = text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"
    title = hover or (text if shown != text else "")
    title_attr = f" title='{html.escape(title, quote=True)}'" if title else ""
    lead = f"{marker} " if marker else ""
    style = _WRAP if wrap else "white-space:nowrap"
    return f"<span class='statsbot-logcell' style='{style}'{title_attr}>{lead}{html.escape(shown)}</span>"


def log_html(
    jobs: Sequence[JobRecord], folders: Iterable[PurePath], names: Mapping[str, str], max_rows: int = 30
) -> str:
    """The job log of ``jobs`` (finished ones, newest first, at most ``max_rows`` and a summary line).

    Each job is a line of short fields (status, time, action, file, duration) that wraps as a whole at a
    narrow width, and its outcome below it: no table column to squeeze, so nothing is cut or split letter by
    letter in a 350 px side panel.
    """
    finished = sorted((j for j in jobs if j.finished), key=lambda j: j.ended_at or j.accepted_at, reverse=True)
    if not finished:
        return "<i>No finished jobs yet: jobs the bot sends appear here when they end.</i>"
    folders = list(folders)
    rows = []
    for job in finished[:max_rows]:
        started = time.localtime(job.started_at or job.accepted_at)
        colour = theme.OK if job.status == "done" else theme.ERROR if job.status == "failed" else theme.MUTED
        path = file_of(job.params)
        shown, hover = outcome_of(job, names)
        fields = [
            _field(job.status, marker=theme.dot(colour)),
            _field(time.strftime("%H:%M:%S", started), time.strftime("%Y-%m-%d %H:%M:%S", started)),
            _field(job.action, f"job {job.job_id}"),
            _field(relative_file(path, folders), path, wrap=True) if path else "",
            _field(f"{job.duration:.1f} s" if job.duration is not None else "-", "duration"),
        ]
        line = f"<div style='{_LINE}'>{''.join(f for f in fields if f)}</div>"
        outcome = f"<div style='padding-left:1.2em'>{_field(shown, hover, wrap=True)}</div>" if shown else ""
        rows.append(f"<div class='statsbot-logrow' style='{_ROW}'>{line}{outcome}</div>")
    older = finished[max_rows:]
    if older:
        failed = sum(1 for j in older if j.status != "done")
        rows.append(
            f"<div class='statsbot-logrow statsbot-logolder' style='{_ROW}'><i>... {len(older)} older job(s): "
            f"{len(older) - failed} done, {failed} failed or cancelled</i></div>"
        )
    return f"<div style='max-width:100%'>{''.join(rows)}</div>"


def names_of(entries: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Model id -> display name, from the model browser's listing."""
    return {str(e["model_id"]): str(e["display_name"]) for e in entries if e.get("model_id") and e.get("display_name")}


__all__ = ["log_html", "names_of", "outcome_of", "relative_file"]
