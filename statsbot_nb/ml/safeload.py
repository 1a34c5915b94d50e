"""Loading a stored model safely: checksums are checked before anything is unpickled.

``metadata.json`` records the SHA-256 of ``model.pkl`` and ``encoders.pkl``; :func:`load_model` reads the
bytes once, checks them, and unpickles exactly those bytes. A model without checksums (saved by an older
worker) or with a mismatch is refused until the user runs ``statsbot-worker trust-model <model_id>``
(:func:`trust_model`). Nothing else is ever unpickled; artefacts are plain arrays read without pickle.
"""

from __future__ import annotations

import hmac
import io
import os
import pickle
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import JobError
from ..safefiles import read_bytes_nofollow
from .storefiles import (
    ARTEFACTS_FILE,
    ENCODERS_FILE,
    MODEL_FILE,
    existing_model,
    log,
    model_dir,
    read_regular,
    rewrite_metadata,
    sha256_bytes,
)


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
    folder, meta = existing_model(store, model_id)
    mid = folder.name
    model_bytes = _verified(read_regular(folder / MODEL_FILE, mid), meta.get("model_sha256"), mid, MODEL_FILE)
    enc_bytes = None
    enc_path = folder / ENCODERS_FILE
    if os.path.lexists(enc_path) or meta.get("encoders_sha256"):
        enc_bytes = _verified(read_regular(enc_path, mid), meta.get("encoders_sha256"), mid, ENCODERS_FILE)
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
    try:
        data = read_bytes_nofollow(folder / ARTEFACTS_FILE)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.warning("Artefacts of %s are not a regular file; ignored (%s)", folder.name, exc)
        return {}
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError) as exc:
        log.warning("Unreadable artefacts for %s: %s", folder.name, exc)
        return {}


def trust_model(store: Path, model_id: object) -> dict[str, Any]:
    """Record the current checksums of a model's pickle files, so :func:`load_model` accepts it.

    For models saved by older workers (no checksums) or files the user replaced on purpose. Only run it
    for files you trust: loading a pickle runs code.
    """
    folder, meta = existing_model(store, model_id)
    mid = folder.name
    meta["model_sha256"] = sha256_bytes(read_regular(folder / MODEL_FILE, mid))
    enc_path = folder / ENCODERS_FILE
    if os.path.lexists(enc_path):
        meta["encoders_sha256"] = sha256_bytes(read_regular(enc_path, mid))
    else:
        meta.pop("encoders_sha256", None)
    meta["trusted_at"] = datetime.now().astimezone().isoformat(timespec="seconds")
    rewrite_metadata(folder, meta)
    log.info("Recorded checksums for model %s", mid)
    return meta
