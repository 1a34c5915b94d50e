"""Row filters for ``join``: a tiny grammar, parsed by hand and applied with plain pandas comparisons.

Today's worker handed filter strings from the server to ``DataFrame.query``, which evaluates Python-like
expressions; here a filter is only ever *data*. The accepted form is one condition per string::

    column op value          age >= 30      `first name` == "O'Brien"      city in ['Paris', 'Rome']

- ``column``: a bare name (letters, digits, ``_``; not starting with a digit) or any name quoted with
  backticks, single or double quotes;
- ``op``: ``=`` (same as ``==``), ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in``, ``not in``;
- ``value``: a number, a quoted string (``\\`` escapes a quote or a backslash), ``true``/``false``,
  ``null`` (also ``none``), or for ``in``/``not in`` a list ``[v, ...]`` or ``(v, ...)``.

Several filters are combined with AND. Missing values never match a comparison, except that they count as
different from any value (``!=``, ``not in``) and match ``== null``. Nothing is ever evaluated: a string
that does not fit the grammar (``@var``, ``;``, function calls, ``and``/``or``) is refused with a sentence.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..errors import JobError

Scalar = int | float | str | bool | None

MAX_FILTER_CHARS = 1000
MAX_FILTERS = 100
FORM_HINT = (
    "write one condition as `column op value`, e.g. age >= 30, city in ['Paris', 'Rome'] or "
    'name == "O\'Brien" (ops: = == != < <= > >= in, not in; quote text values and names with spaces)'
)

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_KEYWORDS: dict[str, Scalar] = {"true": True, "false": False, "null": None, "none": None}
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"[^\W\d]\w*")
_OPERATOR = re.compile(r"==|!=|<=|>=|=|<|>")
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "`": "`", "n": "\n", "t": "\t"}


@dataclass(frozen=True)
class _Token:
    kind: str  # name, quoted, backtick, number, op, open, close, comma
    value: Any
    pos: int


def _fail(text: str, why: str) -> JobError:
    return JobError(f"The filter {text!r} cannot be used: {why}; {FORM_HINT}.")


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    quote, out, i = text[start], [], start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        if ch == quote:
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise _fail(text, f"the quote opened at position {start + 1} is never closed")


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "'\"`":
            value, end = _read_quoted(text, i)
            tokens.append(_Token("backtick" if ch == "`" else "quoted", value, i))
            i = end
        elif ch in "[(":
            tokens.append(_Token("open", ch, i))
            i += 1
        elif ch in "])":
            tokens.append(_Token("close", ch, i))
            i += 1
        elif ch == ",":
            tokens.append(_Token("comma", ch, i))
            i += 1
        elif (m := _OPERATOR.match(text, i)) is not None:
            tokens.append(_Token("op", "==" if m.group() == "=" else m.group(), i))
            i = m.end()
        elif (m := _NUMBER.match(text, i)) is not None and not (
            ch in "+-" and tokens and tokens[-1].kind in ("name", "quoted", "number")
        ):
            if m.end() < len(text) and (text[m.end()].isalnum() or text[m.end()] in "_."):
                raise _fail(text, f"{text[i : m.end() + 1]!r} is not a number")
            num = m.group()
            tokens.append(_Token("number", int(num) if re.fullmatch(r"[+-]?\d+", num) else float(num), i))
            i = m.end()
        elif (m := _NAME.match(text, i)) is not None:
            tokens.append(_Token("name", m.group(), i))
            i = m.end()
        else:
            what = {";": "a semicolon", "@": "'@' (variables)", "\\": "a backslash"}.get(ch, repr(ch))
            raise _fail(text, f"{what} at position {i + 1} is not allowed")
    return tokens


@dataclass(frozen=True)
class Filter:
    """One parsed condition: ``column op value`` (``value`` is a tuple for ``in`` / ``not in``)."""

    column: str
    op: str
    value: Scalar | tuple[Scalar, ...]
    text: str

    def mask(self, df: pd.DataFrame) -> pd.Series:
        """A boolean Series over ``df``'s rows that satisfy the condition (column must exist)."""
        series = df[self.column]
        present = series.notna()
        if self.op in ("in", "not in"):
            assert isinstance(self.value, tuple)
            wanted = [v for v in self.value if v is not None]
            hits = _isin(series, [_coerce(self, series, v, "==")[1] for v in wanted]) & present
            if None in self.value:
                hits = hits | ~present
            return ~hits if self.op == "not in" else hits
        if self.value is None:
            if self.op not in ("==", "!="):
                raise JobError(
                    f"The filter {self.text!r} compares with null using {self.op}; "
                    "only `== null` and `!= null` make sense."
                )
            return ~present if self.op == "==" else present
        column, literal = _coerce(self, series, self.value, self.op)
        try:
            raw = _COMPARE[self.op](column, literal)
        except (TypeError, ValueError) as exc:
            raise JobError(
                f"The filter {self.text!r} cannot compare column {self.column!r} ({series.dtype}) with {self.value!r}."
            ) from exc
        hits = pd.Series(raw, index=df.index).fillna(False).astype(bool) & present
        return hits | ~present if self.op == "!=" else hits


def _isin(series: pd.Series, values: list[Any]) -> pd.Series:
    if pd.api.types.is_numeric_dtype(series) or not any(isinstance(v, (int, float)) for v in values):
        return series.isin(values)
    numeric = pd.to_numeric(series, errors="coerce")
    texts = [v for v in values if not isinstance(v, (int, float))]
    return series.isin(texts) | numeric.isin([v for v in values if isinstance(v, (int, float))])


def _coerce(flt: Filter, series: pd.Series, value: Scalar, op: str) -> tuple[pd.Series, Any]:
    """Bring the literal (and if needed the column) to comparable types, or explain why not."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return series, value.strip().lower() == "true"
        if isinstance(value, (bool, int, float)):
            return series, value
    elif pd.api.types.is_numeric_dtype(dtype):
        if isinstance(value, str):
            try:
                return series, float(value)
            except ValueError:
                raise JobError(
                    f"Column {flt.column!r} holds numbers, so the filter {flt.text!r} must "
                    f"compare it with a number, e.g. {flt.column} {op} 30."
                ) from None
        return series, value
    elif pd.api.types.is_datetime64_any_dtype(dtype):
        try:
            stamp = pd.Timestamp(value) if isinstance(value, str) else None
        except (ValueError, TypeError):
            stamp = None
        if stamp is None:
            raise JobError(
                f"Column {flt.column!r} holds dates, so the filter {flt.text!r} must compare it "
                "with a quoted date, e.g. '2024-01-31'."
            )
        tz = getattr(dtype, "tz", None)
        if tz is not None and stamp.tzinfo is None:
            stamp = stamp.tz_localize(tz)
        return series, stamp
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        return pd.to_numeric(series, errors="coerce"), value  # numbers stored as text
    if isinstance(value, str) and isinstance(dtype, pd.CategoricalDtype):
        return series.astype(object), value
    return series, value


def _parse_value(text: str, tok: _Token) -> Scalar:
    if tok.kind in ("number", "quoted"):
        return tok.value
    if tok.kind == "name" and tok.value.lower() in _KEYWORDS:
        return _KEYWORDS[tok.value.lower()]
    if tok.kind == "name":
        raise _fail(text, f"the value {tok.value!r} must be quoted if it is text (write '{tok.value}')")
    if tok.kind == "backtick":
        raise _fail(text, "backticks quote column names, not values")
    raise _fail(text, f"a value was expected at position {tok.pos + 1}")


def parse_filter(text: object) -> Filter:
    """Parse one filter string into a :class:`Filter`, or raise :class:`JobError` saying what is wrong."""
    if not isinstance(text, str):
        raise JobError(f'Each filter must be a text like "age >= 30", not {type(text).__name__}.')
    if len(text) > MAX_FILTER_CHARS:
        raise JobError(f"A filter is longer than {MAX_FILTER_CHARS} characters; shorten it.")
    if not text.strip():
        raise _fail(text, "it is empty")
    tokens = _tokenize(text)
    if tokens[0].kind not in ("name", "quoted", "backtick"):
        raise _fail(text, "it must start with a column name")
    column = tokens[0].value
    if len(tokens) < 3:
        raise _fail(text, "it needs a column, an operator and a value")
    tok, rest = tokens[1], tokens[2:]
    if tok.kind == "op":
        op = tok.value
    elif tok.kind == "name" and tok.value.lower() == "in":
        op = "in"
    elif (
        tok.kind == "name"
        and tok.value.lower() == "not"
        and rest
        and rest[0].kind == "name"
        and rest[0].value.lower() == "in"
    ):
        op, rest = "not in", rest[1:]
    elif tok.kind == "open":
        raise _fail(text, f"{column!r} is followed by '(' but function calls are not allowed")
    else:
        raise _fail(text, f"an operator was expected after the column name {column!r}")
    value: Scalar | tuple[Scalar, ...]
    if op in ("in", "not in"):
        value, used = _parse_list(text, rest)
    else:
        if not rest:
            raise _fail(text, "the value is missing")
        if rest[0].kind == "open":
            raise _fail(text, "a list of values needs `in` or `not in`")
        value, used = _parse_value(text, rest[0]), 1
    if len(rest) > used:
        raise _fail(
            text, "there is extra text after the value (give one condition per filter; filters are combined with AND)"
        )
    return Filter(column=column, op=op, value=value, text=text)


def _parse_list(text: str, tokens: list[_Token]) -> tuple[tuple[Scalar, ...], int]:
    if not tokens or tokens[0].kind != "open":
        raise _fail(text, "`in` needs a list such as ['a', 'b'] or [1, 2]")
    closing = "]" if tokens[0].value == "[" else ")"
    values: list[Scalar] = []
    i = 1
    while i < len(tokens):
        tok = tokens[i]
        if tok.kind == "close":
            if tok.value != closing:
                raise _fail(text, f"the list is closed with {tok.value!r} instead of {closing!r}")
            return tuple(values), i + 1
        values.append(_parse_value(text, tok))
        i += 1
        if i < len(tokens) and tokens[i].kind == "comma":
            i += 1
        elif i < len(tokens) and tokens[i].kind != "close":
            raise _fail(text, "list values must be separated by commas")
    raise _fail(text, "the list is never closed")


def parse_filters(filters: object) -> list[Filter]:
    """Parse a list of filter strings (None or an empty list means no filters)."""
    if filters is None:
        return []
    if not isinstance(filters, (list, tuple)):
        raise JobError("'filters' must be a list of conditions like [\"age >= 30\"].")
    if len(filters) > MAX_FILTERS:
        raise JobError(f"'filters' has {len(filters)} conditions; at most {MAX_FILTERS} are allowed.")
    return [parse_filter(text) for text in filters]


def apply_filters(df: pd.DataFrame, filters: Sequence[str] | None) -> pd.DataFrame:
    """The rows of ``df`` that satisfy every filter (AND), re-indexed from 0.

    All filters are parsed and their columns checked before any row is looked at, so a typo in the last
    filter fails fast with the list of available columns.
    """
    parsed = parse_filters(filters)
    if not parsed:
        return df
    names = [str(c) for c in df.columns]
    unknown = list(dict.fromkeys(f.column for f in parsed if f.column not in df.columns))
    if unknown:
        shown = ", ".join(repr(c) for c in names[:50])
        missing = ", ".join(repr(c) for c in unknown)
        raise JobError(f"The filters name {missing}, which the table does not have; its columns are {shown}.")
    mask = pd.Series(True, index=df.index)
    for flt in parsed:
        mask &= flt.mask(df)
    return df.loc[mask].reset_index(drop=True)
