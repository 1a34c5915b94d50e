"""The dispatch table: action name -> handler, and how to run it.

Handlers are synchronous functions ``handler(params, ctx) -> data`` named by ``"module:function"`` so
that a job process imports them itself (nothing heavy is imported into the worker's own process, and
the table works with every multiprocessing start method). ``isolated`` handlers run in their own process
(heavy: reading tables, fitting; and *every* action that parses a user's file, however small the parse
looks: a 1 MB ``.xlsx`` can expand to gigabytes, and only a process can be bounded and killed); the
others only touch the worker's own model store, are quick, and run in a thread.

This module must stay cheap to import: no pandas or scikit-learn at module level.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .ml.headline import headline_text


@dataclass(frozen=True)
class ActionSpec:
    """How to run one action: the handler's import path, whether it needs its own process, and whether the
    journal keeps it.

    ``journaled=False`` is for read-only actions whose answer is the store as it is now (``list_models``):
    running one twice is harmless and a restart has nothing of the user's to keep, so the journal's two
    commits (a third of a listing's time to result) are skipped. Such a job is still kept in memory until the
    server confirms its result, and a repeated id is still answered, not re-run, while this worker lives.
    """

    target: str
    isolated: bool
    journaled: bool = True


ACTIONS: dict[str, ActionSpec] = {
    # quick: a thread is enough, and they must answer while heavy jobs hold every process slot
    "list_models": ActionSpec("statsbot_nb.handlers.models:list_models", isolated=False, journaled=False),
    "delete_model": ActionSpec("statsbot_nb.handlers.models:delete_model", isolated=False),
    "set_model_name": ActionSpec("statsbot_nb.handlers.models:set_model_name", isolated=False),
    # parses a user's file (the header of an .xlsx means its whole shared-strings table): a process, so
    # the per-job limits bound it and a cancel stops it. It waits for a slot while heavy jobs run.
    "file_info": ActionSpec("statsbot_nb.handlers.files:file_info", isolated=True),
    # heavy: reading whole tables, fitting, predicting, writing files -> their own process
    "train": ActionSpec("statsbot_nb.handlers.train:train", isolated=True),
    "predict": ActionSpec("statsbot_nb.handlers.predict:predict", isolated=True),
    "join": ActionSpec("statsbot_nb.handlers.files:join", isolated=True),
    "save_file": ActionSpec("statsbot_nb.handlers.files:save_file", isolated=True),
    "load_data": ActionSpec("statsbot_nb.handlers.files:load_data", isolated=True),
}


def capabilities(actions: Mapping[str, ActionSpec], max_jobs: int) -> dict[str, Any]:
    """What the worker announces in its auth frame (protocol 2 extra): actions, libraries found, job slots."""
    libs = {
        name: importlib.util.find_spec(name) is not None
        for name in ("sklearn", "xgboost", "lightgbm", "catboost", "tensorflow", "pyarrow")
    }
    return {"actions": sorted(actions), "libraries": libs, "max_jobs": max_jobs}


def unknown_action_error(action: str, known: Iterable[str] | None = None) -> str:
    """The failed-result sentence for an action this worker does not have (today's wording first).

    ``known`` is the worker's own action table (default: the standard one).
    """
    names = ", ".join(sorted(ACTIONS if known is None else known))
    return f"Unknown action: {action}. This worker can do: {names}."


def summarize(action: str, data: Mapping[str, Any]) -> str:
    """A one-line outcome of a successful job for logs and the job list (a metric, a count, a file)."""
    if action == "list_models":
        return f"{len(data.get('models') or [])} model(s)"
    if action == "train":
        info = data.get("model_info")
        task = info.get("task_type") if isinstance(info, Mapping) else None
        headline = headline_text({"metrics": data.get("metrics"), "task_type": task})
        notes = data.get("notes") if isinstance(data.get("notes"), list) else []
        # where it ran, when that was a cluster (the job log and the terminal say so: issue 14)
        where = ""
        if any(str(n).startswith("Trained on the Dask cluster") for n in notes):
            where = " (on the Dask cluster)"
        elif any(str(n).startswith("Trained on this machine, not on the Dask cluster") for n in notes):
            where = " (on this machine, not the Dask cluster)"
        return f"{data.get('model_id')} {headline}{where}" if headline else f"{data.get('model_id', 'trained')}{where}"
    if action == "predict":
        notes = data.get("notes") if isinstance(data.get("notes"), list) else []
        where = (
            " (on the Dask cluster)" if any(str(n).startswith("Predicted on the Dask cluster") for n in notes) else ""
        )
        return f"{data.get('predictions_count')} predictions -> {data.get('output_file')}{where}"
    if action == "join":
        return f"{data.get('row_count')} rows -> {data.get('output_file')}"
    if action in ("save_file", "load_data"):
        return f"{data.get('rows')} rows"
    if action == "file_info":
        return f"{data.get('size_mb')} MB" if data.get("exists") else "file not found"
    if action == "delete_model":
        return f"deleted {data.get('deleted')}"
    if action == "set_model_name":
        return f"renamed {data.get('model_id')} to {data.get('custom_name')!r}"
    return "done"


def file_of(params: Mapping[str, Any]) -> str:
    """The file a job works on, for one-line logs (empty when it has none)."""
    for key in ("file_path", "output_path", "model_id"):
        value = params.get(key)
        if isinstance(value, str) and value:
            return value
    paths = params.get("file_paths")
    if isinstance(paths, list) and paths:
        return f"{paths[0]} (+{len(paths) - 1})"
    return ""


#: What each action does, in words, for the ask-before-running prompt.
_VERBS = {
    "train": "train a model",
    "predict": "predict with a saved model",
    "list_models": "list your saved models",
    "delete_model": "delete a saved model",
    "set_model_name": "rename a saved model",
    "file_info": "look at a file (size, columns)",
    "join": "combine tables into a new file",
    "save_file": "write a table the server sends into a file",
    "load_data": "read a table and send its rows to the server",
}
_SHOWN = (
    "file_path",
    "file_paths",
    "output_path",
    "model_id",
    "model_type",
    "task_type",
    "target_column",
    "feature_columns",
    "operation",
    "custom_name",
)


def describe_job(action: str, params: Mapping[str, Any]) -> str:
    """One plain sentence saying what a job would do, from its action and main parameters (for a person)."""
    verb = _VERBS.get(action, f"run the action {action!r}")
    parts = []
    for key in _SHOWN:
        value = params.get(key)
        if value is None or value == "" or value == []:
            continue
        if isinstance(value, list):
            shown = ", ".join(str(v) for v in value[:8]) + (f" and {len(value) - 8} more" if len(value) > 8 else "")
        else:
            shown = str(value)
        parts.append(f"{key.replace('_', ' ')}: {shown[:200]}")
    others = sorted(k for k in params if k not in _SHOWN)
    if others:
        parts.append("other settings: " + ", ".join(others[:10]))
    return verb[0].upper() + verb[1:] + (" — " + "; ".join(parts) if parts else "") + "."
