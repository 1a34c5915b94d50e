"""Reading the ledger (:mod:`statsbot_nb.ledgerdb`): rows, a DataFrame, a terminal table.

Readers open the database read-only, so looking at the ledger never changes it, and a home where nothing
was sent yet reads as an empty ledger rather than an error.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from .ledgerdb import COLUMNS, ledger_path


def read_rows(home: Path | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """The ledger's rows, oldest first (the newest ``limit`` when given); [] when nothing was sent yet."""
    if home is None:
        from .config import statsbot_home

        home = statsbot_home()
    path = ledger_path(home)
    if not path.is_file():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        query = "SELECT time, job_id, action, frame, bytes, user_data, fields, warning FROM sent ORDER BY id"
        if limit is not None:
            query = f"SELECT * FROM ({query} DESC LIMIT {int(limit)}) ORDER BY time"
        rows = db.execute(query).fetchall()
    except sqlite3.Error:
        return []
    finally:
        db.close()
    out = []
    for row in rows:
        record = dict(zip(COLUMNS, row, strict=True))
        try:
            record["fields"] = json.loads(record["fields"])
        except (TypeError, ValueError):
            record["fields"] = []
        out.append(record)
    return out


def read_ledger(home: Path | None = None, limit: int | None = None) -> Any:
    """The ledger as a pandas DataFrame (one row per frame sent), oldest first.

    Columns: ``time`` (a timestamp), ``job_id``, ``action``, ``frame`` (``auth (token withheld)``,
    ``progress``, ``result``), ``bytes``, ``user_data`` (``predictions``, ``labels``, ``rows``,
    comma-separated; empty when the frame carries none), ``fields`` (the fields and how many values
    each carries) and ``warning``. ``home`` defaults to the StatsBot home; ``limit`` keeps the newest rows.
    """
    import pandas as pd

    rows = read_rows(home, limit)
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["time"] = pd.to_datetime(frame["time"], unit="s")
    return frame


def describe_fields(fields: list[dict[str, Any]]) -> str:
    """``[{field, class, values}]`` as ``predictions_sample: 10 predictions; ...``."""
    return "; ".join(f"{f.get('field', '?').removeprefix('data.')}: {f.get('values')} {f.get('class')}" for f in fields)


def format_table(rows: list[dict[str, Any]]) -> list[str]:
    """The ledger as aligned text lines for a terminal (times local)."""
    if not rows:
        return ["Nothing has been sent yet."]
    lines = [f"{'time':19}  {'job':18}  {'action':12}  {'frame':21}  {'bytes':>8}  user data"]
    for r in rows:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["time"]))
        carried = describe_fields(r["fields"]) or "-"
        lines.append(
            f"{stamp:19}  {_inert(r['job_id'] or '-', 18):18}  {_inert(r['action'] or '-', 12):12}  "
            f"{r['frame']:21}  {r['bytes']:>8}  {carried}"
        )
        if r.get("warning"):
            lines.append(f"{'':19}  WARNING: {_inert(r['warning'], 400)}")
    return lines


def _inert(text: object, limit: int) -> str:
    """Server-chosen text (job ids, action names) made safe for a terminal: no control characters, capped."""
    value = "".join(ch if ch.isprintable() else "?" for ch in str(text))
    return value if len(value) <= limit else value[: limit - 1] + "…"


__all__ = ["describe_fields", "format_table", "read_ledger", "read_rows"]
