"""One WebSocket connection of the worker's driver: open it, feed its frames to the core, write in order.

A :class:`Link` is the only I/O object that touches the socket. It reports what happens as core events
(:class:`~statsbot_nb.core.ConnectionOpened`, :class:`~statsbot_nb.core.FrameReceived`,
:class:`~statsbot_nb.core.PongReceived`, and exactly one :class:`~statsbot_nb.core.ConnectionLost`) through
the ``feed`` callable, and sends what the core decided through one writer task, in the order decided.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from . import protocol
from .config import is_loopback_url
from .core import ConnectionLost, ConnectionOpened, Event, FrameReceived, PongReceived, SendFrame, SendPing
from .retry import describe_connect_error, is_fatal

log = logging.getLogger(__name__)
#: websockets logs every frame at DEBUG, the auth frame (with the token) included. Its connections log
#: through this logger, held at INFO so that a notebook's ``logging.basicConfig(level=DEBUG)`` never
#: prints a token.
_WS_LOG = logging.getLogger("statsbot_nb.websockets")
_WS_LOG.setLevel(logging.INFO)

Outgoing = SendFrame | SendPing
#: The reader and the writer give the event loop a turn at least this often while they work through a backlog.
YIELD_S = 0.005
#: A frame longer than this leaves in fragments of this many characters, the loop getting a turn between
#: two: compressing (permessage-deflate) a 20 MB result in one piece held the loop for over a second. Any
#: WebSocket peer reassembles fragments into the one message; smaller frames leave whole, as before.
FRAGMENT_CHARS = 64 * 1024


#: The largest frame the worker reads (a ``save_file`` job carries a whole table). Today's server allows 10 GiB;
#: a frame that size would take many times its size in memory once parsed, so the worker reads at most this.
DEFAULT_MAX_FRAME_BYTES = 256 * 2**20


def connect_options(
    url: str,
    *,
    open_timeout: float,
    ping_interval: float | None,
    ping_timeout: float | None,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
) -> dict[str, Any]:
    """Keyword arguments for ``websockets`` ``connect``: frame cap, keepalive, timeouts, no proxy on loopback."""
    options: dict[str, Any] = {
        "max_size": min(max_frame_bytes, protocol.MAX_FRAME_BYTES),
        "open_timeout": open_timeout,
        "ping_interval": ping_interval,
        "ping_timeout": ping_timeout,
        # After a failed keepalive the link is known dead, yet websockets still waits this long for a
        # closing handshake before the worker can reconnect; a clean close on a live link takes far less.
        "close_timeout": 0.5,
        "max_queue": 64,
        "logger": _WS_LOG,
    }
    if is_loopback_url(url):
        options["proxy"] = None  # loopback never goes through an HTTP proxy
    return options


class Link:
    """Connection number ``conn`` to ``url``; ``await run()`` serves it until it ends."""

    def __init__(
        self,
        conn: int,
        url: str,
        options: dict[str, Any],
        feed: Callable[[Event], None],
        *,
        proxy: str | None = None,
        confirm_timeout: float = 30.0,
        on_written: Callable[[SendFrame], None] | None = None,
    ) -> None:
        self.conn = conn
        self.url = url
        self.fatal_error: BaseException | None = None
        self._options = options
        self._feed = feed
        self._proxy = proxy
        self._confirm_timeout = confirm_timeout
        #: Told of each frame once ``ws.send`` returned (the ledger): a frame dropped with a dead connection
        #: is not reported, and a result re-sent after a reconnect is reported each time it is written.
        self._on_written = on_written
        self._ws: ClientConnection | None = None
        self._queue: asyncio.Queue[tuple[Outgoing, asyncio.Future[None] | None]] = asyncio.Queue()
        self._waiters: set[asyncio.Task[None]] = set()

    def send(self, item: Outgoing, after: asyncio.Future[None] | None = None) -> None:
        """Queue a frame (or a confirming ping) behind everything queued before it; with ``after``, it (and
        so everything queued behind it) leaves once that future is done (its journal record is written)."""
        self._queue.put_nowait((item, after))

    async def drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the queued frames to be written."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout)

    async def close(self) -> None:
        """Close the connection (its :meth:`run` then reports the loss)."""
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()

    async def run(self) -> None:
        """Open, authenticate through the core, serve frames; always ends by feeding one ConnectionLost."""
        lost = ConnectionLost(self.conn)
        writer: asyncio.Task[None] | None = None
        try:
            async with connect(self.url, **self._options) as ws:
                self._ws = ws
                writer = asyncio.get_running_loop().create_task(self._writer(ws))
                self._feed(ConnectionOpened(self.conn))
                turn = time.monotonic()
                async for frame in ws:  # frames already received are handed over without a pause: take one
                    self._feed(FrameReceived(self.conn, frame))
                    if time.monotonic() - turn > YIELD_S:
                        await asyncio.sleep(0)
                        turn = time.monotonic()
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            policy = isinstance(exc, ConnectionClosed) and exc.rcvd is not None and exc.rcvd.code == 1008
            if is_fatal(exc):
                self.fatal_error = exc
            reason = describe_connect_error(exc, self.url, self._proxy)
            if isinstance(exc, ConnectionClosed) and exc.sent is not None and exc.sent.code == 1009:
                limit = self._options.get("max_size") or 0
                shown = f"{limit / 2**20:.0f} MB" if limit >= 2**20 else f"{limit / 2**10:.0f} KB"
                reason = (
                    f"The server sent a message larger than this worker reads ({shown}, "
                    "--max-frame-mb); it was refused unread, so a job in it could not be answered."
                )
                log.warning("%s", reason)
            lost = ConnectionLost(self.conn, reason, is_fatal(exc), policy)
            log.debug("connection %d ended", self.conn, exc_info=True)
        finally:
            self._ws = None
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(BaseException):
                    await writer
            for waiter in list(self._waiters):
                waiter.cancel()
            while not self._queue.empty():  # nothing more will be written here; the core re-sends results
                self._queue.get_nowait()
                self._queue.task_done()
        self._feed(lost)

    async def _writer(self, ws: ClientConnection) -> None:
        """The only writer of the connection: frames leave in the order the core decided them.

        A queue of many frames is written without the loop otherwise getting a turn (neither taking a queued
        item nor a send that fits the buffer waits), so the writer lets it have one every :data:`YIELD_S`.
        """
        turn = time.monotonic()
        while True:
            if time.monotonic() - turn > YIELD_S:
                await asyncio.sleep(0)
                turn = time.monotonic()
            item, after = await self._queue.get()
            try:
                if after is not None:
                    await asyncio.shield(after)
                if isinstance(item, SendPing):
                    pong = await ws.ping()
                    waiter = asyncio.get_running_loop().create_task(self._await_pong(item.ping, pong))
                    self._waiters.add(waiter)
                    waiter.add_done_callback(self._waiters.discard)
                else:
                    frame = item.frame
                    await ws.send(_fragments(frame) if len(frame) > FRAGMENT_CHARS else frame)
                    if self._on_written is not None:
                        try:
                            self._on_written(item)
                        except Exception:  # recording must never stop the writer
                            log.exception("Recording a sent frame failed")
            except ConnectionClosed:
                pass  # the reader reports the loss; the core re-sends results after reconnecting
            finally:
                self._queue.task_done()

    async def _await_pong(self, ping: int, pong: asyncio.Future[float]) -> None:
        """Without acks, a pong received after the result frame proves the server has it."""
        try:
            await asyncio.wait_for(pong, self._confirm_timeout)
        except (ConnectionClosed, asyncio.TimeoutError, RuntimeError):
            return  # stays pending; re-sent after the next connect
        self._feed(PongReceived(self.conn, ping))


async def _fragments(frame: str) -> AsyncIterator[str]:
    """``frame`` in pieces of :data:`FRAGMENT_CHARS`, giving the loop a turn after each."""
    for start in range(0, len(frame), FRAGMENT_CHARS):
        yield frame[start : start + FRAGMENT_CHARS]
        await asyncio.sleep(0)
