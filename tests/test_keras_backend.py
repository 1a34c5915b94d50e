"""Which Keras backend ``keras_*`` jobs run on (statsbot_nb.ml.kerasbackend): JAX first, the user's
``$KERAS_BACKEND`` always, a clear sentence when that backend is missing, and networks that move between
backends."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from statsbot_nb.ml import kerasbackend
from statsbot_nb.ml.estimators import build_estimator


def _pretend_installed(monkeypatch: pytest.MonkeyPatch, modules: set[str]) -> None:
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setattr(kerasbackend, "_installed", lambda name: name in modules)


@pytest.mark.parametrize(
    ("modules", "expected"),
    [
        ({"jax", "tensorflow", "torch"}, "jax"),
        ({"tensorflow", "torch"}, "tensorflow"),
        ({"torch"}, "torch"),
        (set(), None),
    ],
)
def test_jax_first_then_tensorflow_then_torch(
    monkeypatch: pytest.MonkeyPatch, modules: set[str], expected: str | None
) -> None:
    _pretend_installed(monkeypatch, modules)
    assert kerasbackend.keras_backend() == expected


def test_the_users_keras_backend_always_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    _pretend_installed(monkeypatch, {"jax", "tensorflow"})
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    assert kerasbackend.keras_backend() == "tensorflow"


def test_a_missing_chosen_backend_is_a_sentence_before_keras_is_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    _pretend_installed(monkeypatch, {"jax"})
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    with pytest.raises(RuntimeError, match=r"KERAS_BACKEND is 'torch' but torch is not installed; install it, or"):
        kerasbackend.import_keras()


# A job process: train a tiny network as a job would (nothing imported Keras before), report the backend.
_TRAIN = """
import json, pickle, sys
import numpy as np
from statsbot_nb.ml.estimators import build_estimator
from statsbot_nb.ml.kerasbackend import keras_backend
rng = np.random.default_rng(0)
X = rng.normal(size=(200, 3)).astype("float32")
y = (X[:, 0] + X[:, 1] > 0).astype(int)
net = build_estimator("keras_binary_classification", "classification", {"epochs": 3}).estimator.fit(X, y)
import keras
open(sys.argv[1], "wb").write(pickle.dumps(net))
proba = net.predict_proba(X[:5]).tolist()
print(json.dumps({"picked": keras_backend(), "used": keras.backend.backend(), "proba": proba}))
"""
_LOAD = """
import json, pickle, sys
import numpy as np
net = pickle.loads(open(sys.argv[1], "rb").read())
import keras
X = np.random.default_rng(0).normal(size=(200, 3)).astype("float32")
print(json.dumps({"used": keras.backend.backend(), "proba": net.predict_proba(X[:5]).tolist()}))
"""


def _run(code: str, model: Path, backend: str | None) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    if backend:
        env["KERAS_BACKEND"] = backend
    out = subprocess.run([sys.executable, "-c", code, str(model)], env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.extra("keras")
def test_a_job_process_trains_on_the_backend_the_worker_picks(tmp_path: Path) -> None:
    assert build_estimator("keras_regression", "regression", {"epochs": 2}).family == "keras"
    result = _run(_TRAIN, tmp_path / "net.pkl", None)
    assert result["used"] == result["picked"]
    if importlib.util.find_spec("jax") is not None:  # what the [keras] extra installs
        assert result["used"] == "jax"


@pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("keras", "jax", "tensorflow")),
    reason="needs Keras with both JAX and TensorFlow installed",
)
def test_a_network_trained_on_tensorflow_predicts_the_same_on_jax(tmp_path: Path) -> None:
    """A model trained before the worker preferred JAX (on TensorFlow) still loads and predicts alike."""
    model = tmp_path / "net.pkl"
    trained = _run(_TRAIN, model, "tensorflow")
    loaded = _run(_LOAD, model, "jax")
    assert (trained["used"], loaded["used"]) == ("tensorflow", "jax")
    for row_tf, row_jax in zip(trained["proba"], loaded["proba"], strict=True):  # type: ignore[call-overload]
        assert row_tf == pytest.approx(row_jax, abs=1e-5)
