"""The model store's layout: ids, folders, file names, and reading or rewriting ``metadata.json``.

The bottom of the store (:mod:`statsbot_nb.ml.store` saves, lists and changes models;
:mod:`statsbot_nb.ml.safeload` loads them). A ``model_id`` from the server is checked against a strict
pattern and must name a real folder (not a symlink) directly inside the store. Every file of a model
(``metadata.json``, the pickles, the artefacts) is opened without following a symlink and without blocking,
and read only if the opened object is a regular file, so a link cannot substitute another file and a FIFO
cannot hang ``list_models``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
from pathlib import Path
from typing import Any

from .. import atomic
from ..errors import JobError
from ..safefiles import open_nofollow, read_bytes_nofollow
from ..strictjson import to_strict_json

log = logging.getLogger("statsbot_nb.store")

MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
LISTED_FIELDS = (
    "model_id",
    "model_type",
    "task_type",
    "created_at",
    "feature_columns",
    "target_column",
    "custom_name",
    "display_name",
)
FORMAT_VERSION = 1
PICKLE_PROTOCOL = 4
MODEL_FILE = "model.pkl"
ENCODERS_FILE = "encoders.pkl"
METADATA_FILE = "metadata.json"
ARTEFACTS_FILE = "artefacts.npz"
_STALE_TMP_SECONDS = 3600
MAX_METADATA_BYTES = 16 << 20  # far above any real metadata.json; a bigger one is read only this far


def validate_model_id(model_id: object) -> str:
    """Return ``model_id`` if it is a plain store name, else raise :class:`JobError` saying why."""
    if not isinstance(model_id, str) or not MODEL_ID_RE.fullmatch(model_id) or ".." in model_id:
        raise JobError(
            f"{model_id!r} is not a valid model id: use the id shown by list_models (letters, digits, '_', '-', '.')."
        )
    return model_id


def model_dir(store: Path, model_id: object) -> Path:
    """The folder of ``model_id`` inside ``store``, refusing anything that would resolve outside it."""
    mid = validate_model_id(model_id)
    root = store.resolve()
    path = root / mid
    if path.is_symlink():
        raise JobError(
            f"Model {mid} is a symlink, not a folder inside the model store; links are never followed, remove it."
        )
    if path.resolve().parent != root:
        raise JobError(f"Model id {mid!r} does not name a folder inside the model store.")
    return path


def read_metadata(folder: Path) -> dict[str, Any] | None:
    """A model's ``metadata.json`` as a dict, or None (logged) if it is missing or unreadable."""
    try:
        data = json.loads(read_bytes_nofollow(folder / METADATA_FILE, MAX_METADATA_BYTES).decode("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("Skipping model folder %s: unreadable metadata.json (%s)", folder.name, exc)
        return None
    return data if isinstance(data, dict) else None


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def json_bytes(data: dict[str, Any]) -> bytes:
    """``metadata.json``'s bytes: strict JSON, indented, UTF-8."""
    return json.dumps(to_strict_json(data), indent=2, ensure_ascii=False, allow_nan=False).encode("utf-8")


def no_such_model(model_id: object) -> JobError:
    return JobError(f"There is no model {model_id} in the model store; list_models shows the ids to use.")


def existing_model(store: Path, model_id: object) -> tuple[Path, dict[str, Any]]:
    folder = model_dir(store, model_id)
    if not folder.is_dir():
        raise no_such_model(model_id)
    meta = read_metadata(folder)
    if meta is None:
        raise JobError(f"Model {model_id} has no readable metadata.json; train it again.")
    return folder, meta


def read_regular(path: Path, model_id: str) -> bytes:
    """The bytes of a regular file inside the model folder (never through a symlink)."""
    try:
        fd = open_nofollow(path, os.O_RDONLY)
    except FileNotFoundError as exc:
        raise JobError(f"Model {model_id} is incomplete: {path.name} is missing; train it again.") from exc
    except OSError as exc:
        raise JobError(
            f"Model {model_id} cannot be read: {path.name} is not a regular file ({exc.strerror or exc})."
        ) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise JobError(f"Model {model_id} cannot be read: {path.name} is not a regular file.")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as fh:
            fd = -1
            return fh.read()
    finally:
        if fd >= 0:
            os.close(fd)


def rewrite_metadata(folder: Path, meta: dict[str, Any]) -> None:
    """Replace ``metadata.json`` atomically (write a temp file beside it, then rename)."""
    atomic.write_bytes(folder / METADATA_FILE, json_bytes(meta))
