"""Colours that stay readable in JupyterLab's light and dark themes, Notebook 7 and VS Code.

Meaning is carried by a coloured dot (a graphic: WCAG asks 3:1 of it) next to text in the theme's own
font colour, never by coloured text alone: a fixed green or orange that reads well on white is below
4.5:1 on a dark background and the other way round. Error sentences use the theme's error colour,
which each theme picks to read on its own background. Fallbacks are for front ends without
JupyterLab's variables (classic notebook, nbconvert HTML).
"""

from __future__ import annotations

OK = "var(--jp-success-color1, #1a7f37)"
WARN = "var(--jp-warn-color1, #bf8700)"
ERROR = "var(--jp-error-color1, #cf222e)"
MUTED = "var(--jp-ui-font-color2, #57606a)"
#: text in the theme's secondary colour (still readable: the theme chose it for its background)
SECONDARY_TEXT = "color:var(--jp-ui-font-color1, inherit);opacity:.85"


def dot(colour: str) -> str:
    """A coloured dot that marks a state beside its word."""
    return f"<span style='color:{colour}' aria-hidden='true'>●</span>"


__all__ = ["ERROR", "MUTED", "OK", "SECONDARY_TEXT", "WARN", "dot"]
