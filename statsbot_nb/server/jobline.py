"""Read one job from a line typed at the reference server's terminal (pure: no I/O).

A job is a JSON object with an ``"action"`` string and its parameters, either under ``"params"``::

    {"action": "train", "params": {"file_path": "data.csv", "target_column": "y"}}

or flat, next to the action (the other keys are the parameters; this is what people type first)::

    {"action": "train", "file_path": "data.csv", "target_column": "y"}

Mixing the two is refused: a key beside ``"params"`` would otherwise be silently dropped or silently merged.
Every refusal is one sentence that says what to type instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

EXAMPLE = '{"action": "list_models"}'


@dataclass(frozen=True)
class JobLine:
    """A job read from a line: its action and parameters."""

    action: str
    params: dict[str, Any]


class JobLineError(ValueError):
    """A line that is not a job; the message is the sentence to show."""


def _names(keys: list[str]) -> str:
    return ", ".join(json.dumps(k) for k in keys)


def parse_job_line(line: str) -> JobLine:
    """The job on ``line``, or :class:`JobLineError` with a sentence saying what is wrong and what to type."""
    try:
        job = json.loads(line)
    except json.JSONDecodeError as exc:
        raise JobLineError(
            f"Not JSON ({exc.msg} at character {exc.pos + 1}): type one job per line as a JSON object, e.g. {EXAMPLE}."
        ) from None
    if not isinstance(job, dict):
        kind = {list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(type(job), "a number")
        raise JobLineError(f"A job is a JSON object, not {kind}: e.g. {EXAMPLE}.")
    action = job.get("action")
    if "action" not in job:
        raise JobLineError(f'A job needs an "action", e.g. {EXAMPLE}.')
    if not isinstance(action, str) or not action.strip():
        raise JobLineError(f'"action" must be the name of an action as a string, e.g. {EXAMPLE}.')
    others = [k for k in job if k not in ("action", "params")]
    if "params" not in job:
        return JobLine(action, {k: job[k] for k in others})
    params = job["params"]
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise JobLineError('"params" must be a JSON object of parameters, e.g. {"file_path": "data.csv"}.')
    if others:
        raise JobLineError(
            f'Unknown key(s) {_names(others)} beside "params": put every parameter inside "params", '
            'or leave "params" out and write them all next to "action".'
        )
    return JobLine(action, dict(params))
