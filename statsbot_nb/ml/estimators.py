"""Which estimator a ``model_type`` names, built with fixed seeds and checked hyperparameters.

The bot sends a ``model_type`` (PROTOCOL.md lists them) and a ``task_type``; this module turns the pair
into an unfitted scikit-learn compatible estimator plus the facts training needs (its family, whether
numeric columns should be scaled). Optional libraries (xgboost, lightgbm, catboost, keras) are detected at
run time, so a missing one is a sentence naming the ``pip`` package instead of an ImportError.

User hyperparameters are validated before anything is read or fitted: unknown names are refused with the
list of valid ones, values are type-checked against the estimator's own defaults, and the estimator's own
parameter validation is translated into a sentence. Our defaults (seed, number of trees) are merged *under*
the user's values, so the same keyword can never be passed twice. XGBoost, LightGBM and CatBoost also take
their native parameter names and aliases (``bagging_fraction``, ``eta``, ``num_iterations``), each mapped to
one canonical keyword the way the library maps it; two names for one parameter are refused.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import JobError
from ..strictjson import to_strict_json
from .constants import CLASSIFICATION, REGRESSION, SEED, TASKS
from .hyperparams import (
    NATIVE_LIBRARIES,
    adjust,
    native_names,
    to_canonical,
)
from .paramcheck import check_user_params, first_line, run_estimator_validation, validate_names_and_types

# Sklearn families: model_type -> (family, tasks it supports, scale numeric columns).
_SKLEARN_TYPES: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "linear": ("linear", (REGRESSION,), True),
    "ridge": ("linear", (REGRESSION,), True),
    "lasso": ("linear", (REGRESSION,), True),
    "elasticnet": ("linear", (REGRESSION,), True),
    "polynomial": ("polynomial", (REGRESSION,), True),
    "logistic": ("linear", (CLASSIFICATION,), True),
    "naive_bayes": ("naive_bayes", (CLASSIFICATION,), False),
    "decision_tree": ("tree", TASKS, False),
    "random_forest": ("forest", TASKS, False),
    "extra_trees": ("forest", TASKS, False),
    "gradient_boosting": ("gradient_boosting", TASKS, False),
    "svm": ("svm", TASKS, True),
    "mlp": ("mlp", TASKS, True),
    "mlp_regression": ("mlp", (REGRESSION,), True),
    "mlp_classification": ("mlp", (CLASSIFICATION,), True),
}
# Prefix families: <prefix>_<anything>; a regressor when the name contains "regression".
_PREFIX_LIBRARIES = {"xgboost": "xgboost", "lightgbm": "lightgbm", "catboost": "catboost", "keras": "keras"}
_PIP_NAMES = {"xgboost": "xgboost", "lightgbm": "lightgbm", "catboost": "catboost", "keras": "keras jax"}
_EXAMPLE_SUFFIXES = {
    REGRESSION: ("regression",),
    CLASSIFICATION: ("binary_classification", "multiclass"),
}
_MODEL_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# Aliases accepted for the polynomial pipeline's nested parameters.
_POLY_ALIASES = {
    "degree": "poly__degree",
    "interaction_only": "poly__interaction_only",
    "include_bias": "poly__include_bias",
    "fit_intercept": "linear__fit_intercept",
    "positive": "linear__positive",
}


@dataclass
class EstimatorPlan:
    """An unfitted estimator and what training needs to know about it.

    ``family`` decides how progress is reported (``forest``, ``gradient_boosting``, ``mlp``, ``xgboost``,
    ``lightgbm`` grow step by step; the others fit in one call). ``hyperparameters`` are the effective,
    JSON-friendly values the user chose merged over our defaults, under canonical names (kept in the
    model's metadata).
    """

    model_type: str
    task_type: str
    family: str
    library: str
    estimator: Any
    scale_numeric: bool
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what was adjusted, for the train result's notes


def _has(module: str) -> bool:
    """True when ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _keras_installed() -> bool:
    """Keras with a backend to run on (JAX, TensorFlow or PyTorch: :mod:`.kerasbackend` picks one)."""
    from .kerasbackend import keras_backend

    return _has("keras") and keras_backend() is not None


@functools.lru_cache(maxsize=1)
def installed_libraries() -> dict[str, str | None]:
    """Version of each ML library the worker can use, or None when it is not installed (cached per process).

    Looked up by import name, because a library may come from a differently named distribution
    (``xgboost`` from ``xgboost-cpu``, for example). The distribution names we know are tried first;
    only a library installed under another name costs the scan of every installed package
    (``packages_distributions``, 0.3-0.4 s, which used to run at every save).
    """
    modules = {
        "scikit-learn": "sklearn",
        "xgboost": "xgboost",
        "lightgbm": "lightgbm",
        "catboost": "catboost",
        "tensorflow": "tensorflow",
        "keras": "keras",
    }
    known = {"xgboost": ["xgboost-cpu"], "tensorflow": ["tensorflow-cpu"]}
    distributions: dict[str, list[str]] | None = None
    out: dict[str, str | None] = {}
    for name, module in modules.items():
        if not _has(module):
            out[name] = None
            continue
        version = _first_version([name, *known.get(name, [])])
        if version is None:
            if distributions is None:
                distributions = dict(importlib.metadata.packages_distributions())
            version = _first_version(distributions.get(module, []))
        out[name] = version or "unknown"
    return out


def _first_version(names: list[str]) -> str | None:
    """The version of the first of ``names`` that is an installed distribution."""
    for dist in names:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def available_model_types() -> list[str]:
    """Every ``model_type`` this worker can train right now (prefix families by example name)."""
    names = set(_SKLEARN_TYPES)
    for prefix in ("xgboost", "lightgbm", "catboost"):
        if _has(prefix):
            for task in TASKS:
                names.update(f"{prefix}_{suffix}" for suffix in _EXAMPLE_SUFFIXES[task])
    return sorted(names)


def valid_types_for(task_type: str) -> list[str]:
    """Model types usable for ``task_type`` (installed or not), for error sentences."""
    names = [name for name, (_, tasks, _) in _SKLEARN_TYPES.items() if task_type in tasks]
    for prefix in ("xgboost", "lightgbm", "catboost", "keras"):
        names.extend(f"{prefix}_{suffix}" for suffix in _EXAMPLE_SUFFIXES[task_type])
    return names


def _prefix_of(model_type: str) -> str | None:
    head = model_type.split("_", 1)[0]
    return head if head in _PREFIX_LIBRARIES and "_" in model_type else None


def check_model_type(model_type: object) -> str:
    """Return ``model_type`` if it names a known model family, else raise a sentence listing them."""
    if isinstance(model_type, str) and _MODEL_TYPE_RE.match(model_type):
        if model_type in _SKLEARN_TYPES or _prefix_of(model_type):
            return model_type
    known = ", ".join([*_SKLEARN_TYPES, "xgboost_*", "lightgbm_*", "catboost_*", "keras_*"])
    raise JobError(f"model_type {model_type!r} is not a model this worker knows; use one of: {known}.")


def task_from_model_type(model_type: str) -> str | None:
    """The task a model type implies by its name, or None when it can do both (``random_forest``)."""
    prefix = _prefix_of(model_type)
    if prefix:
        return REGRESSION if "regression" in model_type else CLASSIFICATION
    tasks = _SKLEARN_TYPES[model_type][1]
    return tasks[0] if len(tasks) == 1 else None


def build_estimator(model_type: str, task_type: str, hyperparameters: dict[str, Any] | None) -> EstimatorPlan:
    """An :class:`EstimatorPlan` for ``model_type`` on ``task_type`` with validated ``hyperparameters``.

    Raises :class:`JobError` (one sentence) for a type the task cannot use, a missing optional library,
    or hyperparameters the estimator does not accept.
    """
    model_type = check_model_type(model_type)
    if task_type not in TASKS:
        raise JobError(f"task_type {task_type!r} must be 'regression' or 'classification'.")
    implied = task_from_model_type(model_type)
    if implied is not None and implied != task_type:
        valid = ", ".join(valid_types_for(task_type))
        raise JobError(
            f"model_type {model_type!r} cannot be used for {task_type}; valid types for {task_type} are: {valid}."
        )
    prefix = _prefix_of(model_type)
    if prefix:
        family, library, scale = prefix, prefix, prefix == "keras"  # a neural network wants scaled inputs
        factory, defaults = _library_factory(prefix, task_type, model_type)
    else:
        family, _, scale = _SKLEARN_TYPES[model_type]
        library = "scikit-learn"
        factory, defaults = _sklearn_factory(model_type, task_type)
    user = check_user_params(hyperparameters, model_type)
    if model_type == "polynomial":
        user = {_POLY_ALIASES.get(key, key): value for key, value in user.items()}
    native = native_names(prefix, factory) if prefix in NATIVE_LIBRARIES else None
    spelled: dict[str, str] = {}
    if native is not None:
        user, defaults, spelled = to_canonical(native, user, defaults, model_type)
    user = validate_names_and_types(factory(**defaults), factory(), user, model_type, native, spelled)
    notes = adjust(prefix, user, model_type)
    params = {**defaults, **user}
    try:
        estimator = factory(**params)
    except TypeError as exc:
        raise JobError(f"The hyperparameters for {model_type} were not accepted: {first_line(exc)}") from exc
    run_estimator_validation(estimator, model_type)
    shown = {key: to_strict_json(value, unknown=repr) for key, value in params.items()}
    return EstimatorPlan(model_type, task_type, family, library, estimator, scale, shown, notes)


def _sklearn_factory(model_type: str, task: str) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The constructor and our default arguments for a scikit-learn model type."""
    from sklearn import ensemble, linear_model, naive_bayes, neural_network, svm, tree
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import PolynomialFeatures

    reg = task == REGRESSION
    seeded = {"random_state": SEED}
    table: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
        "linear": (linear_model.LinearRegression, {}),
        "ridge": (linear_model.Ridge, dict(seeded)),
        "lasso": (linear_model.Lasso, dict(seeded)),
        "elasticnet": (linear_model.ElasticNet, dict(seeded)),
        "logistic": (linear_model.LogisticRegression, {"max_iter": 1000, **seeded}),
        "naive_bayes": (naive_bayes.GaussianNB, {}),
        "decision_tree": (tree.DecisionTreeRegressor if reg else tree.DecisionTreeClassifier, dict(seeded)),
        "random_forest": (
            ensemble.RandomForestRegressor if reg else ensemble.RandomForestClassifier,
            {"n_estimators": 100, **seeded},
        ),
        "extra_trees": (
            ensemble.ExtraTreesRegressor if reg else ensemble.ExtraTreesClassifier,
            {"n_estimators": 100, **seeded},
        ),
        "gradient_boosting": (
            ensemble.GradientBoostingRegressor if reg else ensemble.GradientBoostingClassifier,
            {"n_estimators": 100, **seeded},
        ),
        "svm": (svm.SVR, {}) if reg else (svm.SVC, {"probability": True, **seeded}),
    }
    if model_type in ("mlp", "mlp_regression", "mlp_classification"):
        cls = neural_network.MLPRegressor if reg else neural_network.MLPClassifier
        return cls, {"hidden_layer_sizes": (100,), "max_iter": 300, **seeded}
    if model_type == "polynomial":

        def make_polynomial(**kwargs: Any) -> Any:
            pipe = Pipeline([("poly", PolynomialFeatures(degree=2)), ("linear", linear_model.LinearRegression())])
            return pipe.set_params(**kwargs)

        return make_polynomial, {}
    return table[model_type]


def _library_factory(prefix: str, task: str, model_type: str) -> tuple[Callable[..., Any], dict[str, Any]]:
    """Constructor and defaults for xgboost/lightgbm/catboost/keras, or the install sentence."""
    module = _PREFIX_LIBRARIES[prefix]
    installed = _keras_installed() if prefix == "keras" else _has(module)
    if not installed:
        pip = _PIP_NAMES[prefix]
        raise JobError(
            f"{model_type} needs the {prefix} library, which is not installed on this computer; install it "
            f"with `pip install {pip}` and restart the worker, or choose a scikit-learn model type."
        )
    reg = task == REGRESSION
    if prefix == "xgboost":
        import xgboost

        cls = xgboost.XGBRegressor if reg else xgboost.XGBClassifier
        return cls, {"n_estimators": 100, "random_state": SEED, "verbosity": 0}
    if prefix == "lightgbm":
        import lightgbm

        cls = lightgbm.LGBMRegressor if reg else lightgbm.LGBMClassifier
        return cls, {"n_estimators": 100, "random_state": SEED, "verbose": -1}
    if prefix == "catboost":
        catboost = importlib.import_module("catboost")
        cls = catboost.CatBoostRegressor if reg else catboost.CatBoostClassifier
        return cls, {"iterations": 300, "random_seed": SEED, "verbose": False, "allow_writing_files": False}
    from .kerasnet import KerasClassifier, KerasRegressor  # keras itself loads only when fitting

    keras_cls = KerasRegressor if reg else KerasClassifier

    def make_keras(**kwargs: Any) -> Any:
        """The network with every setting checked now: ``architecture`` is untrusted nested input that the
        generic name/kind checks cannot see into, and a bad one must fail before the table is read."""
        net = keras_cls(**kwargs)
        try:
            net.check_params()
        except ValueError as exc:
            raise JobError(f"The hyperparameters for {model_type} were not accepted: {first_line(exc)}") from exc
        return net

    return make_keras, {"random_state": SEED}
