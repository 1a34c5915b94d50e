"""The local model store: ``<home>/models/<model_id>/{model.pkl, metadata.json}``.

The layout is the one today's headless StatsBot workers use, so models move freely between them and us.
A ``model_id`` from the server is checked against a strict pattern and must resolve inside the store.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from ..errors import JobError

log = logging.getLogger("statsbot_nb.store")

MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
LISTED_FIELDS = (
    "model_id", "model_type", "task_type", "created_at", "feature_columns", "target_column",
    "custom_name", "display_name",
)


def validate_model_id(model_id: object) -> str:
    """Return ``model_id`` if it is a plain store name, else raise :class:`JobError` saying why."""
    if not isinstance(model_id, str) or not MODEL_ID_RE.match(model_id) or ".." in model_id:
        raise JobError(
            f"{model_id!r} is not a valid model id: use the id shown by list_models "
            "(letters, digits, '_', '-', '.')."
        )
    return model_id


def read_metadata(folder: Path) -> dict[str, Any] | None:
    """A model's ``metadata.json`` as a dict, or None (logged) if it is missing or unreadable."""
    try:
        data = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("Skipping model folder %s: unreadable metadata.json (%s)", folder.name, exc)
        return None
    return data if isinstance(data, dict) else None


def list_models(store: Path) -> list[dict[str, Any]]:
    """Every model in the store, newest first, with the fields today's bot reads.

    Models made by older workers may lack fields; they are listed with what they have.
    """
    if not store.is_dir():
        return []
    models: list[dict[str, Any]] = []
    for folder in store.iterdir():
        if not folder.is_dir() or folder.is_symlink() or not MODEL_ID_RE.match(folder.name):
            continue
        meta = read_metadata(folder)
        if meta is None:
            continue
        entry = {key: meta.get(key) for key in LISTED_FIELDS}
        entry["model_id"] = folder.name
        if not entry.get("display_name"):
            entry["display_name"] = entry.get("custom_name") or folder.name
        if isinstance(meta.get("metrics"), dict):
            entry["metrics"] = meta["metrics"]
        models.append(entry)
    models.sort(key=lambda m: (str(m.get("created_at") or ""), m["model_id"]), reverse=True)
    return models
