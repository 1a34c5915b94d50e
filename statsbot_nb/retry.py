"""Reconnecting: a pure backoff schedule and plain-words descriptions of connection errors.

The worker reconnects forever after any loss of connection (a long-lived worker never gives up), with
exponential backoff and jitter that resets after every good connection; only a rejected token or an
unusable URL stop it. Every failure is shown to the user in words, never retried silently.
"""

from __future__ import annotations

import random
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidMessage,
    InvalidProxy,
    InvalidStatus,
    InvalidURI,
    ProxyError,
)


@dataclass(frozen=True)
class Backoff:
    """Delays between reconnect attempts: ``initial`` growing by ``factor`` up to ``cap`` seconds.

    Each delay is drawn uniformly from ``[(1 - jitter) * d, d]`` so that many workers cut off at the same
    moment do not reconnect in lockstep. The first retry comes within about ``initial`` seconds.
    """

    initial: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    jitter: float = 0.5

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """An endless iterator of delays; take a fresh one after every good connection."""
        rng = rng or random.Random()
        delay = self.initial
        while True:
            yield rng.uniform((1.0 - self.jitter) * delay, delay)
            delay = min(self.cap, delay * self.factor)


def proxy_for(url: str) -> str | None:
    """The HTTP proxy websockets will use for ``url`` (from the environment), credentials removed."""
    try:
        from websockets.proxy import get_proxy
        from websockets.uri import parse_uri

        proxy = get_proxy(parse_uri(url))
    except Exception:  # an older websockets, or an unparsable URL (reported elsewhere)
        return None
    if not proxy:
        return None
    parts = urlsplit(proxy)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def is_fatal(exc: BaseException) -> bool:
    """True for errors that retrying cannot fix (an invalid URL)."""
    return isinstance(exc, InvalidURI)


def describe_connect_error(exc: BaseException, url: str, proxy: str | None = None) -> str:
    """A plain sentence saying why connecting to ``url`` failed and what to check.

    ``proxy`` is the HTTP proxy the connection went through, if any (see :func:`proxy_for`): a refused or
    unresolvable proxy must not be reported as an unreachable server.
    """
    if proxy and isinstance(exc, (ConnectionRefusedError, socket.gaierror, TimeoutError)):
        return (
            f"Could not reach the HTTP proxy {proxy} that your environment sets (http_proxy, "
            f"https_proxy or all_proxy) for {url}; fix that setting, or add the server's host to no_proxy."
        )
    if isinstance(exc, InvalidURI):
        return f"The server URL {url} is not valid ({exc}); it should look like ws://host:8765/ws."
    if isinstance(exc, (InvalidProxy, ProxyError)):
        return (
            f"Could not go through the HTTP proxy set in your environment ({exc}); "
            "check https_proxy/http_proxy or add the server to no_proxy."
        )
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        return (
            f"The server at {url} answered HTTP {status} instead of opening a WebSocket; "
            "check the URL (host, port and path)."
        )
    if isinstance(exc, ConnectionClosed):
        code = exc.rcvd.code if exc.rcvd else None
        reason = exc.rcvd.reason if exc.rcvd and exc.rcvd.reason else "no reason given"
        return f"The connection to {url} was closed (code {code}, {reason})."
    if isinstance(exc, (InvalidMessage, InvalidHandshake)):
        return f"The WebSocket handshake with {url} failed ({exc}); is this a StatsBot server?"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"The TLS certificate of {url} could not be verified ({exc.verify_message}); "
            "check the server's certificate or your system's CA bundle."
        )
    if isinstance(exc, ssl.SSLError):
        return f"The TLS connection to {url} failed ({exc.reason or exc}); use ws:// for a plain server."
    if isinstance(exc, socket.gaierror):
        return f"The host name in {url} could not be resolved; check the URL and your network or DNS."
    if isinstance(exc, ConnectionRefusedError):
        return f"Nothing is accepting connections at {url}; is the StatsBot server running and the URL right?"
    if isinstance(exc, (ConnectionResetError, ConnectionAbortedError, EOFError)):
        if url.startswith("wss://"):
            return (
                f"The server at {url} dropped the connection during the TLS handshake; if it speaks plain "
                "WebSocket, use ws:// instead of wss://."
            )
        return f"The server at {url} dropped the connection while connecting; check the URL (ws:// or wss://?)."
    if isinstance(exc, TimeoutError):
        return f"Connecting to {url} timed out; the server or the network may be down."
    if isinstance(exc, OSError):
        return f"Could not connect to {url}: {exc.strerror or str(exc) or type(exc).__name__}."
    return f"Lost the connection to {url} ({type(exc).__name__}: {exc})."
