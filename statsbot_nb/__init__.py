"""statsbot_nb: a Jupyter-native local worker for the StatsBot Telegram bot.

Importing this package is cheap and has no side effects: it imports neither IPython nor ipywidgets
(nor pandas). The worker lives in :mod:`statsbot_nb.worker`, the reference server in
:mod:`statsbot_nb.server`, the command line in :mod:`statsbot_nb.cli`.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
