"""Which Keras backend ``keras_*`` models run on, and importing Keras on it.

Keras 3 runs on JAX, TensorFlow or PyTorch; the backend is fixed by ``$KERAS_BACKEND`` when Keras is first
imported in a process. The worker prefers JAX, which the ``[keras]`` extra installs: on this worker's
dense networks it trains as fast and as accurately as TensorFlow at a fraction of the install size
(README, "Install"; ``benchmarks/install_weight.py``). A network saved on one backend loads on another
(Keras' ``.keras`` format), so models trained on TensorFlow before keep working. Nothing here imports a
backend until a network is built or loaded.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

#: Backends the worker picks from, in order, when ``$KERAS_BACKEND`` is not set: JAX (the ``[keras]``
#: extra), then TensorFlow (Keras' own default, what older installs have), then PyTorch. Each name is also
#: the module it needs.
BACKENDS = ("jax", "tensorflow", "torch")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def keras_backend() -> str | None:
    """The backend a ``keras_*`` job uses, or None when none is installed.

    ``$KERAS_BACKEND`` is the user's choice and always wins (if it names a backend that is not installed,
    :func:`import_keras` says so in a sentence); otherwise the first installed of :data:`BACKENDS`.
    """
    chosen = os.environ.get("KERAS_BACKEND", "").strip()
    if chosen:
        return chosen
    return next((name for name in BACKENDS if _installed(name)), None)


def import_keras() -> Any:
    """Keras, on the backend :func:`keras_backend` picks.

    ``$KERAS_BACKEND`` is set (when unset) before Keras is imported: in a job process, or in the kernel
    when a model is opened there. If Keras was already imported in this process, its backend stays.
    """
    backend = keras_backend() or "tensorflow"
    os.environ.setdefault("KERAS_BACKEND", backend)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no start-up chatter in the worker's output
    if backend in BACKENDS and not _installed(backend):
        raise RuntimeError(
            f"KERAS_BACKEND is {backend!r} but {backend} is not installed; install it, or unset "
            "KERAS_BACKEND so the worker picks an installed backend."
        )
    import keras

    return keras
