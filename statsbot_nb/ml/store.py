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

Storage only: job handlers (:mod:`statsbot_nb.handlers.models`) parse requests and call this module.
It imports nothing heavy at module level (numpy loads only for artefacts).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import secrets
import shutil
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import atomic
from ..errors import JobError
from ..strictjson import to_strict_json
from .safeload import load_artefacts, load_model, trust_model
from .storefiles import (
    _STALE_TMP_SECONDS,
    ARTEFACTS_FILE,
    ENCODERS_FILE,
    FORMAT_VERSION,
    LISTED_FIELDS,
    METADATA_FILE,
    MODEL_FILE,
    MODEL_ID_RE,
    PICKLE_PROTOCOL,
    existing_model,
    json_bytes,
    log,
    model_dir,
    no_such_model,
    read_metadata,
    rewrite_metadata,
    sha256_bytes,
    validate_model_id,
)


def list_models(store: Path, *, copy: bool = True) -> list[dict[str, Any]]:
    """Every model in the store, newest first, with the fields today's bot reads (strict JSON values).

    Models made by older workers may lack fields; they are listed with what they have. Each model's entry
    is read from its ``metadata.json`` once and kept (see :class:`_Listing`) until that file changes, so
    listing a store of many models costs a folder listing and one ``stat`` per model. The entries are
    the caller's own copies; with ``copy=False`` they are the kept ones, which the caller must not change.
    """
    entries = _LISTING.entries(store)
    return [_copy_entry(entry) for entry in entries] if copy else list(entries)


#: What identifies one version of a ``metadata.json``: a rewrite (always a new file, renamed into place)
#: changes the inode, an edit in place the times or the size.
StatKey = tuple[int, int, int, int, int]


class _Listing:
    """The listed entry of every model folder, kept per store with the :data:`StatKey` of the
    ``metadata.json`` it was read from.

    Each listing lists the store folder anew (models added, removed or renamed by any process show at
    once) and ``lstat`` s each ``metadata.json``; only a file whose key changed is read again. The key is
    taken before the read, so a file replaced during the read is read again next time, never kept stale.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stores: dict[str, dict[str, tuple[StatKey, dict[str, Any] | None, float]]] = {}

    def entries(self, store: Path) -> list[dict[str, Any]]:
        """The store's entries, newest first (shared: copy before changing one)."""
        try:
            scan = list(os.scandir(store))
        except (FileNotFoundError, NotADirectoryError):
            return []
        with self._lock:
            known = self._stores.get(str(store), {})
        fresh: dict[str, tuple[StatKey, dict[str, Any] | None, float]] = {}
        for item in scan:
            name = item.name
            if not MODEL_ID_RE.fullmatch(name) or not item.is_dir(follow_symlinks=False):
                continue
            try:
                st = os.stat(os.path.join(item.path, METADATA_FILE), follow_symlinks=False)
            except OSError:
                continue  # no metadata.json (yet): not a model
            key = (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            cached = known.get(name)
            fresh[name] = cached if cached is not None and cached[0] == key else (key, *_entry(Path(item.path)))
        with self._lock:
            self._stores[str(store)] = fresh
        listed = [(created, name, entry) for name, (_, entry, created) in fresh.items() if entry is not None]
        listed.sort(key=lambda t: (t[0], t[1]), reverse=True)
        return [entry for _, _, entry in listed]


def _entry(folder: Path) -> tuple[dict[str, Any] | None, float]:
    """A model folder's listed entry (None when its metadata is unreadable) and its sort key."""
    meta = read_metadata(folder)
    if meta is None:
        return None, float("-inf")
    entry = {key: meta.get(key) for key in LISTED_FIELDS}
    entry["model_id"] = folder.name
    if not entry.get("display_name"):
        entry["display_name"] = entry.get("custom_name") or folder.name
    if isinstance(meta.get("metrics"), dict):
        entry["metrics"] = meta["metrics"]
    return to_strict_json(entry), _created_key(entry.get("created_at"))


def _copy_entry(value: Any) -> Any:
    """A copy of a strict JSON value (every dict and list copied; the rest is immutable)."""
    if isinstance(value, dict):
        return {k: _copy_entry(v) if isinstance(v, (dict, list)) else v for k, v in value.items()}
    return [_copy_entry(v) if isinstance(v, (dict, list)) else v for v in value]


_LISTING = _Listing()


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
        _write_file(tmp / METADATA_FILE, json_bytes(meta))
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


# -- changing a stored model ---------------------------------------------------------------------------


def remove_model(store: Path, model_id: object) -> str:
    """Remove a model's folder (moved aside first, so it disappears at once); return its id."""
    folder = model_dir(store, model_id)
    if not folder.is_dir():
        raise no_such_model(model_id)
    trash = store.resolve() / f".trash-{folder.name}-{secrets.token_hex(4)}"
    try:
        os.replace(folder, trash)
    except OSError as exc:
        raise JobError(f"Model {model_id} could not be deleted: {exc.strerror or exc}.") from exc
    shutil.rmtree(trash, ignore_errors=True)
    log.info("Deleted model %s", folder.name)
    return folder.name


def rename_model(store: Path, model_id: object, name: str) -> str:
    """Set a model's ``custom_name`` and ``display_name`` to ``name`` (atomic metadata rewrite); return its id."""
    folder, meta = existing_model(store, model_id)
    meta["custom_name"] = name
    meta["display_name"] = name
    rewrite_metadata(folder, meta)
    return folder.name


__all__ = [
    "ARTEFACTS_FILE",
    "ENCODERS_FILE",
    "FORMAT_VERSION",
    "LISTED_FIELDS",
    "METADATA_FILE",
    "MODEL_FILE",
    "MODEL_ID_RE",
    "PICKLE_PROTOCOL",
    "list_models",
    "load_artefacts",
    "load_model",
    "model_dir",
    "new_model_id",
    "read_metadata",
    "release_model_id",
    "remove_model",
    "rename_model",
    "save_model",
    "sha256_bytes",
    "trust_model",
    "validate_model_id",
]
