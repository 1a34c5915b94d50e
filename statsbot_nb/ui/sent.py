"""The panel's "Sent to the server" tab and its warning box, as HTML built from the ledger's rows.

Everything shown comes from the server or the user's files (job ids, actions, warnings), so every cell is
escaped; only ``ui/`` builds HTML for widgets.
"""

from __future__ import annotations

import html
import time
from typing import Any

from ..ledgerview import describe_fields
from . import theme


def warning_html(message: str) -> str:
    return (
        f"<div style='border:1px solid {theme.ERROR};color:{theme.ERROR};padding:4px 8px'>"
        f"<b>Warning:</b> {html.escape(message)}</div>"
    )


def sent_html(rows: list[dict[str, Any]]) -> str:
    """The ledger's rows (newest first) as an HTML table: what left, when, and which carried your data."""
    intro = (
        "<p>Every frame this machine sent to the server, newest first (all of them: "
        "<code>statsbot_nb.ledger()</code> or <code>statsbot-worker ledger</code>). "
        "<b>Your data</b> names the fields that carried values from your tables.</p>"
        "<p><b>Stays on this machine</b> at every privacy level: the model files, their plots, and the "
        "learning curves drawn while a model trains (progress frames carry a percent, a stage and a short "
        "message, as listed here).</p>"
    )
    if not rows:
        return intro + "<i>Nothing has been sent yet.</i>"
    body = []
    for r in reversed(rows):
        carried = describe_fields(r["fields"])
        cells = [
            time.strftime("%H:%M:%S", time.localtime(r["time"])),
            r["job_id"] or "-",
            r["action"] or "-",
            r["frame"],
            f"{r['bytes']:,}",
            carried or "none",
        ]
        colour = "font-weight:bold;" if carried else ""
        body.append(
            "<tr>"
            + "".join(
                f"<td style='padding:0 8px;{colour if i == 5 else ''}'>{html.escape(str(c))[:200]}</td>"
                for i, c in enumerate(cells)
            )
            + "</tr>"
        )
        if r.get("warning"):
            body.append(f"<tr><td colspan=6>{warning_html(str(r['warning']))}</td></tr>")
    header = "".join(
        f"<th style='text-align:left;padding:0 8px'>{h}</th>"
        for h in ("time", "job", "action", "frame", "bytes", "your data")
    )
    return f"{intro}<table><thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table>"
