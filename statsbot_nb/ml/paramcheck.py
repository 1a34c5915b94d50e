"""Checking a user's hyperparameters against the estimator they are meant for.

Before anything is read or fitted: unknown names are refused with the list of valid ones, values are
type-checked against the estimator's own defaults, strings that look like file paths are refused, and
the estimator's own parameter validation is translated into a sentence. Used by
:func:`statsbot_nb.ml.estimators.build_estimator`.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from ..errors import JobError, exception_line
from .hyperparams import MANAGED, NativeNames, check_plain


def check_user_params(hyperparameters: object, model_type: str) -> dict[str, Any]:
    if hyperparameters is None:
        return {}
    if not isinstance(hyperparameters, dict):
        raise JobError(f"hyperparameters for {model_type} must be an object of name: value pairs or null.")
    for key in hyperparameters:
        if not isinstance(key, str):
            raise JobError(f"hyperparameter names for {model_type} must be strings.")
        if key in MANAGED:
            raise JobError(f"The hyperparameter {key!r} cannot be set for {model_type}: {MANAGED[key]}.")
        if _looks_like_path(hyperparameters[key]):
            raise JobError(
                f"The hyperparameter {key!r} of {model_type} looks like a file path; jobs only read "
                "and write the files their request names, so hyperparameters may not hold paths."
            )
    return dict(hyperparameters)


def _looks_like_path(value: object) -> bool:
    """True for a string (or one nested in a list/dict) holding a path separator or starting with ``~``.

    Defence in depth: besides the block list above, no estimator option needs a path, and a library
    option we do not know about must not become a way to read or write files.
    """
    if isinstance(value, str):
        return "/" in value or "\\" in value or value.startswith("~")
    if isinstance(value, dict):
        return any(_looks_like_path(k) or _looks_like_path(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_looks_like_path(v) for v in value)
    return False


def _valid_names(probe: Any) -> list[str]:
    names = set(probe.get_params(deep=True))
    try:
        names.update(p for p in inspect.signature(type(probe).__init__).parameters if p not in ("self",))
    except (TypeError, ValueError):
        pass
    names -= {
        "kwargs",
        "args",
        "steps",
        "memory",
        "verbose_feature_names_out",
        "transform_input",
        "poly",
        "linear",
        *MANAGED,
    }
    return sorted(names)


def validate_names_and_types(
    probe: Any,
    bare: Any,
    user: dict[str, Any],
    model_type: str,
    native: NativeNames | None = None,
    spelled: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Refuse unknown names (listing the valid ones) and values of the wrong type; coerce JSON strings.

    Names come from ``probe`` (built with our defaults, so library keyword arguments we set count too),
    plus, for a boosting library, its native names (``native``; ``user`` is then already canonical and
    ``spelled`` gives the name the user wrote, for messages). Kinds come from ``bare``, the library's own
    defaults (``random_state=None`` accepts None, even though our default is a number).
    """
    valid = _valid_names(probe)
    if native is not None:
        valid = sorted(({native.canonical.get(n, n) for n in valid} | native.kwargs_only) - set(native.refused))
    unknown = sorted(set(user) - set(valid))
    if unknown:
        shown = native.describe(valid) if native is not None else ", ".join(valid)
        names = ", ".join(repr(n) for n in unknown)
        raise JobError(f"Unknown hyperparameter {names} for {model_type}; valid names are: {shown}.")
    defaults = {**probe.get_params(deep=True), **bare.get_params(deep=True)}
    spelled = spelled or {}
    checked = {
        key: _check_value(model_type, spelled.get(key, key), _coerce(value), defaults.get(key))
        for key, value in user.items()
    }
    if native is not None:
        for key in native.kwargs_only & set(checked):
            if key not in defaults:
                check_plain(model_type, spelled.get(key, key), checked[key])
    return checked


def _coerce(value: Any) -> Any:
    """Numbers, booleans and null typed as text (``"100"``, ``"true"``, ``"none"``) become real values."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return value
    return number if math.isfinite(number) else value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_value(model_type: str, name: str, value: Any, default: Any) -> Any:
    """Check ``value`` against the kind of the estimator's default for ``name``."""

    def wrong(kind: str) -> JobError:
        return JobError(f"The hyperparameter {name!r} for {model_type} must be {kind}, not {value!r}.")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if isinstance(default, float) and math.isnan(default):  # xgboost's `missing`: any number, NaN included
        if not _is_number(value):
            raise wrong("a number")
        return float(value)
    if isinstance(default, int) or isinstance(default, float):
        if not _is_number(value) or not math.isfinite(float(value)):
            raise wrong("a number")
        if isinstance(default, float):
            return float(value)
        return int(value) if isinstance(value, float) and value.is_integer() else value
    if isinstance(default, str):
        if isinstance(value, (dict, list, tuple)):
            raise wrong("a single value such as a word or a number")
        return value
    if isinstance(default, tuple):
        if _is_number(value):
            return (int(value),) if float(value).is_integer() else (value,)
        if isinstance(value, (list, tuple)):
            items = [_coerce(v) for v in value]
            if not all(_is_number(v) for v in items):
                raise wrong("a list of numbers")
            return tuple(int(v) if float(v).is_integer() else v for v in items)
        raise wrong("a list of numbers")
    return value


def run_estimator_validation(estimator: Any, model_type: str) -> None:
    """Let scikit-learn check value ranges now (not minutes into a job) and translate its complaint."""
    targets = [estimator]
    if hasattr(estimator, "steps"):
        targets = [step for _, step in estimator.steps]
    for target in targets:
        validate = getattr(target, "_validate_params", None)
        if validate is None or not hasattr(target, "_parameter_constraints"):
            continue  # xgboost/lightgbm check their values when fitting
        try:
            validate()
        except (ValueError, TypeError) as exc:
            raise JobError(
                f"A hyperparameter for {model_type} has a value it does not accept: {first_line(exc)}"
            ) from exc


def first_line(exc: BaseException) -> str:
    """The first line of an exception message, trimmed, ending with a full stop."""
    text = exception_line(exc, 300)
    return text if text.endswith((".", "!", "?")) else text + "."
