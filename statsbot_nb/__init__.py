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
    "__version__",
    "compare",
    "connect",
    "current_worker",
    "disconnect",
    "load_ipython_extension",
    "model",
    "models",
    "panel",
    "unload_ipython_extension",
]

_LAZY = {
    "connect": ("statsbot_nb.session", "connect"),
    "current_worker": ("statsbot_nb.session", "current_worker"),
    "disconnect": ("statsbot_nb.session", "disconnect"),
    "panel": ("statsbot_nb.ui.panel", "panel"),
    "models": ("statsbot_nb.local", "models"),
    "model": ("statsbot_nb.local", "model"),
    "compare": ("statsbot_nb.local", "compare"),
}

if TYPE_CHECKING:  # pragma: no cover
    from .local import compare, model, models
    from .session import connect, current_worker, disconnect
    from .ui.panel import panel


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
