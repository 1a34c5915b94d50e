"""The optional extras some tests need (model types, the browser test), and how the suite does without them.

README's first command installs ``[dev]`` only; ``xgboost_*``, ``lightgbm_*`` and ``catboost_*`` need the
``[boost]`` extra, ``keras_*`` the ``[keras]`` extra, the browser tests (JupyterLab 4, Notebook 7) the
``[browser]`` extra and the Dask tests the ``[dask]`` extra. A test that needs one is marked
``@pytest.mark.extra("catboost")`` (``tests/conftest.py`` skips it when the library is missing), a test that
covers many model types in one run keeps the installed ones with :func:`installed_cases`, and the end of the run
lists what was left untested and the command that installs it. Under CI (``$CI`` set; ``.ci/run`` installs every
extra) a missing library fails the test instead.
"""

from __future__ import annotations

import importlib.util
import os
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import pytest

from statsbot_nb.ml.kerasbackend import BACKENDS, keras_backend

#: library -> (what goes untested without it, the extra that installs it)
LIBRARIES = {
    "xgboost": ("xgboost_*", "boost"),
    "lightgbm": ("lightgbm_*", "boost"),
    "catboost": ("catboost_*", "boost"),
    "keras": ("keras_*", "keras"),
    "browser": ("the browser tests (JupyterLab 4, Notebook 7)", "browser"),
    "dask": ("training on a Dask cluster", "dask"),
}
#: library -> how many tests (or model-type cases inside a test) were skipped without it in this run
SKIPPED: Counter[str] = Counter()

T = TypeVar("T")


def _found(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def installed(library: str) -> bool:
    """True when ``library``'s model types can be trained here (keras: Keras and a backend to run on)."""
    if library not in LIBRARIES:
        raise ValueError(f"unknown optional library {library!r}; known: {', '.join(LIBRARIES)}")
    if library == "keras":
        backend = keras_backend()
        return _found("keras") and backend is not None and (backend not in BACKENDS or _found(backend))
    if library == "browser":
        return _found("playwright") and _found("jupyterlab") and _found("notebook")
    if library == "dask":
        return _found("distributed") and _found("dask.dataframe")
    return _found(library)


def hint(library: str) -> str:
    """``keras_* (pip install -e '.[keras]')``: what is left untested, and how to install what it needs."""
    types, extra = LIBRARIES[library]
    return f"{types} (pip install -e '.[{extra}]')"


def reason(library: str) -> str:
    """The skip reason for a missing ``library`` (conftest's summary counts these)."""
    return f"skipped for a missing extra: {hint(library)}"


def require(library: str) -> None:
    """Skip the running test when ``library`` is missing (fail under CI, which installs every extra)."""
    if installed(library):
        return
    if os.environ.get("CI"):
        pytest.fail(f"{library} is missing, but CI installs every extra (.ci/run): {hint(library)}")
    SKIPPED[library] += 1
    pytest.skip(reason(library))


def library_of(model_type: str) -> str | None:
    """The optional library a model type needs (``keras_regression`` -> ``keras``), or None."""
    head = model_type.split("_", 1)[0]
    return head if head in LIBRARIES and head not in ("browser", "dask") and "_" in model_type else None


def installed_cases(cases: Iterable[T], model_type: Callable[[T], str] = str) -> list[T]:
    """The cases whose model type can be trained here; the others are counted as skipped (CI: fails).

    ``model_type(case)`` names a case's model type (default: the case is the name).
    """
    kept: list[T] = []
    for case in cases:
        library = library_of(model_type(case))
        if library is None or installed(library):
            kept.append(case)
        elif os.environ.get("CI"):
            pytest.fail(f"{library} is missing, but CI installs every extra (.ci/run): {hint(library)}")
        else:
            SKIPPED[library] += 1
    return kept


def param(*values: object) -> Any:
    """``pytest.param(*values)`` for a parametrized test whose first value is a model type, marked with
    the optional library that model type needs (if any), so it is skipped, and counted, without it."""
    library = library_of(str(values[0]))
    return pytest.param(*values, marks=[pytest.mark.extra(library)] if library else [])


def summary() -> list[str]:
    """Lines for the end of the run: what was left untested for a missing extra, with the install command."""
    if not SKIPPED:
        return []
    parts = [f"{hint(lib)}: {n} test(s) or case(s)" for lib, n in SKIPPED.items()]
    return ["Skipped for a missing extra (CI installs them all):", *(f"  {part}" for part in parts)]
