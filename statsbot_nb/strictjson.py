"""Strict JSON values: what the worker sends and what it writes into ``metadata.json``.

A bottom-layer helper (no I/O) shared by the protocol and the model store, so both agree on how numpy,
pandas, dates and non-finite floats are written.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any


def to_strict_json(value: Any) -> Any:
    """Return ``value`` converted to plain JSON types.

    NaN/±Infinity -> ``None``; numpy scalars and arrays -> numbers and lists; pandas/datetime timestamps
    -> ISO 8601 strings; paths -> strings; tuples and sets -> lists; mapping keys -> strings. Anything
    else unknown becomes its ``str()`` so a result can always be sent.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): to_strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [to_strict_json(v) for v in items]
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    # numpy / pandas without importing them: duck-type on the methods they share.
    tolist = getattr(value, "tolist", None)
    if callable(tolist):  # numpy scalar or array, pandas Index/Series
        return to_strict_json(tolist())
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):  # pandas Timestamp / NaT-free datetime-likes
        try:
            return str(isoformat())
        except ValueError:
            return None
    item = getattr(value, "item", None)
    if callable(item):
        return to_strict_json(item())
    return str(value)
