"""``keras_*`` model types: a dense Keras network behind a scikit-learn interface.

It sits at the end of the same preprocessing pipeline as every other model (numeric columns scaled,
categories one-hot encoded), reports progress once per epoch, and pickles as bytes of Keras' own
``.keras`` format (a Keras model itself does not pickle reliably), so ``model.pkl`` stays one file
with a checksum like every other model. Keras is imported only when a network is built or loaded.

The network is either our default (``hidden_layers`` of ReLU units, optional ``dropout``) or the
``architecture`` the bot sends for ``keras_*`` models (``keras_templates.get_template`` in the bot)::

    {"layers": [{"type": "Dense", "units": 8, "activation": "relu", "kernel_initializer": "he_normal"},
                {"type": "Dropout", "rate": 0.2},
                {"type": "Dense", "units": 1, "activation": "sigmoid"}],
     "compile": {"optimizer": "adam", "loss": "binary_crossentropy", "metrics": ["accuracy"]}}

The architecture is untrusted input: it is read into plain, checked values by
:func:`statsbot_nb.ml.kerasspec.parse_architecture` and the network is built from those values only.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from .curves import CurveRecorder, rows_phrase
from .kerasbackend import import_keras
from .kerasspec import (
    DEFAULT_HIDDEN,
    INITIALIZERS,
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    MAX_LAYERS,
    MAX_UNITS,
    MAX_WEIGHTS,
    OPTIMIZERS,
    REGRESSION_LOSSES,
    ArchitectureSpec,
    LayerSpec,
    _choice,
    _describe_logs,
    _rate,
    _short,
    _whole,
    parse_architecture,
    weight_count,
)

Report = Callable[[float, str], None]


def _dense(X: Any) -> np.ndarray:
    array = X.toarray() if hasattr(X, "toarray") else np.asarray(X)
    return array.astype("float32")


class _KerasNet(BaseEstimator):
    """Shared checking, fitting, prediction and pickling of the regressor and the classifier.

    Parameters (the names the bot sends for ``keras_*`` models, plus our own):

    - ``architecture``: the bot's ``{"layers": [...], "compile": {...}}``; None builds the default network
      from ``hidden_layers`` and ``dropout`` (which must then stay at their defaults, so a value is never
      silently ignored).
    - ``epochs``, ``batch_size``, ``learning_rate`` (given to whichever optimizer is used),
      ``random_state`` (seeds Keras, the weights and the validation rows).
    - ``kernel_initializer``: for every Dense layer whose own entry names none.
    - ``validation_split``: the fraction of the *training* rows set aside as Keras validation data, like
      Keras' own ``fit(validation_split=...)`` and the bot's trainer: those rows are not fitted and their
      loss is shown in each epoch's progress message. Unlike Keras (which takes the last rows, all of one
      class when a file is sorted by the target) the rows are drawn at random with ``random_state``, and
      every class keeps rows in the fitted part. The held-out *test* rows that score the model are set
      apart earlier by the train job from ``test_size``; this is a further split of what remains.
    - ``verbose``: accepted (0, 1 or 2) and recorded, but Keras always runs silently: a job's progress goes
      through the report callback, never as progress bars on the job process's output.
    - ``n_features``: accepted and recorded only. The input layer is sized from the data actually fitted,
      because one-hot encoding of category columns makes more input columns than the bot's count of
      feature columns; a different count is noted in ``notes_``, never an error.
    """

    _classify = False

    def __init__(
        self,
        hidden_layers: tuple[int, ...] = DEFAULT_HIDDEN,
        epochs: int = 60,
        batch_size: int = 32,
        learning_rate: float = 0.001,
        dropout: float = 0.0,
        random_state: int = 42,
        architecture: dict[str, Any] | None = None,
        kernel_initializer: str = "glorot_uniform",
        validation_split: float = 0.0,
        verbose: int = 0,
        n_features: int | None = None,
    ) -> None:
        self.hidden_layers = hidden_layers
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.dropout = dropout
        self.random_state = random_state
        self.architecture = architecture
        self.kernel_initializer = kernel_initializer
        self.validation_split = validation_split
        self.verbose = verbose
        self.n_features = n_features

    # -- checking -----------------------------------------------------------------------------------

    def check_params(self) -> ArchitectureSpec:
        """Check every parameter (``ValueError``, one sentence naming it); return the network to build."""
        _whole(self.epochs, "epochs", 1, MAX_EPOCHS)
        _whole(self.batch_size, "batch_size", 1, MAX_BATCH_SIZE)
        rate = self.learning_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 < float(rate) < 1.0:
            raise ValueError(f"learning_rate must be a number between 0 and 1, not {_short(rate)}.")
        _rate(self.dropout, "dropout")
        _whole(self.random_state, "random_state", 0, 2**32 - 1)
        _choice(self.kernel_initializer, INITIALIZERS, "kernel_initializer")
        split = _rate(self.validation_split, "validation_split")
        if split > 0.9:
            raise ValueError(f"validation_split must be at most 0.9, not {split!r}.")
        if self.verbose not in (0, 1, 2):  # True/False compare equal to 1/0
            raise ValueError(f"verbose must be 0, 1 or 2, not {_short(self.verbose)}.")
        if self.n_features is not None:
            _whole(self.n_features, "n_features", 1, 10_000_000)
        hidden = self.hidden_layers
        if isinstance(hidden, (int, float)) and not isinstance(hidden, bool):
            hidden = (hidden,)
        if not isinstance(hidden, (list, tuple)) or not hidden or len(hidden) > MAX_LAYERS:
            raise ValueError(f"hidden_layers must list 1 to {MAX_LAYERS} layer sizes.")
        sizes = tuple(_whole(u, "hidden_layers", 1, MAX_UNITS) for u in hidden)
        if self.architecture is not None:
            if sizes != DEFAULT_HIDDEN or float(self.dropout) != 0.0:
                raise ValueError(
                    "hidden_layers and dropout describe the default network; with an architecture "
                    "put the layers (and their dropout) in architecture.layers instead."
                )
            return parse_architecture(self.architecture, self._classify)
        layers: list[LayerSpec] = []
        for units in sizes:
            layers.append(LayerSpec("Dense", units=units, activation="relu"))
            if self.dropout:
                layers.append(LayerSpec("Dropout", rate=float(self.dropout)))
        output = LayerSpec("Dense", units=1, activation="softmax" if self._classify else "linear")
        return ArchitectureSpec(tuple(layers), output, "adam", None, ())

    # -- fitting ------------------------------------------------------------------------------------

    def _output(self, spec: ArchitectureSpec, n_classes: int) -> tuple[LayerSpec, str, str]:
        """The output layer, the loss and the output mode (``sigmoid``, ``softmax``, ``value``) to build."""
        raise NotImplementedError

    def fit(
        self,
        X: Any,
        y: Any,
        report: Report | None = None,
        validation: tuple[Any, Any] | None = None,
        recorder: CurveRecorder | None = None,
    ) -> _KerasNet:
        """Train for ``epochs`` epochs, calling ``report(fraction, message)`` after each.

        With a ``recorder``, each epoch's training loss (Keras' mean over the epoch's batches) and
        validation loss go there: on the rows ``validation_split`` set aside when it is set, else on the
        held-out ``validation`` rows, scored after each epoch and never fitted.
        """
        spec = self.check_params()
        keras = import_keras()
        seed = int(self.random_state)
        keras.utils.set_random_seed(seed)
        X = _dense(X)
        y = np.asarray(y)
        n_inputs = X.shape[1]
        notes: list[str] = []
        if self.n_features is not None and int(self.n_features) != n_inputs:
            notes.append(
                f"n_features is {int(self.n_features)} but the prepared data has {n_inputs} input "
                f"columns (category columns are one-hot encoded); the input layer has {n_inputs}."
            )
        n_classes = int(y.max()) + 1 if self._classify else 0
        output, loss, mode = self._output(spec, n_classes)
        changed = (output.units, output.activation) != (spec.output.units, spec.output.activation)
        if self.architecture is not None and changed:
            notes.append(
                f"The output layer has {output.units} {output.activation} unit(s) instead of "
                f"{spec.output.units} {spec.output.activation} unit(s), to match the target."
            )
        weights = weight_count(n_inputs, (*spec.hidden, output))
        if weights > MAX_WEIGHTS:
            raise ValueError(
                f"the network would have {weights:,} weights on {n_inputs} input columns and this "
                f"worker trains at most {MAX_WEIGHTS:,}, so a request cannot exhaust the computer's "
                "memory; use fewer or smaller layers."
            )
        default_init = _choice(self.kernel_initializer, INITIALIZERS, "kernel_initializer")
        layers: list[Any] = [keras.Input(shape=(n_inputs,))]
        for layer in (*spec.hidden, output):
            if layer.kind == "Dropout":
                layers.append(keras.layers.Dropout(layer.rate, seed=seed))
            else:  # names from the allow-lists above, each resolved by Keras to its built-in
                layers.append(
                    keras.layers.Dense(
                        layer.units, activation=layer.activation, kernel_initializer=layer.initializer or default_init
                    )
                )
        model = keras.Sequential(layers)
        model.compile(
            optimizer=getattr(keras.optimizers, OPTIMIZERS[spec.optimizer])(float(self.learning_rate)),
            loss=self._loss(keras, loss),
            metrics=list(spec.metrics) or None,
        )

        target = self._target(y, mode)
        fit_rows, split_rows = _validation_rows(y, float(self.validation_split), self._classify, seed)
        validation_data, held_rows = None, None
        if split_rows is not None:
            validation_data = (X[split_rows], target[split_rows])
            X, target = X[fit_rows], target[fit_rows]
            if recorder is not None:
                recorder.note = f"{_BATCHES}the {len(split_rows):,} training rows validation_split set aside"
        else:
            if float(self.validation_split) > 0:
                notes.append(
                    "There are too few training rows to set some aside for validation_split; every training "
                    "row is fitted."
                )
            if recorder is not None and validation is not None and len(validation[1]):
                # Scored by calling the network eagerly and its loss: Keras' own validation would compile an
                # evaluation step for each new shape, ~0.5 s a job on 2 cores, for this alone.
                held_rows = (_dense(validation[0]), self._target(np.asarray(validation[1]), mode))
                recorder.note = f"{_BATCHES}{rows_phrase(len(held_rows[1]), recorder.held_total)} held-out test rows"
        epochs, loss_of = int(self.epochs), self._loss(keras, loss)

        class _Progress(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                logs = logs or {}
                if recorder is not None:
                    training = {k: v for k, v in logs.items() if not k.startswith("val_")}
                    held = {k[4:]: v for k, v in logs.items() if k.startswith("val_")}
                    if held_rows is not None:
                        predicted = self.model(held_rows[0], training=False)  # eager: nothing to compile
                        held = {"loss": float(keras.ops.convert_to_numpy(loss_of(held_rows[1], predicted)))}
                    recorder.add(epoch + 1, epochs, training, held)
                if report is not None:
                    report((epoch + 1) / epochs, f"Epoch {epoch + 1}/{epochs} ({_describe_logs(logs)})")

        # verbose=0 always: progress goes through the callback, never onto the job's stdout.
        model.fit(
            X,
            target,
            epochs=epochs,
            batch_size=int(self.batch_size),
            verbose=0,
            validation_data=validation_data,
            callbacks=[_Progress()],
        )
        self.model_ = model
        self.n_features_in_ = n_inputs
        self.output_mode_ = mode
        self.loss_ = loss
        self.optimizer_ = spec.optimizer  # the reloaded network is not compiled, so it keeps no optimizer
        self.validation_rows_ = 0 if split_rows is None else len(split_rows)
        self.notes_ = notes
        if self._classify:
            self.classes_ = np.arange(n_classes)
        return self

    def _target(self, y: np.ndarray, mode: str) -> np.ndarray:
        """The target as the network's loss takes it: a float column (sigmoid), class numbers, or floats."""
        if self._classify:
            return y.astype("float32").reshape(-1, 1) if mode == "sigmoid" else y.astype("int64")
        return y.astype("float32")

    @staticmethod
    def _loss(keras: Any, name: str) -> Any:
        if name == "binary_crossentropy":
            return keras.losses.BinaryCrossentropy()
        if name == "sparse_categorical_crossentropy":
            return keras.losses.SparseCategoricalCrossentropy()
        return getattr(keras.losses, REGRESSION_LOSSES[name])()

    def _raw(self, X: Any) -> np.ndarray:
        return np.asarray(self.model_.predict(_dense(X), verbose=0))

    # -- pickling -----------------------------------------------------------------------------------

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
            keras = import_keras()
            with tempfile.TemporaryDirectory(prefix="statsbot-keras-") as folder:
                path = Path(folder) / "model.keras"
                path.write_bytes(blob)
                self.model_ = keras.saving.load_model(path, compile=False)


_BATCHES = "training: the mean loss over each epoch's batches; validation: "


def _validation_rows(
    y: np.ndarray, fraction: float, classify: bool, seed: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Rows to fit and rows to validate on (random with ``seed``), or ``(None, None)`` for no validation.

    Every class keeps at least one fitted row; fewer than one validation row or two fitted rows means no
    validation.
    """
    n = len(y)
    n_val = int(n * fraction)
    if fraction <= 0 or n_val < 1 or n - n_val < 2:
        return None, None
    order = np.random.default_rng(seed).permutation(n)
    val, fit = order[:n_val], order[n_val:]
    if classify:
        missing = np.setdiff1d(np.unique(y), np.unique(y[fit]))
        if len(missing):
            move = np.isin(y[val], missing)
            fit, val = np.concatenate([fit, val[move]]), val[~move]
    if len(val) == 0:
        return None, None
    return np.sort(fit), np.sort(val)


class KerasRegressor(RegressorMixin, _KerasNet):
    """A dense network with one output unit.

    Output rule: the architecture's last Dense layer always has 1 unit (other unit counts become 1); its
    activation is kept (``linear`` when none is named), except ``softmax``, which over one unit would always
    give 1, so it becomes ``linear``. The loss is the architecture's (from :data:`REGRESSION_LOSSES`) or mse.
    """

    def _output(self, spec: ArchitectureSpec, n_classes: int) -> tuple[LayerSpec, str, str]:
        out = spec.output
        activation = "linear" if out.activation == "softmax" else out.activation
        return (
            LayerSpec("Dense", units=1, activation=activation, initializer=out.initializer),
            spec.loss or "mse",
            "value",
        )

    def predict(self, X: Any) -> np.ndarray:
        """Predicted values, one per row."""
        return self._raw(X).ravel()


class KerasClassifier(ClassifierMixin, _KerasNet):
    """A dense network over the (encoded) classes ``0 .. n-1``.

    Output rule, so the network always trains on the real number of classes ``n``:

    - ``n == 2`` and the architecture's last Dense layer is 1 ``sigmoid`` unit (the bot's binary template):
      kept, trained with ``binary_crossentropy``; ``predict_proba`` gives ``[1 - p, p]``.
    - otherwise the last Dense layer becomes ``n`` ``softmax`` units (the bot's multiclass template always
      has 2 units, whatever the number of classes), trained with ``sparse_categorical_crossentropy``.
      ``categorical_crossentropy`` names the same quantity for one-hot labels; ours are class numbers.

    The architecture's loss must be one of :data:`CLASSIFICATION_LOSSES`, but the output decides which of
    them is used. ``predict_proba`` always returns one column per class. Changes are listed in ``notes_``.
    """

    _classify = True

    def _output(self, spec: ArchitectureSpec, n_classes: int) -> tuple[LayerSpec, str, str]:
        out = spec.output
        if n_classes == 2 and out.units == 1 and out.activation == "sigmoid":
            return out, "binary_crossentropy", "sigmoid"
        return (
            LayerSpec("Dense", units=max(n_classes, 1), activation="softmax", initializer=out.initializer),
            "sparse_categorical_crossentropy",
            "softmax",
        )

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, one column per class."""
        raw = self._raw(X)
        if getattr(self, "output_mode_", "softmax") == "sigmoid":
            p = np.clip(raw.reshape(-1), 0.0, 1.0)
            return np.column_stack([1.0 - p, p])
        return raw

    def predict(self, X: Any) -> np.ndarray:
        """The most likely class of each row."""
        return self.predict_proba(X).argmax(axis=1)
