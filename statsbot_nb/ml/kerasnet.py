"""``keras_*`` model types: a small dense Keras network behind a scikit-learn interface.

It sits at the end of the same preprocessing pipeline as every other model (numeric columns scaled,
categories one-hot encoded), reports progress once per epoch, and pickles as bytes of Keras' own
``.keras`` format (a Keras model itself does not pickle reliably), so ``model.pkl`` stays one file
with a checksum like every other model. Keras is imported only when a network is built or loaded.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

Report = Callable[[float, str], None]


def _keras() -> Any:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no start-up chatter in the worker's output
    import keras

    return keras


def _dense(X: Any) -> np.ndarray:
    array = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
    return array.astype("float32")


class _KerasNet(BaseEstimator):
    """Shared fitting, prediction and pickling of the regressor and the classifier."""

    _classify = False

    def __init__(self, hidden_layers: tuple[int, ...] = (64, 32), epochs: int = 60, batch_size: int = 32,
                 learning_rate: float = 0.001, dropout: float = 0.0, random_state: int = 42) -> None:
        self.hidden_layers = hidden_layers
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.dropout = dropout
        self.random_state = random_state

    def _check(self) -> None:
        if not self.hidden_layers or any(int(u) < 1 for u in self.hidden_layers):
            raise ValueError("hidden_layers must list at least one layer size of 1 or more")
        if int(self.epochs) < 1 or int(self.batch_size) < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        if not 0.0 < float(self.learning_rate) < 1.0 or not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError("learning_rate must be in (0, 1) and dropout in [0, 1)")

    def fit(self, X: Any, y: Any, report: Report | None = None) -> _KerasNet:
        """Train for ``epochs`` epochs, calling ``report(fraction, message)`` after each."""
        self._check()
        keras = _keras()
        keras.utils.set_random_seed(int(self.random_state))
        X = _dense(X)
        y = np.asarray(y)
        outputs = int(y.max()) + 1 if self._classify else 1
        layers: list[Any] = [keras.Input(shape=(X.shape[1],))]
        for units in self.hidden_layers:
            layers.append(keras.layers.Dense(int(units), activation="relu"))
            if self.dropout:
                layers.append(keras.layers.Dropout(float(self.dropout)))
        layers.append(keras.layers.Dense(outputs, activation="softmax" if self._classify else None))
        model = keras.Sequential(layers)
        model.compile(optimizer=keras.optimizers.Adam(float(self.learning_rate)),
                      loss="sparse_categorical_crossentropy" if self._classify else "mse")
        epochs = int(self.epochs)

        class _Progress(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                if report is not None:
                    loss = (logs or {}).get("loss", float("nan"))
                    report((epoch + 1) / epochs, f"Epoch {epoch + 1}/{epochs} (loss {loss:.4g})")

        target = y.astype("int64") if self._classify else y.astype("float32")
        model.fit(X, target, epochs=epochs, batch_size=int(self.batch_size), verbose=0, callbacks=[_Progress()])
        self.model_ = model
        self.n_features_in_ = X.shape[1]
        if self._classify:
            self.classes_ = np.arange(outputs)
        return self

    def _raw(self, X: Any) -> np.ndarray:
        return np.asarray(self.model_.predict(_dense(X), verbose=0))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        model = state.pop("model_", None)
        if model is not None:
            with tempfile.TemporaryDirectory(prefix="statsbot-keras-") as folder:
                path = Path(folder) / "model.keras"
                model.save(path)
                state["_keras_bytes"] = path.read_bytes()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        blob = state.pop("_keras_bytes", None)
        self.__dict__.update(state)
        if blob is not None:
            keras = _keras()
            with tempfile.TemporaryDirectory(prefix="statsbot-keras-") as folder:
                path = Path(folder) / "model.keras"
                path.write_bytes(blob)
                self.model_ = keras.saving.load_model(path, compile=False)


class KerasRegressor(RegressorMixin, _KerasNet):
    """A dense network with one linear output, trained on mean squared error."""

    def predict(self, X: Any) -> np.ndarray:
        """Predicted values, one per row."""
        return self._raw(X).ravel()


class KerasClassifier(ClassifierMixin, _KerasNet):
    """A dense network with a softmax output over the (encoded) classes."""

    _classify = True

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, one column per class."""
        return self._raw(X)

    def predict(self, X: Any) -> np.ndarray:
        """The most likely class of each row."""
        return self.predict_proba(X).argmax(axis=1)
