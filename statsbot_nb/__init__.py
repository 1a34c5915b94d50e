"""statsbot_nb: a Jupyter-native local worker for the StatsBot Telegram bot.

In a notebook::

    %load_ext statsbot_nb                      # the control panel and the %statsbot magic
    w = statsbot_nb.connect(token="...")       # or paste the token into the panel
    await w.wait_connected()

Importing this package is cheap and has no side effects: it imports neither IPython nor ipywidgets (nor
pandas); the names below are loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "AccessDenied",
    "AmbiguousModel",
    "BadJobError",
    "ConfigError",
    "JobCancelled",
    "JobError",
    "JobRecord",
    "JobSettings",
    "LocalModel",
    "ModelLookupError",
    "ModelNotFound",
    "ProtocolError",
    "StatsbotError",
    "TokenRejectedError",
    "Worker",
    "__version__",
    "compare",
    "connect",
    "current_worker",
    "disconnect",
    "ledger",
    "load_ipython_extension",
    "model",
    "models",
    "panel",
    "unload_ipython_extension",
    "use_dask",
]

#: name -> (module, attribute): the public API, imported on first use (tests/test_public_api.py pins it)
_LAZY = {
    "connect": ("statsbot_nb.session", "connect"),
    "current_worker": ("statsbot_nb.session", "current_worker"),
    "disconnect": ("statsbot_nb.session", "disconnect"),
    # send the jobs that can run on a Dask cluster there (issue 14)
    "use_dask": ("statsbot_nb.usedask", "use_dask"),
    "panel": ("statsbot_nb.ui.panel", "panel"),
    "models": ("statsbot_nb.local", "models"),
    "model": ("statsbot_nb.local", "model"),
    "compare": ("statsbot_nb.local", "compare"),
    # what this machine sent to the server (a DataFrame)
    "ledger": ("statsbot_nb.ledgerview", "read_ledger"),
    # the types users receive: connect() returns a Worker, model() a LocalModel, w.jobs holds JobRecords
    "Worker": ("statsbot_nb.worker", "Worker"),
    "JobRecord": ("statsbot_nb.core", "JobRecord"),
    "JobSettings": ("statsbot_nb.context", "JobSettings"),
    "LocalModel": ("statsbot_nb.local", "LocalModel"),
    # the errors users may catch
    "ModelLookupError": ("statsbot_nb.local", "ModelLookupError"),
    "ModelNotFound": ("statsbot_nb.local", "ModelNotFound"),
    "AmbiguousModel": ("statsbot_nb.local", "AmbiguousModel"),
    "StatsbotError": ("statsbot_nb.errors", "StatsbotError"),
    "ProtocolError": ("statsbot_nb.errors", "ProtocolError"),
    "BadJobError": ("statsbot_nb.errors", "BadJobError"),
    "TokenRejectedError": ("statsbot_nb.errors", "TokenRejectedError"),
    "ConfigError": ("statsbot_nb.errors", "ConfigError"),
    "JobError": ("statsbot_nb.errors", "JobError"),
    "AccessDenied": ("statsbot_nb.errors", "AccessDenied"),
    "JobCancelled": ("statsbot_nb.errors", "JobCancelled"),
}

if TYPE_CHECKING:  # pragma: no cover
    from .context import JobSettings
    from .core import JobRecord
    from .errors import (
        AccessDenied,
        BadJobError,
        ConfigError,
        JobCancelled,
        JobError,
        ProtocolError,
        StatsbotError,
        TokenRejectedError,
    )
    from .local import AmbiguousModel, LocalModel, ModelLookupError, ModelNotFound, compare, model, models
    from .session import connect, current_worker, disconnect
    from .ui.panel import panel
    from .usedask import use_dask
    from .worker import Worker


def __getattr__(name: str) -> Any:
    """Load the public API lazily, so that ``import statsbot_nb`` stays light."""
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        value = getattr(importlib.import_module(module_name), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'statsbot_nb' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext statsbot_nb``: register ``%statsbot`` and show the control panel."""
    from .magics import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext statsbot_nb``: stop the worker and remove ``%statsbot``."""
    from .magics import unload

    unload(ipython)
