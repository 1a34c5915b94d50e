"""A TCP proxy on loopback that breaks the connection between a worker and a server on purpose.

The fault tests put it between the real worker and a real server (``worker -> proxy -> server``) so that
the worker's own sockets, websockets library and reconnect logic meet the failures a real network
produces, instead of a mock of them. Controls, all usable while traffic flows:

- :meth:`FaultProxy.cut` -- end every open connection now, by RST (``SO_LINGER`` 0, the peer gets
  ``ECONNRESET``) or by FIN (a clean TCP close with no WebSocket close frame: the peer sees EOF mid-stream);
- :meth:`FaultProxy.cut_after` -- arm a cut that fires after a given number of further bytes, so the
  connection dies at an exact point of the byte stream (often inside a frame) rather than between frames;
- :meth:`FaultProxy.stall` -- stop forwarding in both directions for N seconds (data waits; nothing is lost);
- :meth:`FaultProxy.freeze` -- black-hole the open connections for good (silence, no RST or FIN), while
  new connections flow: a NAT or firewall that dropped the connection's state;
- :attr:`FaultProxy.delay` -- sleep this long before forwarding each chunk (order is kept);
- :attr:`FaultProxy.fragment` -- forward each chunk in tiny random pieces, each written and drained on its
  own, so the receiver's frame parser sees partial headers and payloads;
- :meth:`FaultProxy.refuse` -- reset new connections at once (a server that is down), until
  :meth:`FaultProxy.accept`;
- :meth:`FaultProxy.start_chaos` -- a seeded schedule that does all of the above at random moments, and
  :meth:`FaultProxy.heal` to stop it and let traffic flow cleanly again.

Every injected fault is counted in :attr:`FaultProxy.stats` and logged in :attr:`FaultProxy.faults`, so a
test can report how much it was shaken. Pure asyncio streams; no third-party code.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from dataclasses import dataclass, field
from typing import Literal

CutMode = Literal["rst", "fin"]
Direction = Literal["up", "down"]  # up: client (worker) -> server; down: server -> client

#: Bytes read from a socket at once.
_CHUNK = 65536


@dataclass
class ProxyStats:
    """What the proxy did: connections carried and faults injected."""

    connections: int = 0
    refused: int = 0
    cuts_rst: int = 0
    cuts_fin: int = 0
    cuts_mid_stream: int = 0
    connections_cut: int = 0
    stalls: int = 0
    freezes: int = 0
    stalled_seconds: float = 0.0
    fragmented_chunks: int = 0
    delayed_chunks: int = 0
    bytes_up: int = 0
    bytes_down: int = 0

    @property
    def cuts(self) -> int:
        """Cuts that ended at least one connection (RST and FIN; mid-stream cuts are among them)."""
        return self.cuts_rst + self.cuts_fin


@dataclass(frozen=True)
class Chaos:
    """A seeded plan of random faults: how often, which kinds, how strong.

    Every ``gap`` (drawn uniformly from ``gap_range`` seconds) one fault is drawn with the given weights.
    ``stall_range`` bounds a stall's length; fragmenting and delaying are switched on for a spell drawn from
    ``spell_range`` seconds; a mid-stream cut fires after a number of bytes drawn from ``cut_bytes_range``.
    The same seed gives the same sequence of decisions (the moments they meet the traffic still vary with
    the machine's timing).
    """

    seed: int
    gap_range: tuple[float, float] = (0.03, 0.25)
    weights: tuple[tuple[str, float], ...] = (
        ("cut_rst", 3.0),
        ("cut_fin", 2.0),
        ("cut_mid", 3.0),
        ("stall", 2.0),
        ("fragment", 2.0),
        ("delay", 1.0),
    )
    stall_range: tuple[float, float] = (0.05, 1.2)
    spell_range: tuple[float, float] = (0.1, 0.6)
    delay_range: tuple[float, float] = (0.001, 0.03)
    cut_bytes_range: tuple[int, int] = (1, 1500)
    max_piece: int = 7


@dataclass(eq=False)  # compared and hashed by identity: links live in a set
class _Link:
    """One proxied connection: the client side, the server side and the two pump tasks."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    closed: bool = False
    frozen: bool = False


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close ``writer``'s socket with a TCP reset: linger 0 makes close() send RST instead of FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """Forward TCP from ``127.0.0.1:<port>`` to ``target_host:target_port``, breaking it on command.

    Use as ``async with FaultProxy(server.port) as proxy:``; point the worker at :attr:`url`.
    ``seed`` drives the fragment sizes and, unless :class:`Chaos` gives its own, the chaos schedule.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1", *, seed: int = 0) -> None:
        self.target_host, self.target_port = target_host, target_port
        self.port = 0
        self.stats = ProxyStats()
        #: (seconds since start, kind, detail) for every fault injected, in order.
        self.faults: list[tuple[float, str, str]] = []
        #: Seconds to wait before forwarding each chunk (0: none).
        self.delay = 0.0
        #: Forward chunks in pieces of 1..``max_piece`` bytes.
        self.fragment = False
        self.max_piece = 7
        self._rng = random.Random(seed)
        self._links: set[_Link] = set()
        self._server: asyncio.Server | None = None
        self._stall_until = 0.0
        self._refusing = False
        self._cut_after: tuple[int, CutMode] | None = None
        self._chaos_task: asyncio.Task[None] | None = None
        self._spells: set[asyncio.Task[None]] = set()
        self._started_at = 0.0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> FaultProxy:
        """Listen on a free loopback port; returns self."""
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self._started_at = asyncio.get_running_loop().time()
        return self

    async def close(self) -> None:
        """Stop chaos, stop listening and reset every connection."""
        await self.heal()
        if self._server is not None:
            self._server.close()
        self._cut_links("rst", count=False)
        for link in list(self._links):
            for task in link.tasks:
                task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        """The WebSocket URL a worker dials to go through the proxy."""
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def open_connections(self) -> int:
        """Connections currently carried."""
        return len(self._links)

    # ------------------------------------------------------------------ controls

    def cut(self, mode: CutMode = "rst") -> int:
        """End every open connection now (both sides) by RST or FIN; returns how many were cut."""
        return self._cut_links(mode)

    def cut_after(self, nbytes: int, mode: CutMode = "rst") -> None:
        """Cut every connection once ``nbytes`` more bytes (either direction) have been forwarded.

        The chunk that crosses the mark is forwarded only up to it, so the cut lands at that exact byte.
        """
        self._cut_after = (max(1, nbytes), mode)

    def stall(self, seconds: float) -> None:
        """Stop forwarding in both directions for ``seconds`` (extends a stall already under way)."""
        now = asyncio.get_running_loop().time()
        until = max(self._stall_until, now + seconds)
        self.stats.stalls += 1
        self.stats.stalled_seconds += until - max(self._stall_until, now)
        self._stall_until = until
        self._note("stall", f"{seconds:.2f}s")

    def freeze(self) -> int:
        """Black-hole the connections open now: they forward nothing, ever, and stay open (new ones flow).

        What a NAT or firewall that silently dropped a connection's state looks like to both ends: no RST,
        no FIN, just silence until a keepalive gives up. Returns how many connections were frozen.
        """
        links = [link for link in self._links if not link.closed and not link.frozen]
        for link in links:
            link.frozen = True
        if links:
            self.stats.freezes += 1
            self._note("freeze", f"{len(links)} connection(s)")
        return len(links)

    def refuse(self) -> None:
        """Reset every new connection at once (the server looks down) until :meth:`accept`."""
        self._refusing = True

    def accept(self) -> None:
        """Carry new connections again after :meth:`refuse`."""
        self._refusing = False

    def start_chaos(self, chaos: Chaos) -> None:
        """Inject random faults following ``chaos`` until :meth:`heal`."""
        if self._chaos_task is None:
            self._chaos_task = asyncio.get_running_loop().create_task(self._chaos(chaos), name="faultproxy-chaos")

    async def heal(self) -> None:
        """Stop chaos and every fault in progress: no stall, delay, fragmenting, armed cut or refusal remains."""
        tasks = [t for t in (self._chaos_task, *self._spells) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._chaos_task = None
        self._spells.clear()
        self._stall_until = 0.0
        self.delay = 0.0
        self.fragment = False
        self._cut_after = None
        self._refusing = False

    # ------------------------------------------------------------------ internals

    def _note(self, kind: str, detail: str = "") -> None:
        self.faults.append((asyncio.get_running_loop().time() - self._started_at, kind, detail))

    def _cut_links(self, mode: CutMode, *, count: bool = True) -> int:
        links = [link for link in self._links if not link.closed]
        for link in links:
            link.closed = True
            if mode == "rst":
                _rst(link.client)
                _rst(link.server)
            else:
                link.client.close()
                link.server.close()
            for task in link.tasks:
                if task is not asyncio.current_task():
                    task.cancel()
        if count and links:
            if mode == "rst":
                self.stats.cuts_rst += 1
            else:
                self.stats.cuts_fin += 1
            self.stats.connections_cut += len(links)
            self._note(f"cut_{mode}", f"{len(links)} connection(s)")
        return len(links)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            self.stats.refused += 1
            _rst(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            _rst(writer)  # the server is down: the client sees its connection reset, as it would directly
            return
        self.stats.connections += 1
        link = _Link(writer, up_writer)
        self._links.add(link)
        loop = asyncio.get_running_loop()
        link.tasks = [
            loop.create_task(self._pump(link, reader, up_writer, "up")),
            loop.create_task(self._pump(link, up_reader, writer, "down")),
        ]
        try:
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            self._links.discard(link)
            if not link.closed:
                link.closed = True
                writer.close()
                up_writer.close()

    async def _hold(self) -> None:
        """Wait out a stall (its end may move later while waiting)."""
        loop = asyncio.get_running_loop()
        while (left := self._stall_until - loop.time()) > 0:
            await asyncio.sleep(left)

    async def _pump(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: Direction
    ) -> None:
        """Copy ``reader`` to ``writer`` through the fault controls; EOF is passed on as a half-close."""
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    await self._hold()
                    if link.frozen:
                        return  # a black hole passes no FIN either
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                await self._hold()
                if link.frozen:
                    continue  # black-holed: read and drop, as the network would
                if self.delay > 0:
                    self.stats.delayed_chunks += 1
                    await asyncio.sleep(self.delay)
                cut: CutMode | None = None
                if self._cut_after is not None:
                    left, mode = self._cut_after
                    if len(data) >= left:
                        data, cut, self._cut_after = data[:left], mode, None
                    else:
                        self._cut_after = (left - len(data), mode)
                await self._forward(writer, data)
                if direction == "up":
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
                if cut is not None:
                    self.stats.cuts_mid_stream += 1
                    self._cut_links(cut)
                    return
        except (ConnectionError, OSError):
            # one side reset: pass the reset on to the other side (unless black-holed: that drops it too)
            if not link.closed and not link.frozen:
                link.closed = True
                _rst(link.client)
                _rst(link.server)

    async def _forward(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        if not self.fragment or len(data) <= 1:
            writer.write(data)
            await writer.drain()
            return
        self.stats.fragmented_chunks += 1
        view = memoryview(data)
        pieces = 0
        while view:
            # tiny pieces for the first bytes (headers, the start of a frame), then the rest at once:
            # keeps a large chunk from turning into thousands of writes
            size = len(view) if pieces >= 64 else self._rng.randint(1, self.max_piece)
            writer.write(bytes(view[:size]))
            await writer.drain()
            await asyncio.sleep(0)  # let the receiver run between pieces
            view = view[size:]
            pieces += 1

    async def _chaos(self, chaos: Chaos) -> None:
        rng = random.Random(chaos.seed)
        kinds = [k for k, _ in chaos.weights]
        weights = [w for _, w in chaos.weights]
        self.max_piece = chaos.max_piece
        while True:
            await asyncio.sleep(rng.uniform(*chaos.gap_range))
            kind = rng.choices(kinds, weights)[0]
            if kind in ("cut_rst", "cut_fin"):
                self.cut("rst" if kind == "cut_rst" else "fin")
            elif kind == "cut_mid":
                nbytes = rng.randint(*chaos.cut_bytes_range)
                mode: CutMode = "rst" if rng.random() < 0.5 else "fin"
                self.cut_after(nbytes, mode)
                self._note("arm_cut", f"{mode} after {nbytes} bytes")
            elif kind == "stall":
                self.stall(rng.uniform(*chaos.stall_range))
            elif kind == "fragment":
                self._spell("fragment", rng.uniform(*chaos.spell_range), 0.0)
            elif kind == "delay":
                self._spell("delay", rng.uniform(*chaos.spell_range), rng.uniform(*chaos.delay_range))

    def _spell(self, kind: str, seconds: float, delay: float) -> None:
        """Switch fragmenting or delaying on for ``seconds``."""

        async def spell() -> None:
            if kind == "fragment":
                self.fragment = True
            else:
                self.delay = delay
            try:
                await asyncio.sleep(seconds)
            finally:
                if kind == "fragment":
                    self.fragment = False
                else:
                    self.delay = 0.0

        self._note(kind, f"{seconds:.2f}s" + (f" of {delay * 1000:.0f} ms per chunk" if delay else ""))
        task = asyncio.get_running_loop().create_task(spell())
        self._spells.add(task)
        task.add_done_callback(self._spells.discard)
