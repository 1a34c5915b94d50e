"""Where statsbot_nb keeps its files, and the small ``config.json`` it remembers between runs.

``STATSBOT_HOME`` (default ``~/.statsbot``) holds ``config.json``, ``models/`` and ``logs/``.
``config.json`` keeps the server URL and the machine id; the token only when the user asked for it
(``--remember``), and then the file is written with mode 0600. Nothing here ever logs a token.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import atomic
from .errors import ConfigError

DEFAULT_WS_URL = "ws://localhost:8765/ws"
CONFIG_NAME = "config.json"


def statsbot_home(env: dict[str, str] | None = None) -> Path:
    """The StatsBot home folder: ``$STATSBOT_HOME`` or ``~/.statsbot`` (not created here)."""
    env = os.environ if env is None else env
    raw = env.get("STATSBOT_HOME")
    return Path(raw).expanduser() if raw else Path.home() / ".statsbot"


def models_dir(home: Path) -> Path:
    """The model store inside ``home``."""
    return home / "models"


def logs_dir(home: Path) -> Path:
    """The folder for the worker's local log (tracebacks go here, never to the server)."""
    return home / "logs"


def default_machine_id() -> str:
    """The machine id sent with ``auth``: the host name, as today's workers do."""
    return socket.gethostname() or "unknown-host"


def validate_ws_url(url: str) -> str:
    """Return ``url`` if it is a usable ``ws://`` or ``wss://`` URL, else raise :class:`ConfigError`."""
    try:
        parts = urlsplit(url.strip())
        parts.hostname  # noqa: B018 - raises ValueError for a malformed IPv6 host
    except ValueError as exc:
        raise ConfigError(
            f"The server URL {url!r} is malformed ({exc}); it should look like ws://host:8765/ws."
        ) from exc
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ConfigError(
            f"The server URL {url!r} is not a WebSocket URL; it should look like ws://host:8765/ws or wss://host/ws."
        )
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ConfigError(f"The server URL {url!r} has an invalid port.") from exc
    return url.strip()


def require_encryption(url: str, *, insecure_ws: bool = False) -> None:
    """Refuse plain ``ws://`` to another machine: the token and every result would cross the network unencrypted.

    ``wss://`` (TLS, certificates verified by default) is required for any host but this one, unless the user
    opted in with ``insecure_ws`` (``--insecure-ws``): today's bot hands out ``ws://`` URLs when its operator
    has not set up TLS, and the user may knowingly accept that on a network they trust.
    """
    if urlsplit(url).scheme == "ws" and not is_loopback_url(url) and not insecure_ws:
        raise ConfigError(
            f"Refusing to send the token unencrypted: {url} is plain ws:// to another machine, so the token and "
            "every result would cross the network in cleartext. Use the server's wss:// address, or, if you "
            "accept the risk on a network you trust, pass --insecure-ws (connect(..., insecure_ws=True))."
        )


def is_loopback_url(url: str) -> bool:
    """True for URLs that point at this machine (these never go through an HTTP proxy)."""
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def resolve_ws_url(explicit: str | None, config: dict[str, Any], env: dict[str, str] | None = None) -> str:
    """The URL to dial: the explicit one, else ``$STATSBOT_WS_URL``, else config, else the default."""
    env = os.environ if env is None else env
    for candidate in (explicit, env.get("STATSBOT_WS_URL"), config.get("ws_url")):
        if isinstance(candidate, str) and candidate.strip():
            return validate_ws_url(candidate)
    return DEFAULT_WS_URL


def load_config(home: Path) -> dict[str, Any]:
    """Read ``config.json`` (an empty dict when missing); a corrupt file is a :class:`ConfigError`."""
    path = home / CONFIG_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON; fix or delete it.") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object; fix or delete it.")
    return data


def save_config(home: Path, data: dict[str, Any]) -> Path:
    """Write ``config.json`` atomically with mode 0600 (it may hold a remembered token)."""
    home.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, sort_keys=True)
    atomic.write_bytes(home / CONFIG_NAME, text.encode("utf-8"), mode=0o600)
    path = home / CONFIG_NAME
    return path


def update_config(
    home: Path,
    *,
    ws_url: str | None = None,
    machine_id: str | None = None,
    token: str | None = None,
    forget_token: bool = False,
) -> dict[str, Any]:
    """Merge the given settings into ``config.json`` and write it back (0600)."""
    data = load_config(home)
    if ws_url:
        data["ws_url"] = ws_url
    if machine_id:
        data["machine_id"] = machine_id
    if token:
        data["token"] = token
    elif forget_token:
        data.pop("token", None)
    save_config(home, data)
    return data


def remember_once_connected(
    home: Path, subscribe: Callable[[Callable[[Any], None]], Callable[[], None]], url: str, token: str | None = None
) -> None:
    """Write ``url`` (and ``token``, when the user asked to remember it) to ``config.json`` once the worker
    authenticated: a URL that never connected (a typo, a server that is down) must not become the default
    of the next start. ``subscribe`` is the worker's ``events.subscribe``."""

    def on_event(event: Any) -> None:
        if getattr(event, "state", None) != "connected":
            return
        unsubscribe()
        try:
            update_config(home, ws_url=url, token=token)
        except (OSError, ConfigError) as exc:  # the worker runs on; the next start asks for the URL again
            logging.getLogger("statsbot_nb.config").warning("Could not update config.json: %s", exc)

    unsubscribe = subscribe(on_event)
