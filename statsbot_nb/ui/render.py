"""What the model browser computes, as job handlers run in a separate process.

Reading a model's artefacts imports numpy, and drawing a figure holds the GIL for long stretches inside
matplotlib's C++ code; done in a thread of the kernel either stalls the kernel's event loop (measured:
100-170 ms when a training job finished and the browser refreshed). Run through the process runner, the
kernel only receives HTML, a dict and PNG bytes. (No ipywidgets here: this runs in the job process.)
"""

from __future__ import annotations

from typing import Any

from ..context import JobContext
from ..local import LocalModel
from ..ml import store
from ..ml.plots import comparison_plot, default_kind, figure_to_png


def model_card(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """The HTML card, the plot kinds (None or the reason one is unavailable) and the default kind."""
    model = LocalModel(ctx.settings.models_dir, store.validate_model_id(params.get("model_id")))
    return {"html": model._repr_html_(), "kinds": model.plot_kinds, "default": default_kind(model.task_type)}


def model_plot_png(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """``{"png": bytes}`` of one plot kind of a stored model (params: ``model_id``, ``kind``)."""
    model = LocalModel(ctx.settings.models_dir, store.validate_model_id(params.get("model_id")))
    return {"png": figure_to_png(model.plot(params.get("kind")))}


def comparison_png(params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """``{"png": bytes}`` of a metric compared across model entries (params: ``rows``, ``metric``)."""
    return {"png": figure_to_png(comparison_plot(params.get("rows") or [], str(params.get("metric"))))}
