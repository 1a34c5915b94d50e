"""The control panel: token, Connect, status, allowed folders, privacy level, live jobs, a job log, and
the "Sent to the server" tab (the ledger: every frame sent, and which carried your data).

The panel only *observes* the worker: worker events mark it dirty and a refresh runs at most every
``refresh_interval`` seconds on the main loop. Every widget callback (which JupyterLab may deliver on a
subshell thread with its own loop) hands its work to the main loop with ``call_soon_threadsafe``, so
widget traits are only ever changed on the main loop thread. The token field is cleared the moment it is
read, so a saved or nbclient-executed notebook never contains the token.
"""

from __future__ import annotations

import asyncio
import html
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import ipywidgets as W

from .. import session
from ..config import load_config, resolve_ws_url, statsbot_home
from ..errors import StatsbotError
from ..events import Event, StateChanged
from ..ledgerview import read_rows
from ..paths import PathPolicy
from ..privacy import DEFAULT_LEVEL, LEVELS, describe
from ..worker import Worker
from . import text, theme
from .joblog import log_html, names_of
from .rows import ApprovalRow, JobRow, JobRows
from .sent import sent_html, warning_html

log = logging.getLogger("statsbot_nb.panel")

#: field widths: their usual size, or the panel's width less the widget's margins in a narrow side panel
FIELD, WIDE_FIELD = "min(340px, calc(100% - 4px))", "min(460px, calc(100% - 4px))"
SHORT_FIELD, WIDEST_FIELD = "min(300px, calc(100% - 4px))", "min(640px, calc(100% - 4px))"
NOTHING_RUNNING = "nothing right now; a job from the bot shows here with its progress and a Cancel button."

_STATE_COLOURS = {
    "connected": theme.OK,
    "connecting": theme.WARN,
    "reconnecting": theme.WARN,
    "rejected": theme.ERROR,
    "stopped": theme.MUTED,
    "idle": theme.MUTED,
}


class ControlPanel:
    """The StatsBot control panel; display it (it renders as widgets, or as text where they cannot)."""

    def __init__(self, worker: Worker | None = None, *, refresh_interval: float = 0.25, max_log_rows: int = 30) -> None:
        self.refresh_interval = refresh_interval
        self.max_log_rows = max_log_rows
        self.max_sent_rows = 50
        self.worker: Worker | None = None
        self.refreshes = 0
        self._unsubscribe: Any = None
        self._refresh_pending = False
        self._approvals: dict[str, ApprovalRow] = {}
        self._retry_at: float | None = None
        self._roots_for: Any = None
        self._roots: list[Path] = []
        self._extra_dirs: list[str] = []
        self._build()
        session.on_new_worker(self._on_new_worker)
        session.add_token_source(self._take_token)
        if worker is not None:
            self.attach(worker)
        else:
            self._refresh()

    # ------------------------------------------------------------------ widgets

    def _build(self) -> None:
        try:
            default_url = resolve_ws_url(None, load_config(statsbot_home()))
        except StatsbotError:
            default_url = ""
        self.token = W.Password(
            placeholder="token from /connect in the bot",
            description="Token",
            layout=W.Layout(width=FIELD),
        )
        self.token.add_class("statsbot-token")
        self.url = W.Text(value=default_url, description="Server", layout=W.Layout(width=FIELD))
        self.url.add_class("statsbot-url")
        self.connect_button = W.Button(description="Connect", button_style="primary", icon="plug")
        self.connect_button.add_class("statsbot-connect")
        self.disconnect_button = W.Button(description="Disconnect", icon="stop")
        self.disconnect_button.add_class("statsbot-disconnect")
        self.connect_button.on_click(lambda _b: session.call_on_main(self._connect_clicked))
        self.disconnect_button.on_click(lambda _b: session.call_on_main(self._disconnect_clicked))
        self.status = W.HTML()
        self.status.add_class("statsbot-status")

        self.folders = W.Select(options=[], rows=3, description="Also allow", layout=W.Layout(width=WIDE_FIELD))
        self.folder_input = W.Text(placeholder="/path/to/a/folder", layout=W.Layout(width=SHORT_FIELD))
        self.add_folder_button = W.Button(description="Add folder", icon="plus")
        self.remove_folder_button = W.Button(description="Remove", icon="minus")
        self.add_folder_button.on_click(lambda _b: session.call_on_main(self.allow_folder, self.folder_input.value))
        self.remove_folder_button.on_click(lambda _b: session.call_on_main(self.disallow_folder, self.folders.value))
        self.folder_message = W.HTML()
        self.privacy = W.Dropdown(
            options=[(describe(level), level) for level in LEVELS],
            value=DEFAULT_LEVEL,
            description="Privacy",
            layout=W.Layout(width=WIDEST_FIELD),
        )
        self.privacy.add_class("statsbot-privacy")
        self.ask = W.Checkbox(value=False, description="Ask me before running each job", indent=False)
        self.ask.add_class("statsbot-ask")
        self.ask.observe(lambda change: session.call_on_main(self._ask_changed, change["new"]), "value")
        self.privacy.observe(lambda change: session.call_on_main(self._privacy_changed, change["new"]), "value")
        self.warning = W.HTML()
        self.warning.add_class("statsbot-warning")

        self.progress_box = W.VBox()
        self.job_rows = JobRows(self._cancel)
        self.log = W.HTML()
        self.log.add_class("statsbot-log")

        def wrap() -> W.Layout:  # at a side panel's width, the buttons go below the field
            return W.Layout(flex_flow="row wrap", max_width="100%")

        connection = W.VBox(
            [W.HBox([self.token, self.connect_button, self.disconnect_button], layout=wrap()), self.url, self.status]
        )
        privacy = W.VBox(
            [
                W.HTML("<b>Files jobs may use:</b> your home folder and the working folder, plus:"),
                self.folders,
                W.HBox([self.folder_input, self.add_folder_button, self.remove_folder_button], layout=wrap()),
                self.folder_message,
                self.privacy,
                self.ask,
            ]
        )
        from .keeprunning import KeepRunning

        self.keep_running = KeepRunning(
            lambda: {"ws_url": self.url.value.strip() or None, "allow": self._extra_dirs, "privacy": self.privacy.value}
        )
        self.running_heading = W.HTML()
        self.running_heading.add_class("statsbot-running-heading")
        parts = [connection, self.warning, self.running_heading, self.progress_box, W.HTML("<b>Job log</b>")]
        worker_tab = W.VBox([*parts, self.log, privacy, self.keep_running.widget])
        self.tabs = W.Tab(children=[worker_tab])
        self.tabs.set_title(0, "Worker")
        from .browser import ModelBrowser

        self.browser = ModelBrowser()
        self.add_tab("Models", self.browser.widget)
        self.browser.refresh()
        self.sent = W.HTML()
        self.sent.add_class("statsbot-sent")
        self._sent_read = 0.0
        self._sent_reading: asyncio.Future[str] | None = None
        # a short tab title (a long one is cut in a side panel); the tab says what it is
        self.add_tab("Sent", W.VBox([W.HTML("<b>Sent to the server</b>: every frame, newest first"), self.sent]))
        self.widget = W.VBox([W.HTML("<h3 style='margin:4px 0'>StatsBot local worker</h3>"), self.tabs])
        self.widget.add_class("statsbot-panel")

    def add_tab(self, title: str, child: W.Widget) -> None:
        """Add a tab (the model browser uses this)."""
        self.tabs.children = [*self.tabs.children, child]
        self.tabs.set_title(len(self.tabs.children) - 1, title)

    # ------------------------------------------------------------------ display

    def __repr__(self) -> str:
        return text.worker_text(self.worker)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        bundle["text/plain"] = repr(self)
        return bundle

    # ------------------------------------------------------------------ actions (main loop only)

    def _take_token(self) -> str | None:
        """The token typed into the field, which is cleared at once (never kept in widget state or a
        saved notebook). Also how ``statsbot_nb.connect()`` without a token finds one typed here."""
        token = self.token.value.strip()
        if self.token.value:
            self.token.value = ""
        return token or None

    def _connect_clicked(self) -> None:
        token = self._take_token()
        try:
            session.connect(token, self.url.value.strip() or None, allow=self._extra_dirs, privacy=self.privacy.value)
        except StatsbotError as exc:
            self._show_status("rejected" if "token" in str(exc).lower() else "stopped", str(exc))
        except Exception as exc:  # never a traceback from a button; the log has the details
            log.exception("Connect failed")
            self._show_status("stopped", f"Could not connect: {exc}")

    def _disconnect_clicked(self) -> None:
        if self.worker is not None and self.worker.state not in ("stopped", "rejected"):
            self.worker.disconnect()

    def allow_folder(self, folder: str) -> str:
        """Let jobs use ``folder`` too (it must exist); applies to the running worker at once.

        Returns the sentence also shown under the folder list.
        """
        path = Path(os.path.expanduser(folder.strip())) if folder and folder.strip() else None
        if path is None or not path.is_dir():
            return self._folder_note(f"{folder or 'Nothing'} is not an existing folder; nothing changed.", True)
        resolved = str(path.resolve())
        if resolved not in self._extra_dirs:
            self._extra_dirs.append(resolved)
        self.folder_input.value = ""
        self._apply_folders()
        return self._folder_note(f"Jobs may now use {resolved}.")

    def disallow_folder(self, folder: str | None) -> str:
        """Stop allowing an added folder; returns the sentence shown under the folder list."""
        if folder not in self._extra_dirs:
            return self._folder_note(f"{folder} was not an added folder; nothing changed.", True)
        self._extra_dirs.remove(folder)
        self._apply_folders()
        return self._folder_note(f"Jobs may no longer use {folder}.")

    def _folder_note(self, message: str, error: bool = False) -> str:
        style = f" style='color:{theme.ERROR}'" if error else ""
        self.folder_message.value = f"<span{style}>{html.escape(message)}</span>"
        return message

    def _apply_folders(self) -> None:
        self.folders.options = list(self._extra_dirs)
        if self.worker is not None:
            self.worker.update_settings(allowed_dirs=tuple(Path(p) for p in self._extra_dirs))

    def _privacy_changed(self, value: str) -> None:
        if self.worker is not None and self.worker.settings.privacy != value:
            self.worker.update_settings(privacy=value)

    def _ask_changed(self, value: bool) -> None:
        if self.worker is not None:
            self.worker.set_ask(value)

    def _answer(self, job_id: str, answer: str) -> None:
        session.call_on_main(lambda: self.worker.approve(job_id, answer) if self.worker else None)  # type: ignore[arg-type]

    def _cancel(self, job_id: str) -> None:
        session.call_on_main(lambda: self.worker.cancel(job_id) if self.worker else None)

    # ------------------------------------------------------------------ observing the worker

    def _on_new_worker(self, worker: Worker) -> None:
        self.attach(worker)

    def attach(self, worker: Worker) -> None:
        """Observe ``worker`` (replacing the previous one) and show its folders and sharing switch."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.worker = worker
        unsubscribe_panel = worker.events.subscribe(self._on_event)
        unsubscribe_browser = worker.events.subscribe(self.browser.on_worker_event)
        self._unsubscribe = lambda: (unsubscribe_panel(), unsubscribe_browser())
        self.browser.home = worker.settings.home
        self.browser.refresh()
        self._extra_dirs = [str(p) for p in worker.settings.allowed_dirs]
        self.folders.options = list(self._extra_dirs)
        self.privacy.value = worker.settings.privacy
        self.ask.value = worker.core.asking
        self.job_rows.clear()
        self._refresh()

    @property
    def _rows(self) -> dict[str, JobRow]:
        """Job id -> the row showing it."""
        return self.job_rows.rows

    def _on_event(self, event: Event) -> None:
        if isinstance(event, StateChanged):
            self._retry_at = time.monotonic() + event.retry_in if event.retry_in is not None else None
        self._refresh_in(self.refresh_interval)

    def _status_text(self, worker: Worker) -> str:
        """The worker's status sentence; while reconnecting, the seconds left counted down (refreshed each second)."""
        message = worker.status_message
        if worker.state != "reconnecting" or self._retry_at is None or " Reconnecting in " not in message:
            return message
        left = self._retry_at - time.monotonic()
        reason = message.rsplit(" Reconnecting in ", 1)[0]
        if left <= 0.5:
            return f"{reason} Reconnecting now."
        self._refresh_in(min(1.0, left - 0.5))
        return f"{reason} Reconnecting in {math.ceil(left)} s."

    def _refresh_in(self, delay: float) -> None:
        if self._refresh_pending:
            return
        self._refresh_pending = True
        loop = session.main_loop()
        loop.call_soon_threadsafe(loop.call_later, delay, self._refresh)

    def _show_status(self, state: str, message: str) -> None:
        colour = _STATE_COLOURS.get(state, theme.MUTED)
        self.status.value = f"{theme.dot(colour)} <b>{html.escape(state)}</b> {html.escape(message)}"

    def _refresh(self) -> None:
        """Bring every widget up to date with the worker (main loop; at most a few times a second)."""
        self._refresh_pending = False
        self.refreshes += 1
        worker = self.worker
        if worker is None:
            self._show_status("idle", text.status_line(None))
            self.running_heading.value = f"<b>Running</b> <i>{NOTHING_RUNNING}</i>"
            self.log.value = "<i>No jobs yet: connect, then send a job from the bot.</i>"
            self.refresh_sent()
            return
        self._show_status(worker.state, self._status_text(worker))
        waiting = worker.awaiting_approval
        for job in waiting:
            if job.job_id not in self._approvals:
                self._approvals[job.job_id] = ApprovalRow(job, self._answer)
        for job_id in [j for j in self._approvals if j not in {r.job_id for r in waiting}]:
            self._approvals.pop(job_id).box.close()
        waiting_ids = {j.job_id for j in waiting}
        running = [j for j in worker.jobs.values() if j.status in ("queued", "running") and j.job_id not in waiting_ids]
        rows, again = self.job_rows.show(running, time.time(), worker.curves)
        if again is not None:
            self._refresh_in(again)
        boxes = [row.box for row in self._approvals.values()] + rows
        if list(self.progress_box.children) != boxes:
            self.progress_box.children = boxes
        heading = "<b>Running</b>" if boxes else f"<b>Running</b> <i>{NOTHING_RUNNING}</i>"
        if self.running_heading.value != heading:
            self.running_heading.value = heading
        self.log.value = self._log_html(worker)
        warnings = worker.ledger.warnings if worker.ledger is not None else ()
        self.warning.value = warning_html(warnings[-1][1]) if warnings else ""
        if time.monotonic() - self._sent_read >= 1.0 and self._sent_reading is None:
            self._sent_read = time.monotonic()  # read in a thread: a busy disk must not stall the kernel's loop
            self._sent_reading = session.main_loop().run_in_executor(None, self._sent_html, self._home())
            self._sent_reading.add_done_callback(self._sent_done)

    def _sent_done(self, reading: asyncio.Future[str]) -> None:
        self._sent_reading = None
        if not reading.cancelled():
            self.sent.value = reading.result()

    def _home(self) -> Path | None:
        return self.worker.settings.home if self.worker is not None else None

    def refresh_sent(self) -> None:
        """Show the newest frames of the ledger (the worker's home, else the default StatsBot home)."""
        self._sent_read = time.monotonic()
        self.sent.value = self._sent_html(self._home())

    def _sent_html(self, home: Path | None) -> str:
        try:
            return sent_html(read_rows(home, limit=self.max_sent_rows))
        except Exception as exc:  # a panel never shows a traceback
            return f"<i>The ledger could not be read: {html.escape(str(exc))}</i>"

    def _log_html(self, worker: Worker) -> str:
        settings = worker.settings
        if self._roots_for is not settings:  # the allowed folders, resolved once per settings (not per refresh)
            self._roots_for, self._roots = settings, list(PathPolicy.from_settings(settings).roots)
        return log_html(list(worker.jobs.values()), self._roots, names_of(self.browser.entries), self.max_log_rows)

    def close(self) -> None:
        """Stop observing and close the widgets."""
        session.remove_listener(self._on_new_worker)
        session.remove_listener(self._take_token)  # type: ignore[arg-type]
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.widget.close()


_panel: ControlPanel | None = None


def panel() -> ControlPanel:
    """The control panel of this session (made on first use, following the current worker)."""
    global _panel
    if _panel is None:
        _panel = ControlPanel(session.current_worker())
    return _panel


def close_panel() -> None:
    """Forget the session's panel (used when the extension is unloaded)."""
    global _panel
    if _panel is not None:
        _panel.close()
        _panel = None
