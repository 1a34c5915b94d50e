"""The model browser tab: the local models (filter by task and type), a card, plots and a comparison chart.

Reading the store runs in a thread; drawing figures runs in a separate process (matplotlib holds the GIL
for long stretches, which would stall the kernel's loop from a thread). Only the finished values (an
option list, HTML, PNG bytes) are applied to the widgets, on the main loop.
The browser refreshes by itself when the worker finishes a job that changes the store.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as W

from .. import session
from ..config import models_dir, statsbot_home
from ..context import JobSettings
from ..errors import StatsbotError
from ..events import Event, JobFinished
from ..ml import store
from ..ml.headline import headline_text
from ..runner import PRELOAD, ProcessRunner

#: The browser's job functions, run in a job process. Named by import string, not by reference, for the
#: same reason as the worker's ``jobs.ACTIONS`` targets: a reference would make the kernel import numpy and
#: matplotlib (through the renderer) just to name them, and the job process imports them itself.
RENDER_MODULE = "statsbot_nb.ui.render"

log = logging.getLogger("statsbot_nb.browser")

ALL = "all"
STORE_ACTIONS = frozenset({"train", "delete_model", "set_model_name"})
COMPARISON_METRICS = {
    "regression": ["r2", "rmse", "mae", "mse"],
    "classification": ["accuracy", "f1", "roc_auc", "precision", "recall", "log_loss"],
}


NO_MODELS = (
    "<i>No models yet. Models you train (from the bot, <code>statsbot-worker demo</code> or "
    "<code>statsbot_nb</code> in a notebook) are saved on this computer and listed here.</i>"
)


def show_png(image: W.Image, png: bytes) -> None:
    """Show ``png`` in ``image``, or hide the image while there is none (an empty one is a broken icon)."""
    image.value = png
    display = None if png else "none"
    if image.layout.display != display:
        image.layout.display = display


def _headline(entry: dict[str, Any]) -> str:
    return headline_text(entry, sep=" ") or "no metric"


class ModelBrowser:
    """Browse the local model store inside the control panel (or on its own: display ``.widget``)."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = home
        self.entries: list[dict[str, Any]] = []
        self._runner = ProcessRunner(preload=(*PRELOAD, RENDER_MODULE))
        self._pending: set[asyncio.Future[Any]] = set()
        self._busy: set[str] = set()
        self._waiting: dict[str, tuple[Callable[[asyncio.AbstractEventLoop], asyncio.Future[Any]], Any]] = {}
        self.task = W.Dropdown(options=[ALL, "regression", "classification"], value=ALL, description="Task")
        self.model_type = W.Dropdown(options=[ALL], value=ALL, description="Type")
        self.models = W.Select(options=[], rows=8, layout=W.Layout(width="100%"))
        self.models.add_class("statsbot-models")
        self.refresh_button = W.Button(description="Refresh", icon="refresh")
        self.card = W.HTML("<i>Reading the models saved on this computer…</i>")
        self.kinds = W.ToggleButtons(options=[], style={"button_width": "auto"})
        self.kinds.add_class("statsbot-plot-kinds")
        self.plot = W.Image(format="png", layout=W.Layout(max_width="min(600px, 100%)", display="none"))
        self.plot_note = W.HTML()
        self.metric = W.Dropdown(options=[], description="Compare")
        self.comparison = W.Image(format="png", layout=W.Layout(max_width="min(600px, 100%)", display="none"))
        self.comparison_note = W.HTML()
        for control in (self.task, self.model_type):
            control.observe(lambda _c: session.call_on_main(self._apply_filter), "value")
        self.models.observe(lambda _c: session.call_on_main(self._select), "value")
        self.kinds.observe(lambda _c: session.call_on_main(self._draw), "value")
        self.metric.observe(lambda _c: session.call_on_main(self._compare), "value")
        self.refresh_button.on_click(lambda _b: session.call_on_main(self.refresh))
        self.widget = W.VBox(
            [
                W.HBox([self.task, self.model_type, self.refresh_button]),
                self.models,
                self.card,
                self.kinds,
                self.plot,
                self.plot_note,
                self.metric,
                self.comparison,
                self.comparison_note,
            ]
        )
        self.widget.add_class("statsbot-browser")

    # ------------------------------------------------------------------ plumbing

    @property
    def store_dir(self) -> Path:
        """The model store being browsed."""
        return models_dir(self.home if self.home is not None else statsbot_home())

    def _offload(self, work: Callable[[], Any], apply: Callable[[Any], None]) -> None:
        """Run ``work`` in a thread, then ``apply(result)`` on the main loop (quick reads only)."""
        self._schedule(lambda loop: loop.run_in_executor(None, work), apply)

    def _in_process(self, handler: str, params: dict[str, Any], apply: Callable[[Any], None]) -> None:
        """Run ``statsbot_nb.ui.render:<handler>`` in a job process (numpy and matplotlib would stall the
        kernel's loop from a thread), then ``apply(result_dict_or_error_sentence)`` on the main loop."""
        settings = JobSettings(home=self.store_dir.parent)

        async def run() -> dict[str, Any] | str:
            try:
                return await self._runner.run(f"{RENDER_MODULE}:{handler}", params, settings, lambda *_: None)
            except StatsbotError as exc:
                return str(exc)

        self._schedule(lambda loop: asyncio.ensure_future(run(), loop=loop), apply, slot=handler)

    def _png(self, handler: str, params: dict[str, Any], apply: Callable[[bytes | str], None]) -> None:
        """Draw a PNG in a job process; ``apply`` gets the bytes or an error sentence."""
        self._in_process(handler, params, lambda r: apply(bytes(r["png"]) if isinstance(r, dict) else r))

    def _schedule(
        self,
        start: Callable[[asyncio.AbstractEventLoop], asyncio.Future[Any]],
        apply: Callable[[Any], None],
        slot: str | None = None,
    ) -> None:
        """Start the work on the main loop and apply its result there. With a ``slot`` (a kind of drawing),
        one runs at a time: a request made meanwhile waits, and a newer one replaces it, so a user clicking
        fast never piles up job processes (each result is applied only if still wanted)."""
        if session.exiting():
            return
        loop = session.main_loop()

        def schedule() -> None:
            if session.exiting():
                return
            if slot is not None and slot in self._busy:
                self._waiting[slot] = (start, apply)
                return
            future = start(loop)
            self._pending.add(future)
            if slot is not None:
                self._busy.add(slot)

            def done(fut: asyncio.Future[Any]) -> None:
                self._pending.discard(fut)
                if fut.cancelled():  # its loop is ending (a script's asyncio.run() returning): nothing to show
                    if slot is not None:
                        self._busy.discard(slot)
                        self._waiting.pop(slot, None)
                    return
                try:
                    apply(fut.result())
                except Exception:
                    if session.exiting():  # the interpreter is going away with a drawing under way
                        log.debug("The model browser stopped at exit", exc_info=True)
                    else:
                        log.exception("The model browser failed to update")
                if slot is not None:
                    self._busy.discard(slot)
                    if slot in self._waiting:
                        self._schedule(*self._waiting.pop(slot), slot=slot)

            future.add_done_callback(done)

        session.call_on_main(schedule)

    async def settled(self, timeout: float = 30.0) -> None:
        """Wait until every pending refresh and drawing has been applied (tests, notebooks)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._pending:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the model browser did not settle in time")
            await asyncio.gather(*list(self._pending), return_exceptions=True)
            await asyncio.sleep(0)

    def on_worker_event(self, event: Event) -> None:
        """Refresh after a job that changed the store (subscribe it to the worker's events)."""
        if isinstance(event, JobFinished) and event.action in STORE_ACTIONS:
            self.refresh()

    # ------------------------------------------------------------------ list and filters

    def refresh(self) -> None:
        """Re-read the store (in a thread) and update the list, keeping the selection where possible."""
        self._offload(lambda: store.list_models(self.store_dir), self._set_entries)

    def _set_entries(self, entries: list[dict[str, Any]]) -> None:
        self.entries = entries
        types = sorted({str(e.get("model_type")) for e in entries if e.get("model_type")})
        current = self.model_type.value
        self.model_type.options = [ALL, *types]
        self.model_type.value = current if current in self.model_type.options else ALL
        self._apply_filter()

    def visible(self) -> list[dict[str, Any]]:
        """The models that pass the task and type filters, newest first."""
        return [
            e
            for e in self.entries
            if self.task.value in (ALL, e.get("task_type")) and self.model_type.value in (ALL, e.get("model_type"))
        ]

    def _apply_filter(self) -> None:
        shown = self.visible()
        options = [
            (
                f"{e.get('display_name') or e['model_id']}  ·  {e.get('model_type') or '?'}  ·  "
                f"{_headline(e)}  ·  {e.get('created_at') or ''}",
                e["model_id"],
            )
            for e in shown
        ]
        selected = self.models.value
        self.models.options = options
        ids = [mid for _, mid in options]
        self.models.value = selected if selected in ids else (ids[0] if ids else None)
        if not ids:
            self.card.value = "<i>No models match these filters.</i>" if self.entries else NO_MODELS
            self.kinds.options = []
            show_png(self.plot, b"")
        self._update_metrics()

    # ------------------------------------------------------------------ one model

    def _select(self) -> None:
        model_id = self.models.value
        if model_id is None:
            return

        def apply(result: dict[str, Any] | str) -> None:
            if self.models.value != model_id:
                return  # another model was selected meanwhile
            if isinstance(result, str):
                self.card.value = f"<i>{html.escape(result)}</i>"
                self.kinds.options = []
                show_png(self.plot, b"")
                return
            kinds, default = result["kinds"], result["default"]
            self.card.value = result["html"]
            usable = [k for k, reason in kinds.items() if reason is None]
            missing = [f"{k}: {reason}" for k, reason in kinds.items() if reason is not None]
            previous = self.kinds.value
            self.plot_note.value = ("<small>" + html.escape("; ".join(missing)) + "</small>") if missing else ""
            if list(self.kinds.options) != usable:
                self.kinds.options = usable
            if not usable:
                show_png(self.plot, b"")
                return
            wanted = previous if previous in usable else (default if default in usable else usable[0])
            if self.kinds.value == wanted:
                self._draw()
            else:
                self.kinds.value = wanted  # its observer draws

        self._in_process("model_card", {"model_id": model_id}, apply)

    def _draw(self) -> None:
        model_id, kind = self.models.value, self.kinds.value
        if model_id is None or kind is None:
            return

        def apply(png: bytes | str) -> None:
            if (self.models.value, self.kinds.value) != (model_id, kind):
                return  # the user moved on while this was drawing; a newer drawing is on its way
            if isinstance(png, bytes):
                show_png(self.plot, png)
            else:
                show_png(self.plot, b"")
                self.plot_note.value = f"<small>{html.escape(png)}</small>"

        self._png("model_plot_png", {"model_id": model_id, "kind": kind}, apply)

    # ------------------------------------------------------------------ comparison

    def _comparison_task(self) -> str | None:
        """The task whose models are compared: the filter's, or the only one among the visible models."""
        if self.task.value != ALL:
            return str(self.task.value)
        tasks = {e.get("task_type") for e in self.visible()}
        return str(tasks.pop()) if len(tasks) == 1 else None

    def _update_metrics(self) -> None:
        options = COMPARISON_METRICS.get(str(self._comparison_task()), [])
        previous = self.metric.value
        if list(self.metric.options) != options:
            self.metric.options = options
        if not options:
            show_png(self.comparison, b"")
            self.comparison_note.value = "<small>Pick a task to compare models of the same kind.</small>"
            return
        wanted = previous if previous in options else options[0]
        if self.metric.value == wanted:
            self._compare()
        else:
            self.metric.value = wanted  # its observer draws

    def _compare(self) -> None:
        metric, task = self.metric.value, self._comparison_task()
        rows = [e for e in self.visible() if e.get("task_type") == task]
        if metric is None or not rows:
            return

        def apply(png: bytes | str) -> None:
            if self.metric.value != metric:
                return  # superseded by a newer choice
            show_png(self.comparison, png if isinstance(png, bytes) else b"")
            self.comparison_note.value = "" if isinstance(png, bytes) else f"<small>{html.escape(png)}</small>"

        self._png("comparison_png", {"rows": rows, "metric": metric}, apply)
