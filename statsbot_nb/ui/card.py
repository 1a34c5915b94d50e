"""The HTML card a :class:`~statsbot_nb.local.LocalModel` shows in Jupyter (``_repr_html_``).

Plain HTML with inline styles that follow JupyterLab's theme variables; no ipywidgets. The model
browser shows the same card (computed in a job process, see :mod:`statsbot_nb.ui.render`).
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..local import LocalModel

_MAX_FEATURES_SHOWN = 30


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "—" if value is None else str(value)
    if not math.isfinite(value):
        return "—"
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.4g}"


_BOX = (
    "font-family:var(--jp-ui-font-family,system-ui,sans-serif);font-size:13px;line-height:1.45;"
    "max-width:760px;border:1px solid rgba(128,128,128,.35);border-radius:6px;padding:10px 14px"
)
_BADGE = "display:inline-block;padding:0 7px;margin-left:6px;border-radius:9px;font-size:11px;"
_CELL = "text-align:left;padding:2px 12px 2px 0;vertical-align:top;border:none"


def _row(label: str, value_html: str) -> str:
    return (
        f'<tr><th style="{_CELL};opacity:.7;font-weight:normal">{html.escape(label)}</th>'
        f'<td style="{_CELL}">{value_html}</td></tr>'
    )


def _facts(m: LocalModel, meta: dict[str, Any]) -> list[str]:
    e = html.escape
    rows = [_row("Target", f"<code>{e(m.target_column)}</code>" if m.target_column else "—")]
    features = m.feature_columns
    shown = ", ".join(f"<code>{e(f)}</code>" for f in features[:_MAX_FEATURES_SHOWN])
    more = f" … and {len(features) - _MAX_FEATURES_SHOWN} more" if len(features) > _MAX_FEATURES_SHOWN else ""
    rows.append(_row(f"Features ({len(features)})", (shown + e(more)) or "—"))
    importances = meta.get("feature_importances")
    if isinstance(importances, dict) and importances:
        top = sorted(
            ((str(k), v) for k, v in importances.items() if isinstance(v, (int, float))),
            key=lambda kv: kv[1],
            reverse=True,
        )[:3]
        rows.append(_row("Most important", ", ".join(f"<code>{e(k)}</code> {v:.0%}" for k, v in top)))
    stats = meta.get("dataset_stats") if isinstance(meta.get("dataset_stats"), dict) else {}
    if stats:
        shape = (
            f"{_fmt_int(stats.get('n_rows'))} rows: {_fmt_int(stats.get('n_train'))} to train, "
            f"{_fmt_int(stats.get('n_test'))} held out"
        )
        if stats.get("dropped_rows"):
            shape += f" ({_fmt_int(stats.get('dropped_rows'))} dropped for a missing target)"
        rows.append(_row("Data", e(shape)))
        classes = stats.get("class_distribution")
        if isinstance(classes, dict) and classes:
            parts = [_class_share(k, v) for k, v in list(classes.items())[:12]]
            rows.append(_row("Classes", e(" · ".join(p for p in parts if p) + (" …" if len(classes) > 12 else ""))))
    if meta.get("source_file"):
        rows.append(_row("Trained on", f"<code>{e(str(meta['source_file']))}</code>"))
    where = meta.get("trained_on")
    if isinstance(where, dict) and where.get("where") == "dask":
        cluster = (
            f"the Dask cluster at {where.get('scheduler')} ({where.get('workers')} worker(s), "
            f"{where.get('partitions')} partition(s))"
        )
        rows.append(_row("Where", e(cluster)))
    when = m.created_at or "unknown"
    if isinstance(meta.get("training_time"), (int, float)):
        when += f" (fit in {meta['training_time']:.1f} s)"
    rows.append(_row("Created", e(when)))
    return rows


def _class_share(label: str, value: Any) -> str:
    """``label 39.9%`` from the bot's ``{count, pct}`` shape; ``label 71`` from a plain count (older models)."""
    if isinstance(value, dict) and isinstance(value.get("pct"), (int, float)):
        return f"{label} {value['pct']}%"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{label} {value}"
    return ""


def _fmt_int(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "?"


def model_card_html(m: LocalModel) -> str:
    """The card: name, badges (task, headline metric), facts, metrics and which plots can be drawn."""
    """A self-contained HTML card of a model: every string escaped, inline styles only."""
    e = html.escape
    meta = m._meta
    head = f'<span style="font-weight:600;font-size:15px">{e(m.display_name)}</span>'
    for text, colour in (
        (m.task_type, "rgba(66,133,244,.18)"),
        (m.model_type, "rgba(128,128,128,.18)"),
        (m._headline(), "rgba(52,168,83,.2)"),
    ):
        if text:
            head += f'<span style="{_BADGE}background:{colour}">{e(text)}</span>'
    if m.deleted:
        head += f'<span style="{_BADGE}background:rgba(219,68,55,.25)">deleted</span>'
    parts = [
        f'<div style="{_BOX}">',
        f"<div>{head}</div>",
        f'<div style="font-family:monospace;font-size:11px;opacity:.7">{e(m.model_id)}</div>',
        f'<table style="margin:6px 0;border-collapse:collapse">{"".join(_facts(m, meta))}</table>',
    ]
    metrics = list(m.metrics.items())
    if metrics:
        cells = "".join(_row(k, e(_fmt(v))) for k, v in metrics)
        parts.append(
            f"<details open><summary><b>Metrics</b> (held-out rows)</summary>"
            f'<table style="margin:2px 0 6px 12px;border-collapse:collapse">{cells}</table></details>'
        )
    prep = meta.get("preprocessing")
    lines = prep.get("description") if isinstance(prep, dict) else None
    if isinstance(lines, list) and lines:
        items = "".join(f"<li>{e(str(line))}</li>" for line in lines)
        parts.append(f'<details><summary><b>Preprocessing</b></summary><ul style="margin:2px 0">{items}</ul></details>')
    if not m.deleted:
        kinds = m._safe_kinds()
        ok = [k for k, why in kinds.items() if why is None]
        if ok:
            calls = ", ".join(f"<code>.plot({e(repr(k))})</code>" for k in ok)
            parts.append(f"<div><b>Plots</b>: {calls}</div>")
        missing = "".join(f"<li><code>{e(k)}</code>: {e(why)}</li>" for k, why in kinds.items() if why)
        if missing:
            parts.append(f'<div style="opacity:.8"><b>Not available</b><ul style="margin:2px 0">{missing}</ul></div>')
        if not meta.get("model_sha256"):
            parts.append(
                '<div style="opacity:.8">Saved without a checksum (by an older worker): '
                f"<code>.predict()</code> is refused until you run <code>statsbot-worker trust-model "
                f"{e(m.model_id)}</code> for a file you trust.</div>"
            )
    parts.append("</div>")
    return "".join(parts)
