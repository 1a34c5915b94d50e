"""Handlers for the model-store actions: ``list_models``, ``delete_model`` and ``set_model_name``.

Quick actions (they run in a thread of the worker): they parse a typed request and call the storage
functions of :mod:`statsbot_nb.ml.store`, which reads no wire dict.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from ..context import JobContext
from ..ml import store
from ..strictjson import EncodedList, encode
from .params import Params, custom_name


@dataclass(frozen=True)
class ModelRequest:
    """A request that names one stored model (``delete_model``)."""

    model_id: str

    @classmethod
    def parse(cls, params: Params) -> ModelRequest:
        """Check ``model_id`` is a plain store name."""
        return cls(store.validate_model_id(params.get("model_id")))


@dataclass(frozen=True)
class RenameRequest:
    """``set_model_name``: the model and its new display name (trimmed, 1-100 characters)."""

    model_id: str
    custom_name: str

    @classmethod
    def parse(cls, params: Params) -> RenameRequest:
        """Check ``model_id`` and ``custom_name``."""
        model_id = store.validate_model_id(params.get("model_id"))
        return cls(model_id, custom_name(params.get("custom_name")))


def list_models(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """``list_models``: every model in the local store, newest first.

    A field an older worker's model lacks is left out rather than sent as null: the bot reads entries
    with ``model.get(key, default)`` and then uses the value as text (``prediction_messages.py``
    ``model_selection_prompt``), so an absent key gets its default where a null would fail. The entries'
    ``metrics`` stay local (:data:`LOCAL_ONLY`).
    """
    entries = store.list_models(ctx.settings.models_dir, copy=False)  # kept entries: read, never changed
    with _LOCK:
        known, fresh = _WIRE, {}
        for entry in entries:
            hit = known.get(id(entry))
            if hit is None or hit[0] is not entry:
                wire = {k: v for k, v in entry.items() if v is not None and k not in LOCAL_ONLY}
                hit = (entry, wire, encode(wire))
            fresh[id(entry)] = hit
        _WIRE.clear()
        _WIRE.update(fresh)
    hits = [fresh[id(entry)] for entry in entries]
    return {"models": EncodedList([wire for _, wire, _ in hits], [text for _, _, text in hits])}


#: Fields of a store entry the listing does not send: the bot's model picker reads ids, names, types, columns
#: and creation times, never metrics (sent each time, they were 40% of a listing's bytes, and the server's
#: time to parse them made a 50-model listing slower; the train result and the panel still show them).
LOCAL_ONLY = frozenset({"metrics"})

#: Each kept store entry's wire form and its JSON text, by the entry's identity (the entry is held, so
#: its id stays its own); an entry the store re-read is a new object and is encoded anew.
_WIRE: dict[int, tuple[dict[str, Any], dict[str, Any], str]] = {}
_LOCK = threading.Lock()


def delete_model(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """``delete_model``: remove a model's folder (moved aside first, so it disappears at once)."""
    req = ModelRequest.parse(params)
    return {"deleted": store.remove_model(ctx.settings.models_dir, req.model_id)}


def set_model_name(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """``set_model_name``: set ``custom_name`` and ``display_name`` (atomic metadata rewrite)."""
    req = RenameRequest.parse(params)
    model_id = store.rename_model(ctx.settings.models_dir, req.model_id, req.custom_name)
    return {"model_id": model_id, "custom_name": req.custom_name}
