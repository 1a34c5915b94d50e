"""The panel's job log as HTML: readable at any width, names before ids, files relative to their folder.

Each finished job is one row (time, action, file, status, duration, outcome). What a person reads first
is shown and what a machine needs is on hover (a ``title``): a trained model shows the display name the
user gave ("Churn forest") with its id on hover; a prediction names the model the same way when the
panel knows it; a file shows its path relative to the allowed folder it is in (the most specific one),
the whole path on hover. Cells wrap instead of being cut, so nothing is lost in a narrow side panel.
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
_CELL = "padding:1px 8px;vertical-align:top;overflow-wrap:anywhere;word-break:break-word"
HEADERS = ("time", "action", "file", "status", "duration", "outcome")


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


def _cell(text: str, hover: str = "", style: str = "", marker: str = "") -> str:
    shown = text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"
    title = hover or (text if shown != text else "")
    title_attr = f" title='{html.escape(title, quote=True)}'" if title else ""
    lead = f"{marker} " if marker else ""
    return f"<td style='{_CELL};{style}'{title_attr}>{lead}{html.escape(shown)}</td>"


def log_html(
    jobs: Sequence[JobRecord], folders: Iterable[PurePath], names: Mapping[str, str], max_rows: int = 30
) -> str:
    """The job log table of ``jobs`` (finished ones, newest first, at most ``max_rows`` and a summary line)."""
    finished = sorted((j for j in jobs if j.finished), key=lambda j: j.ended_at or j.accepted_at, reverse=True)
    if not finished:
        return "<i>No finished jobs yet: jobs the bot sends appear here when they end.</i>"
    folders = list(folders)
    rows = []
    for job in finished[:max_rows]:
        when = time.strftime("%H:%M:%S", time.localtime(job.started_at or job.accepted_at))
        colour = theme.OK if job.status == "done" else theme.ERROR if job.status == "failed" else theme.MUTED
        path = file_of(job.params)
        shown, hover = outcome_of(job, names)
        cells = [
            _cell(when, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.started_at or job.accepted_at))),
            _cell(job.action, f"job {job.job_id}"),
            _cell(relative_file(path, folders), path),
            _cell(job.status, marker=theme.dot(colour)),
            _cell(f"{job.duration:.1f} s" if job.duration is not None else "-"),
            _cell(shown, hover, "min-width:12em"),
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    older = finished[max_rows:]
    if older:
        failed = sum(1 for j in older if j.status != "done")
        rows.append(
            f"<tr><td colspan=6 style='{_CELL}'><i>... {len(older)} older job(s): "
            f"{len(older) - failed} done, {failed} failed or cancelled</i></td></tr>"
        )
    header = "".join(f"<th style='text-align:left;padding:1px 8px'>{h}</th>" for h in HEADERS)
    return (
        "<div style='max-width:100%;overflow-x:auto'><table style='border-collapse:collapse;width:100%'>"
        f"<thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def names_of(entries: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Model id -> display name, from the model browser's listing."""
    return {str(e["model_id"]): str(e["display_name"]) for e in entries if e.get("model_id") and e.get("display_name")}


__all__ = ["log_html", "names_of", "outcome_of", "relative_file"]
