"""The local model store: ``<home>/models/<model_id>/`` with ``model.pkl``, ``metadata.json`` and more.

The layout is the one today's headless StatsBot workers use, so models move freely between them and us.
A ``model_id`` from the server is checked against a strict pattern and must resolve inside the store.

Safety rules, because a pickle runs code when it is loaded:

- a model is written into a hidden ``.tmp-*`` folder and renamed into place only when every file is
  complete, so a crash mid-save never leaves half a model (hidden folders are never listed or loaded);
- ``metadata.json`` records the SHA-256 of ``model.pkl`` and ``encoders.pkl``; :func:`load_model` reads the
  bytes once, checks them, and unpickles exactly those bytes. A model without checksums (saved by an older
  worker) or with a mismatch is refused until the user runs ``statsbot-worker trust-model <model_id>``
  (:func:`trust_model`). Nothing else is ever unpickled.

Files: ``model.pkl`` is a plain :mod:`pickle` (protocol 4) of a fitted scikit-learn ``Pipeline``
(preprocessing + estimator) with ``.predict(DataFrame)``, which is what today's workers call;
``encoders.pkl`` is ``{target_column: LabelEncoder}`` for text class labels (today's workers apply the
entries that name feature columns, so ours is skipped by them); ``artefacts.npz`` holds a held-out
sample for plots (see :func:`load_artefacts`).

This module is imported by the worker's dispatch table, so it imports nothing heavy at module level.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import pickle
import re
import secrets
import shutil
import stat
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import atomic
from ..errors import JobError
from ..strictjson import to_strict_json

if TYPE_CHECKING:
    from ..context import JobContext

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
MAX_NAME_CHARS = 100
_STALE_TMP_SECONDS = 3600


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
    path = (root / mid).resolve()
    if path.parent != root:
        raise JobError(f"Model id {mid!r} does not name a folder inside the model store.")
    return path


def read_metadata(folder: Path) -> dict[str, Any] | None:
    """A model's ``metadata.json`` as a dict, or None (logged) if it is missing or unreadable."""
    try:
        data = json.loads((folder / METADATA_FILE).read_text(encoding="utf-8"))
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
        if not folder.is_dir() or folder.is_symlink() or not MODEL_ID_RE.fullmatch(folder.name):
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
    models.sort(key=lambda m: (_created_key(m.get("created_at")), m["model_id"]), reverse=True)
    return models


# -- creating and saving ------------------------------------------------------------------------------


def _created_key(value: object) -> float:
    """``created_at`` as a POSIX time for sorting (times without a zone are local, as older workers wrote
    them; unreadable or missing ones sort last)."""
    if not isinstance(value, str):
        return float("-inf")
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return float("-inf")
    return (stamp if stamp.tzinfo else stamp.astimezone()).timestamp()


def new_model_id(store: Path, model_type: str, task_type: str, now: datetime | None = None) -> str:
    """Reserve and return ``model_<model_type>_<task_type>_<YYYYmmdd_HHMMSS>`` (``_2``... on collision).

    The id's folder is created with an exclusive ``mkdir``, so two trainings finishing in the same second
    get different ids even across processes. The empty folder is invisible to :func:`list_models` until
    :func:`save_model` fills it.
    """
    stamp = (now or datetime.now()).strftime("%Y%m%d_%H%M%S")
    base = validate_model_id(f"model_{model_type}_{task_type}_{stamp}")
    store.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        candidate = base if attempt == 1 else f"{base}_{attempt}"
        try:
            (store / candidate).mkdir()
        except FileExistsError:
            continue
        return candidate
    raise JobError("Could not find a free model id; too many models were saved in the same second.")


def release_model_id(store: Path, model_id: str) -> None:
    """Give back a reserved id whose model was never saved (removes the folder only if it is empty)."""
    with contextlib.suppress(OSError, JobError):
        model_dir(store, model_id).rmdir()


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "xb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _dumps(obj: Any, what: str) -> bytes:
    try:
        return pickle.dumps(obj, protocol=PICKLE_PROTOCOL)
    except Exception as exc:
        raise JobError(
            f"The trained model could not be saved because its {what} cannot be stored "
            f"({type(exc).__name__}); nothing was written to the model store."
        ) from exc


def _json_bytes(data: dict[str, Any]) -> bytes:
    """``metadata.json``'s bytes: strict JSON, indented, UTF-8."""
    return json.dumps(to_strict_json(data), indent=2, ensure_ascii=False, allow_nan=False).encode("utf-8")


def save_model(
    store: Path,
    model_id: str,
    model_obj: Any,
    metadata: dict[str, Any],
    artefacts: dict[str, Any] | None = None,
    encoders: dict[str, Any] | None = None,
) -> Path:
    """Write a model atomically and return its folder.

    Everything is written into ``store/.tmp-<id>-<random>`` and renamed to ``store/<model_id>`` at the
    end; on any failure the temporary folder (and the id's empty reservation) is removed and the
    error propagates, so the store never holds half a model. ``metadata`` gains ``model_id``, the
    checksums, ``files`` and ``format_version``.
    """
    final = model_dir(store, model_id)
    store.mkdir(parents=True, exist_ok=True)
    _sweep_stale_temps(store)
    if final.exists() and any(final.iterdir()):
        raise JobError(f"A model named {model_id} already exists; train again to get a new id.")
    tmp = store / f".tmp-{model_id}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        model_bytes = _dumps(model_obj, "model")
        meta = dict(metadata)
        meta.update(model_id=model_id, format_version=FORMAT_VERSION, model_sha256=sha256_bytes(model_bytes))
        _write_file(tmp / MODEL_FILE, model_bytes)
        files = {MODEL_FILE: meta["model_sha256"]}
        if encoders:
            enc_bytes = _dumps(encoders, "label encoder")
            meta["encoders_sha256"] = sha256_bytes(enc_bytes)
            _write_file(tmp / ENCODERS_FILE, enc_bytes)
            files[ENCODERS_FILE] = meta["encoders_sha256"]
        if artefacts:
            files[ARTEFACTS_FILE] = _write_artefacts(tmp / ARTEFACTS_FILE, artefacts)
        meta["files"] = files
        _write_file(tmp / METADATA_FILE, _json_bytes(meta))
        _move_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        release_model_id(store, model_id)
        raise
    log.info("Saved model %s", model_id)
    return final


def _write_artefacts(path: Path, arrays: dict[str, Any]) -> str:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    data = buffer.getvalue()
    _write_file(path, data)
    return sha256_bytes(data)


def _move_into_place(tmp: Path, final: Path) -> None:
    """Rename the finished temp folder to its final name (replacing the empty reservation)."""
    try:
        os.replace(tmp, final)
    except OSError:
        # Platforms that cannot rename onto an existing (empty) folder: drop the reservation first.
        if final.is_dir() and not any(final.iterdir()):
            final.rmdir()
        os.replace(tmp, final)
    atomic.fsync_dir(final.parent)


def _sweep_stale_temps(store: Path) -> None:
    """Remove temp and trash folders left by a worker that died mid-save or mid-delete over an hour ago."""
    cutoff = time.time() - _STALE_TMP_SECONDS
    for entry in [*store.glob(".tmp-*"), *store.glob(".trash-*")]:
        with contextlib.suppress(OSError):
            if entry.is_dir() and not entry.is_symlink() and entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)


# -- loading ------------------------------------------------------------------------------------------


def _no_such_model(model_id: object) -> JobError:
    return JobError(f"There is no model {model_id} in the model store; list_models shows the ids to use.")


def _existing_model(store: Path, model_id: object) -> tuple[Path, dict[str, Any]]:
    folder = model_dir(store, model_id)
    if not folder.is_dir():
        raise _no_such_model(model_id)
    meta = read_metadata(folder)
    if meta is None:
        raise JobError(f"Model {model_id} has no readable metadata.json; train it again.")
    return folder, meta


def _read_regular(path: Path, model_id: str) -> bytes:
    """The bytes of a regular file inside the model folder (never through a symlink)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        raise JobError(f"Model {model_id} is incomplete: {path.name} is missing; train it again.") from exc
    except OSError as exc:
        raise JobError(
            f"Model {model_id} cannot be read: {path.name} is not a regular file ({exc.strerror or exc})."
        ) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise JobError(f"Model {model_id} cannot be read: {path.name} is not a regular file.")
        with os.fdopen(fd, "rb") as fh:
            fd = -1
            return fh.read()
    finally:
        if fd >= 0:
            os.close(fd)


def _trust_hint(model_id: str) -> str:
    return f"if you trust this file, run `statsbot-worker trust-model {model_id}` and try again"


def _verified(data: bytes, expected: object, model_id: str, name: str) -> bytes:
    if not isinstance(expected, str) or not expected:
        raise JobError(
            f"Model {model_id} was saved without a checksum for {name} (by an older worker), so it is not "
            f"loaded; {_trust_hint(model_id)}."
        )
    if not hmac.compare_digest(sha256_bytes(data), expected.lower()):
        raise JobError(
            f"{name} of model {model_id} has changed since it was saved (checksum mismatch), so it is not "
            f"loaded; retrain the model, or {_trust_hint(model_id)}."
        )
    return data


def _loads(data: bytes, model_id: str, name: str) -> Any:
    try:
        return pickle.loads(data)
    except ModuleNotFoundError as exc:
        package = (exc.name or "a package").split(".")[0]
        raise JobError(
            f"Model {model_id} needs the Python package {package!r}, which is not installed; "
            f"install it with pip and try again."
        ) from exc
    except Exception as exc:
        raise JobError(
            f"{name} of model {model_id} could not be loaded ({type(exc).__name__}); it may come "
            "from an incompatible library version, so train the model again."
        ) from exc


def load_model(store: Path, model_id: object) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """``(model, encoders, metadata)`` of a checksum-verified model from inside the store.

    ``encoders`` is ``{}`` when the model has none. Raises :class:`JobError` for an invalid or unknown id,
    a missing checksum (older workers) or a checksum mismatch — in those cases nothing is unpickled.
    """
    folder, meta = _existing_model(store, model_id)
    mid = folder.name
    model_bytes = _verified(_read_regular(folder / MODEL_FILE, mid), meta.get("model_sha256"), mid, MODEL_FILE)
    enc_bytes = None
    enc_path = folder / ENCODERS_FILE
    if os.path.lexists(enc_path) or meta.get("encoders_sha256"):
        enc_bytes = _verified(_read_regular(enc_path, mid), meta.get("encoders_sha256"), mid, ENCODERS_FILE)
    model = _loads(model_bytes, mid, MODEL_FILE)
    encoders = _loads(enc_bytes, mid, ENCODERS_FILE) if enc_bytes is not None else {}
    if not isinstance(encoders, dict):
        encoders = {}
    if not hasattr(model, "predict"):
        raise JobError(f"Model {mid} does not contain a model that can predict; train it again.")
    return model, encoders, meta


def load_artefacts(store: Path, model_id: object) -> dict[str, Any]:
    """The held-out sample saved with a model (``y_true``, ``y_pred``, ``proba``, ``class_labels``), or {}.

    Read with ``allow_pickle=False``: the file holds plain arrays only.
    """
    import numpy as np

    folder = model_dir(store, model_id)
    path = folder / ARTEFACTS_FILE
    if not path.is_file() or path.is_symlink():
        return {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError) as exc:
        log.warning("Unreadable artefacts for %s: %s", folder.name, exc)
        return {}


def trust_model(store: Path, model_id: object) -> dict[str, Any]:
    """Record the current checksums of a model's pickle files, so :func:`load_model` accepts it.

    For models saved by older workers (no checksums) or files the user replaced on purpose. Only run it
    for files you trust: loading a pickle runs code.
    """
    folder, meta = _existing_model(store, model_id)
    mid = folder.name
    meta["model_sha256"] = sha256_bytes(_read_regular(folder / MODEL_FILE, mid))
    enc_path = folder / ENCODERS_FILE
    if os.path.lexists(enc_path):
        meta["encoders_sha256"] = sha256_bytes(_read_regular(enc_path, mid))
    else:
        meta.pop("encoders_sha256", None)
    meta["trusted_at"] = datetime.now().astimezone().isoformat(timespec="seconds")
    _rewrite_metadata(folder, meta)
    log.info("Recorded checksums for model %s", mid)
    return meta


def _rewrite_metadata(folder: Path, meta: dict[str, Any]) -> None:
    """Replace ``metadata.json`` atomically (write a temp file beside it, then rename)."""
    atomic.write_bytes(folder / METADATA_FILE, _json_bytes(meta))


# -- job handlers -------------------------------------------------------------------------------------


def list_models_job(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """``list_models``: every model in the local store, newest first.

    A field an older worker's model lacks is left out rather than sent as null: the bot reads entries
    with ``model.get(key, default)`` and then uses the value as text (``prediction_messages.py``
    ``model_selection_prompt``), so an absent key gets its default where a null would fail.
    """
    models = to_strict_json(list_models(ctx.settings.models_dir))
    return {"models": [{k: v for k, v in entry.items() if v is not None} for entry in models]}


def delete_model(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """``delete_model``: remove a model's folder (moved aside first, so it disappears at once)."""
    store = ctx.settings.models_dir
    model_id = params.get("model_id")
    folder = model_dir(store, model_id)
    if not folder.is_dir():
        raise _no_such_model(model_id)
    trash = store.resolve() / f".trash-{folder.name}-{secrets.token_hex(4)}"
    try:
        os.replace(folder, trash)
    except OSError as exc:
        raise JobError(f"Model {model_id} could not be deleted: {exc.strerror or exc}.") from exc
    shutil.rmtree(trash, ignore_errors=True)
    log.info("Deleted model %s", folder.name)
    return {"deleted": folder.name}


def validate_custom_name(name: object) -> str:
    """A display name: text of 1 to 100 characters without control characters, trimmed."""
    if not isinstance(name, str) or not name.strip():
        raise JobError("custom_name must be a non-empty text of at most 100 characters.")
    name = name.strip()
    if len(name) > MAX_NAME_CHARS:
        raise JobError(f"custom_name is {len(name)} characters long; use at most {MAX_NAME_CHARS}.")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise JobError("custom_name must not contain line breaks or other control characters.")
    return name


def set_model_name(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """``set_model_name``: set ``custom_name`` and ``display_name`` (atomic metadata rewrite)."""
    folder, meta = _existing_model(ctx.settings.models_dir, params.get("model_id"))
    name = validate_custom_name(params.get("custom_name"))
    meta["custom_name"] = name
    meta["display_name"] = name
    _rewrite_metadata(folder, meta)
    return {"model_id": folder.name, "custom_name": name}
