"""The ``architecture`` the bot sends for ``keras_*`` models, read as untrusted input (no Keras import).

:func:`parse_architecture` turns the bot's dict (``keras_templates.get_template`` in the bot) into plain,
checked values; :mod:`statsbot_nb.ml.kerasnet` builds the network from those values only. Layer types,
activations, initializers, optimizers, losses and metrics must be names from the explicit lists below
(compared case-insensitively, never looked up by Keras from an arbitrary string, so no custom object or
code can be named), numbers must be in range, unknown keys are refused, and each problem is one sentence
naming the field (``architecture.layers[1].units``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MAX_UNITS = 4096
#: Weights in the whole network: 31 layers of 4096 units pass the per-layer bounds but need ~500M weights
#: (8 GB with Adam's state); 20M trains in about 1 GB.
MAX_WEIGHTS = 20_000_000
MAX_LAYERS = 32
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 65_536
DEFAULT_HIDDEN = (64, 32)

LAYER_TYPES = ("Dense", "Dropout")
ACTIVATIONS = (
    "relu",
    "sigmoid",
    "softmax",
    "tanh",
    "linear",
    "elu",
    "selu",
    "gelu",
    "swish",
    "silu",
    "softplus",
    "softsign",
    "leaky_relu",
    "relu6",
    "hard_sigmoid",
    "exponential",
)
INITIALIZERS = (
    "glorot_uniform",
    "glorot_normal",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "lecun_uniform",
    "random_normal",
    "random_uniform",
    "truncated_normal",
    "orthogonal",
    "zeros",
    "ones",
)
# name -> class in keras.optimizers (constructed by us with ``learning_rate``).
OPTIMIZERS = {
    "adam": "Adam",
    "adamw": "AdamW",
    "adamax": "Adamax",
    "nadam": "Nadam",
    "sgd": "SGD",
    "rmsprop": "RMSprop",
    "adagrad": "Adagrad",
    "adadelta": "Adadelta",
}
CLASSIFICATION_LOSSES = ("binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy")
# name -> class in keras.losses.
REGRESSION_LOSSES = {
    "mse": "MeanSquaredError",
    "mean_squared_error": "MeanSquaredError",
    "mae": "MeanAbsoluteError",
    "mean_absolute_error": "MeanAbsoluteError",
    "huber": "Huber",
    "log_cosh": "LogCosh",
    "msle": "MeanSquaredLogarithmicError",
    "mean_squared_logarithmic_error": "MeanSquaredLogarithmicError",
    "mape": "MeanAbsolutePercentageError",
    "mean_absolute_percentage_error": "MeanAbsolutePercentageError",
}
CLASSIFICATION_METRICS = ("accuracy",)
REGRESSION_METRICS = (
    "mae",
    "mse",
    "mape",
    "msle",
    "mean_absolute_error",
    "mean_squared_error",
    "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error",
)

_ARCHITECTURE_KEYS = ("layers", "compile")
_COMPILE_KEYS = ("optimizer", "loss", "metrics")
_DENSE_KEYS = ("type", "units", "activation", "kernel_initializer", "dropout")
_DROPOUT_KEYS = ("type", "rate", "dropout")


# ---------------------------------------------------------------------------------------------------
# Reading the architecture


@dataclass(frozen=True)
class LayerSpec:
    """One checked layer: ``Dense`` (units, activation, initializer or None for the network's) or
    ``Dropout`` (rate)."""

    kind: str
    units: int = 0
    activation: str = "linear"
    initializer: str | None = None
    rate: float = 0.0


@dataclass(frozen=True)
class ArchitectureSpec:
    """A checked architecture: hidden layers in order, the output ``Dense`` layer, compile settings.

    ``loss`` is None when the architecture names none (the task's default is used).
    """

    hidden: tuple[LayerSpec, ...]
    output: LayerSpec
    optimizer: str
    loss: str | None
    metrics: tuple[str, ...]


def _choice(value: object, allowed: tuple[str, ...] | list[str], field: str) -> str:
    """``value`` as the allowed name it matches (case-insensitively), else a sentence naming ``field``."""
    if isinstance(value, str):
        low = value.strip().lower()
        for name in allowed:
            if name.lower() == low:
                return name
    raise ValueError(f"{field} must be one of {', '.join(allowed)}, not {_short(value)}.")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _whole(value: object, field: str, low: int, high: int) -> int:
    """A whole number in [low, high] (a float such as 8.0 counts), else a sentence naming ``field``."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{field} must be a whole number from {low} to {high}, not {_short(value)}.")
    return value


def _rate(value: object, field: str) -> float:
    """A fraction in [0, 1), else a sentence naming ``field``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0.0 <= float(value) < 1.0
    ):
        raise ValueError(f"{field} must be a fraction from 0 up to (not including) 1, not {_short(value)}.")
    return float(value)


def _only_keys(spec: dict[Any, Any], allowed: tuple[str, ...], field: str) -> None:
    unknown = [key for key in spec if key not in allowed]
    if unknown:
        raise ValueError(f"{field} has no setting {_short(unknown[0])}; its settings are {', '.join(allowed)}.")


def _layer(raw: object, field: str, is_output: bool) -> list[LayerSpec]:
    """One entry of ``architecture.layers`` as one or two layers (a Dense ``dropout`` adds a Dropout)."""
    if not isinstance(raw, dict):
        raise ValueError(f'{field} must be an object such as {{"type": "Dense", "units": 16}}, not {_short(raw)}.')
    kind = _choice(raw.get("type", "Dense"), LAYER_TYPES, f"{field}.type")
    if kind == "Dropout":
        _only_keys(raw, _DROPOUT_KEYS, f"{field} (a Dropout layer)")
        if is_output:
            raise ValueError(f"{field} is the output layer and must be a Dense layer, not Dropout.")
        if "rate" in raw and "dropout" in raw:
            raise ValueError(f"{field} gives both rate and dropout; give one.")
        rate = _rate(raw.get("rate", raw.get("dropout", 0.5)), f"{field}.rate")
        return [LayerSpec("Dropout", rate=rate)]
    _only_keys(raw, _DENSE_KEYS, f"{field} (a Dense layer)")
    if "units" not in raw:
        raise ValueError(f"{field}.units is missing; give the number of units of this Dense layer.")
    units = _whole(raw["units"], f"{field}.units", 1, MAX_UNITS)
    activation = raw.get("activation")
    activation = (
        ("linear" if is_output else "relu")
        if activation is None
        else _choice(activation, ACTIVATIONS, f"{field}.activation")
    )
    initializer = raw.get("kernel_initializer")
    if initializer is not None:
        initializer = _choice(initializer, INITIALIZERS, f"{field}.kernel_initializer")
    out = [LayerSpec("Dense", units=units, activation=activation, initializer=initializer)]
    dropout = raw.get("dropout")
    if dropout is not None:
        rate = _rate(dropout, f"{field}.dropout")
        if is_output and rate:
            raise ValueError(f"{field} is the output layer and cannot have dropout.")
        if rate:
            out.append(LayerSpec("Dropout", rate=rate))
    return out


def parse_architecture(architecture: object, classify: bool) -> ArchitectureSpec:
    """Check the bot's ``architecture`` object; raise ``ValueError`` with one sentence naming the field.

    The last entry of ``layers`` is the output layer and must be ``Dense`` (see :class:`KerasClassifier`
    and :class:`KerasRegressor` for how it is matched to the data). A missing ``activation`` is ``relu``
    for a hidden layer (as in the bot's own trainer) and ``linear`` for the output layer.
    """
    if not isinstance(architecture, dict):
        raise ValueError("architecture must be an object with layers (a list of layer objects) and compile.")
    _only_keys(architecture, _ARCHITECTURE_KEYS, "architecture")
    layers = architecture.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ValueError("architecture.layers must be a non-empty list of layer objects.")
    if len(layers) > MAX_LAYERS:
        raise ValueError(f"architecture.layers has {len(layers)} layers; at most {MAX_LAYERS} are allowed.")
    built: list[LayerSpec] = []
    for i, raw in enumerate(layers):
        built.extend(_layer(raw, f"architecture.layers[{i}]", i == len(layers) - 1))
    compile_ = architecture.get("compile", {})
    if compile_ is None:
        compile_ = {}
    if not isinstance(compile_, dict):
        raise ValueError("architecture.compile must be an object with optimizer, loss and metrics.")
    _only_keys(compile_, _COMPILE_KEYS, "architecture.compile")
    optimizer = _choice(compile_.get("optimizer", "adam"), list(OPTIMIZERS), "architecture.compile.optimizer")
    losses = CLASSIFICATION_LOSSES if classify else tuple(REGRESSION_LOSSES)
    loss = compile_.get("loss")
    if loss is not None:
        loss = _choice(loss, losses, "architecture.compile.loss")
    metrics = compile_.get("metrics", [])
    if metrics is None:
        metrics = []
    if isinstance(metrics, str):
        metrics = [metrics]
    if not isinstance(metrics, list) or len(metrics) > 8:
        raise ValueError("architecture.compile.metrics must be a list of at most 8 metric names.")
    allowed = CLASSIFICATION_METRICS if classify else REGRESSION_METRICS
    names = tuple(dict.fromkeys(_choice(m, allowed, "architecture.compile.metrics") for m in metrics))
    return ArchitectureSpec(tuple(built[:-1]), built[-1], optimizer, loss, names)


# ---------------------------------------------------------------------------------------------------
# The estimators


def weight_count(n_inputs: int, layers: tuple[LayerSpec, ...]) -> int:
    """Trainable weights of a network of ``layers`` on ``n_inputs`` columns (a Dense layer: (in + 1) x units)."""
    total, width = 0, n_inputs
    for layer in layers:
        if layer.kind == "Dense":
            total += (width + 1) * layer.units
            width = layer.units
    return total


def _describe_logs(logs: dict[str, Any]) -> str:
    """``loss 0.4321, accuracy 0.81, val_loss 0.5`` from a Keras epoch's logs (loss first)."""
    keys = sorted(logs, key=lambda k: (k != "loss", k.startswith("val_"), k))
    parts = []
    for key in keys[:6]:
        try:
            parts.append(f"{key} {float(logs[key]):.4g}")
        except (TypeError, ValueError):
            continue
    return ", ".join(parts) or "no loss reported"
