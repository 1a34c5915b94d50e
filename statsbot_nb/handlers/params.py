"""How every handler reads its wire parameters: one set of checks, one kind of sentence.

Each helper takes the wire dict, the parameter's name and what the parameter must be, and either returns
a clean Python value or raises :class:`JobError` with a sentence that names the parameter, says what it
must be and, where it helps, what was sent. Parsing happens once, when a handler builds its request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..context import JobSettings
from ..errors import JobError
from ..paths import PathPolicy

MAX_NAME_CHARS = 100

Params = Mapping[str, Any]


def policy(settings: JobSettings) -> PathPolicy:
    """The file policy a job's paths go through."""
    return PathPolicy.from_settings(settings)


def required_text(params: Params, name: str, message: str) -> str:
    """A non-blank text parameter; ``message`` is the whole sentence when it is missing or not text."""
    value = params.get(name)
    if not isinstance(value, str) or not value.strip():
        raise JobError(message)
    return value


def optional_text(params: Params, name: str, message: str) -> str | None:
    """A text parameter that may be left out (None); present but blank or not text is refused."""
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise JobError(message)
    return value


def column_names(params: Params, name: str) -> list[str]:
    """A non-empty list of column names (a single name is accepted too), duplicates dropped, in order."""
    value = params.get(name)
    if isinstance(value, str) and value.strip():
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v for v in value):
        raise JobError(f"'{name}' must be a non-empty list of column names.")
    return list(dict.fromkeys(value))


def custom_name(name: object) -> str:
    """A display name: text of 1 to 100 characters without control characters, trimmed."""
    if not isinstance(name, str) or not name.strip():
        raise JobError("custom_name must be a non-empty text of at most 100 characters.")
    name = name.strip()
    if len(name) > MAX_NAME_CHARS:
        raise JobError(f"custom_name is {len(name)} characters long; use at most {MAX_NAME_CHARS}.")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise JobError("custom_name must not contain line breaks or other control characters.")
    return name
