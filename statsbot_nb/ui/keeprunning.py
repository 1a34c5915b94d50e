"""The panel's "Keep a worker running after I close the notebook" section: the login service, from a button.

It does what ``statsbot-worker login`` and ``statsbot-worker service install`` do (:mod:`statsbot_nb.service`),
with the panel's server, allowed folders and privacy level. The service needs a token of its own (a
notebook's token was used by the notebook's worker), typed into a field that is cleared the moment it is
read. The service manager's commands (``systemctl``, ``launchctl``, ``schtasks``) can take seconds, so they
run in a thread; the widgets change on the main loop only (see :mod:`statsbot_nb.ui.panel`).
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Callable
from typing import Any

import ipywidgets as W

from .. import session
from ..errors import StatsbotError
from . import theme

log = logging.getLogger("statsbot_nb.panel")

INTRO = (
    "A login service runs the worker without this notebook: it starts when you log in and comes back after "
    "a crash (systemd user unit on Linux, launchd agent on macOS, scheduled task on Windows). It uses the "
    "server, folders and privacy level above, and needs a <b>fresh token</b> from /connect: the service "
    "keeps it in a file only you can read."
)


class KeepRunning:
    """The section's widgets; ``settings()`` gives the panel's current server, folders and privacy level."""

    def __init__(self, settings: Callable[[], dict[str, Any]]) -> None:
        self._settings = settings
        self.token = W.Password(placeholder="a fresh token from /connect", layout=W.Layout(width="300px"))
        self.token.add_class("statsbot-service-token")
        self.install_button = W.Button(description="Keep running", icon="play", tooltip="install the login service")
        self.install_button.add_class("statsbot-service-install")
        self.remove_button = W.Button(description="Stop and remove", icon="trash")
        self.remove_button.add_class("statsbot-service-remove")
        self.status = W.HTML()
        self.status.add_class("statsbot-service-status")
        self.install_button.on_click(lambda _b: session.call_on_main(self.install_clicked))
        self.remove_button.on_click(lambda _b: session.call_on_main(self.remove_clicked))
        body = W.VBox(
            [
                W.HTML(f"<div style='max-width:640px'>{INTRO}</div>"),
                W.HBox([self.token, self.install_button, self.remove_button]),
                self.status,
            ]
        )
        self.widget = W.Accordion(children=[body])
        self.widget.set_title(0, "Keep a worker running after I close the notebook")
        self.widget.selected_index = None
        self.busy: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ actions (main loop only)

    def install_clicked(self) -> None:
        """Store the typed token with the panel's settings, install and start the service (in a thread)."""
        token = self.token.value.strip()
        self.token.value = ""  # never kept in widget state or a saved notebook
        if self.busy is not None and not self.busy.done():
            self._show("Still working on the last request; the token typed was not used: paste it again then.", True)
            return
        if not token:
            self._show("Paste a fresh token from /connect first: the service cannot reuse this notebook's.", True)
            return
        options = self._settings()
        self._run("Installing the login service ...", lambda: _install(token, options))

    def remove_clicked(self) -> None:
        """Stop and remove the service and the token stored for it."""
        self._run("Stopping and removing the login service ...", _uninstall)

    def refresh(self) -> None:
        """Show what the service is doing now (read in a thread)."""
        self._run("", _describe)

    # ------------------------------------------------------------------ plumbing

    def _run(self, note: str, work: Callable[[], str]) -> None:
        if self.busy is not None and not self.busy.done():
            self._show("Still working on the last request ...", False)
            return
        if note:
            self._show(note, False)
        loop = session.main_loop()
        self.busy = loop.create_task(self._finish(loop, work))

    async def _finish(self, loop: asyncio.AbstractEventLoop, work: Callable[[], str]) -> None:
        try:
            message, error = await loop.run_in_executor(None, work), False
        except StatsbotError as exc:
            message, error = str(exc), True
        except Exception as exc:  # never a traceback from a button; the log has it
            log.exception("The login service request failed")
            message, error = f"The login service request failed ({type(exc).__name__}: {exc}).", True
        self._show(message, error)

    def _show(self, message: str, error: bool) -> None:
        colour = theme.ERROR if error else "inherit"
        text = html.escape(message).replace("\n", "<br>")
        self.status.value = f"<div style='max-width:640px;color:{colour}'>{text}</div>" if message else ""


def _install(token: str, options: dict[str, Any]) -> str:
    from .. import service

    service.login(token, **options)
    return service.install().describe()


def _uninstall() -> str:
    from .. import service

    service.uninstall(forget=True)
    return service.status().describe()


def _describe() -> str:
    from .. import service

    return service.status().describe()
