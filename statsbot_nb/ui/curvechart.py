"""A running job's learning curve as a small inline SVG chart (the panel shows it beside the job's bar).

Built as a string in well under a millisecond (no matplotlib on the kernel's loop: drawing a figure holds
the GIL for tens of milliseconds), from a :class:`~statsbot_nb.ml.curves.LiveCurve` that holds at most a
few hundred points. Colours come from JupyterLab's theme variables with fallbacks that read on light and
dark backgrounds alike, and the text takes the surrounding text colour, so the chart suits either theme
(and front ends without JupyterLab's variables: Notebook 7, VS Code). The metric's name comes from the
job's hyperparameters, i.e. from the server: everything shown is escaped.
"""

from __future__ import annotations

import html

from ..ml.curves import LiveCurve, higher_is_better

WIDTH, HEIGHT, PAD = 168, 40, 3
TRAINING = "var(--jp-brand-color1, #2196f3)"
VALIDATION = "var(--jp-warn-color0, #ef6c00)"
TEXT = "var(--jp-ui-font-color1, currentColor)"
FRAME = "var(--jp-border-color2, rgba(128, 128, 128, 0.4))"


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def curve_svg(curve: LiveCurve | None, width: int = WIDTH, height: int = HEIGHT) -> str:
    """The chart's HTML (an SVG with a training and a validation line, and a one-line legend), or "" when
    the curve has no point yet."""
    points = curve.series() if curve is not None else []
    if curve is None or not points or curve.metric is None:
        return ""
    values = [v for _, tr, va in points for v in (tr, va) if v is not None]
    if not values:
        return ""
    low, high = min(values), max(values)
    if not high > low:
        low, high = low - 0.5 * (abs(low) or 1.0), high + 0.5 * (abs(high) or 1.0)
    last_round = points[-1][0]
    span = max(curve.total or 0, last_round, 2) - 1
    x_scale, y_scale = (width - 2 * PAD) / span, (height - 2 * PAD) / (high - low)

    def xy(r: int, v: float) -> str:
        return f"{PAD + (r - 1) * x_scale:.1f},{height - PAD - (v - low) * y_scale:.1f}"

    x0, y0 = PAD - x_scale, height - PAD + low * y_scale  # x = x0 + round * x_scale, y = y0 - value * y_scale
    lines = []
    for index, colour in ((1, TRAINING), (2, VALIDATION)):
        vertices = " ".join(
            [f"{x0 + p[0] * x_scale:.1f},{y0 - v * y_scale:.1f}" for p in points if (v := p[index]) is not None]
        )
        if vertices:
            lines.append(f'<polyline points="{vertices}" style="fill:none;stroke:{colour};stroke-width:1.5"/>')
    metric = curve.metric
    better = max if higher_is_better(metric) else min
    held = [(p[2], p[0]) for p in points if p[2] is not None]
    best = better(held) if held else None
    if best is not None:
        cx, cy = xy(best[1], best[0]).split(",")
        lines.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" style="fill:{VALIDATION}"/>')
    _, last_tr, last_va = points[-1]
    total = f" of {curve.total}" if curve.total else ""
    name = html.escape(metric if len(metric) <= 24 else metric[:23] + "…")
    title = (
        f"Learning curve ({metric}) after round {last_round}{total}: training {_number(last_tr)}, "
        f"validation {_number(last_va)}"
        + (f"; best validation {_number(best[0])} at round {best[1]}" if best is not None else "")
    )
    legend = (
        f'<span style="color:{TRAINING}">&#9473; training {_number(last_tr)}</span> '
        f'<span style="color:{VALIDATION}">&#9473; validation {_number(last_va)}</span> '
        f"<span>{name}</span>"
    )
    return (
        f'<div class="statsbot-curve" title="{html.escape(title)}" style="display:inline-block;'
        f'font-size:11px;line-height:1.3;color:{TEXT};white-space:normal;max-width:{width + 40}px">'
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{html.escape(title)}" style="display:block">'
        f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" style="fill:none;stroke:{FRAME}"/>'
        + "".join(lines)
        + f"</svg><div>{legend}</div></div>"
    )
