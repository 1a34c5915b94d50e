"""Strict JSON values: what the worker sends, what it writes into ``metadata.json``, and table cells.

The one home of this conversion: the protocol, the model store, the hyperparameters a model records and
the rows ``load_data`` sends all go through :func:`to_strict_json`, so they agree on how numpy, pandas,
dates, missing values and non-finite floats are written. A bottom-layer helper: no I/O, and it never
imports numpy or pandas (it duck-types them), so it stays cheap to import.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import json
import math
from collections.abc import Callable, Mapping
from pathlib import PurePath
from typing import Any

#: pandas' missing-value scalars (``pd.NaT``, ``pd.NA``), recognised by type name so pandas is not imported.
_MISSING_TYPES = frozenset({"NaTType", "NAType"})


def to_strict_json(value: Any, unknown: Callable[[Any], str] = str) -> Any:
    """Return ``value`` converted to plain JSON types.

    NaN/±Infinity, ``NaT`` and ``NA`` -> ``None``; numpy scalars and arrays -> numbers and lists;
    pandas/datetime timestamps -> ISO 8601 strings; durations -> their text; decimals -> floats; bytes ->
    UTF-8 text; paths -> strings; tuples and sets -> lists; mapping keys -> strings. Anything else
    becomes ``unknown(value)`` (``str`` by default; the model store records hyperparameter objects with
    ``repr``), so a result can always be sent.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): to_strict_json(v, unknown) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [to_strict_json(v, unknown) for v in items]
    if type(value).__name__ in _MISSING_TYPES:
        return None
    if isinstance(value, _dt.timedelta):  # before isoformat: pandas' Timedelta has one, we want "1 days"
        return str(value)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return to_strict_json(float(value), unknown)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, PurePath):
        return str(value)
    # numpy / pandas without importing them: duck-type on the methods they share.
    tolist = getattr(value, "tolist", None)
    if callable(tolist):  # numpy scalar or array, pandas Index/Series
        return to_strict_json(tolist(), unknown)
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):  # pandas Timestamp / NaT-free datetime-likes
        try:
            return str(isoformat())
        except ValueError:
            return None
    item = getattr(value, "item", None)
    if callable(item):
        return to_strict_json(item(), unknown)
    return unknown(value)


def encode(value: Any, *, clean: bool = False) -> str:
    """``value`` as strict JSON text, the way frames are written: converted first (unless ``clean``: it is
    made of plain JSON types already), ASCII escapes (a lone surrogate echoed from a server string would
    make a frame's UTF-8 encoding fail), no spaces."""
    plain = value if clean else to_strict_json(value)
    return json.dumps(plain, allow_nan=False, ensure_ascii=True, separators=(",", ":"))


class EncodedList(list):  # type: ignore[type-arg]
    """A list of strict JSON values that also carries its JSON text (``text``, as :func:`encode` writes it).

    Built once by whoever made the items (the model listing keeps each entry's text until the entry
    changes), so a frame embeds the text instead of converting and encoding every item again: for a
    listing of 50 models that was 2.5 ms of each ``list_models``. The items must not change afterwards.
    """

    __slots__ = ("text",)

    def __init__(self, items: list[Any], texts: list[str]) -> None:
        super().__init__(items)
        self.text = "[" + ",".join(texts) + "]"
