"""Make text from the server inert before it reaches a terminal or a log line.

Action names, file paths, job ids and error sentences come from the server, which is not trusted. Printed
raw they could carry terminal escapes (ANSI colours, cursor moves, OSC 8 links, OSC 52 clipboard writes,
a title change), a carriage return or newline that forges a status line or a log entry, or Unicode
direction overrides that reorder what the user reads. :func:`inert` escapes every such character visibly
(``\\x1b``, ``\\n``, ``\\u202e``) and caps the length, so what is shown is exactly what was sent, harmlessly.
"""

from __future__ import annotations

import logging
import re

#: C0 controls (tab included), DEL, C1 controls, and the Unicode characters that change text direction or
#: hide text (bidi embeddings/overrides/isolates, zero-width marks, line/paragraph separators, BOM).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

#: Default cap for one field (a path, an action name, an error sentence).
FIELD_CHARS = 300


def _escape(match: re.Match[str]) -> str:
    ch = match.group(0)
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def inert(text: object, limit: int = FIELD_CHARS) -> str:
    """``text`` as one safe line: unsafe characters escaped, at most ``limit`` characters (then an ellipsis)."""
    value = text if isinstance(text, str) else str(text)
    if len(value) > limit * 8:  # never escape megabytes only to cut them
        value = value[: limit * 8]
    value = _UNSAFE.sub(_escape, value)
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return value


class InertFormatter(logging.Formatter):
    """A log formatter whose message part is always one inert line (a traceback below it stays as is).

    A newline in a server-supplied action name can otherwise forge a whole log entry in ``worker.log``.
    """

    def __init__(self, fmt: str | None = None, limit: int = 4000) -> None:
        super().__init__(fmt)
        self.limit = limit

    def formatMessage(self, record: logging.LogRecord) -> str:
        return inert(super().formatMessage(record), self.limit)


#: Log-record attribute set on lines that observers already show as events (a state change printed by the
#: terminal or the panel): a console log beside them skips those (:class:`NotShown`); the log file keeps them.
SHOWN = "statsbot_shown"


class NotShown(logging.Filter):
    """Passes only records not marked :data:`SHOWN` (so ``-v`` does not print every state line twice)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, SHOWN, False)
