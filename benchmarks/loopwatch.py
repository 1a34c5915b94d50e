"""Measuring an event loop's liveness: a ticker that records loop lag, and a sampler that says what stalled it.

:class:`Ticker` sleeps 10 ms over and over on the loop under test; the lag of a tick is how much later than
asked it woke (a loop busy in a callback wakes late). :class:`StallSampler` runs in a thread: whenever the
loop has not ticked for longer than a threshold it records the loop thread's Python stack, so a benchmark
can print which code held the loop (the innermost frames of the project and its direct callers). A stall
inside one long C call (a JSON parse, an SQLite write holding the GIL) is sampled when the call returns
to Python, so the innermost Python frame still names it.
"""

from __future__ import annotations

import asyncio
import collections
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field

import numpy as np

TICK_S = 0.010
STALL_MS = 25.0


@dataclass
class LagStats:
    """Loop lag over one measurement: every tick's lag in milliseconds."""

    lags_ms: list[float] = field(default_factory=list)

    def pct(self, q: float) -> float:
        """The ``q``-th percentile of lag in ms (NaN for no ticks)."""
        return float(np.percentile(self.lags_ms, q)) if self.lags_ms else float("nan")

    @property
    def stalls(self) -> int:
        """Ticks that woke more than :data:`STALL_MS` late."""
        return sum(1 for lag in self.lags_ms if lag > STALL_MS)

    def summary(self) -> str:
        """``p50 0.3 ms, p99 4.1 ms, max 31 ms, 2 stalls > 25 ms in 1234 ticks``."""
        if not self.lags_ms:
            return "no ticks"
        return (
            f"p50 {self.pct(50):.1f} ms, p99 {self.pct(99):.1f} ms, max {max(self.lags_ms):.0f} ms, "
            f"{self.stalls} stalls > {STALL_MS:g} ms in {len(self.lags_ms)} ticks"
        )


class Ticker:
    """``async with Ticker() as t:`` measures loop lag on the running loop while the block runs."""

    def __init__(self, sampler: StallSampler | None = None) -> None:
        self.stats = LagStats()
        self.sampler = sampler
        self._task: asyncio.Task[None] | None = None
        self._running = False

    async def _tick(self) -> None:
        while self._running:
            asked = time.perf_counter()
            await asyncio.sleep(TICK_S)
            woke = time.perf_counter()
            self.stats.lags_ms.append((woke - asked - TICK_S) * 1000.0)
            if self.sampler is not None:
                self.sampler.beat(woke)

    async def __aenter__(self) -> Ticker:
        self._running = True
        if self.sampler is not None:
            self.sampler.beat(time.perf_counter())
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._running = False
        if self._task is not None:
            await self._task


class StallSampler:
    """Samples the loop thread's stack whenever the loop has not ticked for ``threshold_ms``.

    Each stall is one sample per ``interval_ms`` while it lasts; :meth:`report` ranks the stacks by how
    much stalled time they were seen in.
    """

    def __init__(self, threshold_ms: float = 15.0, interval_ms: float = 2.0, depth: int = 8) -> None:
        self.threshold = threshold_ms / 1000.0
        self.interval = interval_ms / 1000.0
        self.depth = depth
        self.samples: collections.Counter[tuple[str, ...]] = collections.Counter()
        self._last = time.perf_counter()
        self._thread_id = threading.get_ident()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stall-sampler", daemon=True)

    def beat(self, now: float) -> None:
        """The loop ticked at ``now`` (called on the loop thread)."""
        self._last = now

    def start(self) -> StallSampler:
        """Start sampling the calling thread (the loop's)."""
        self._thread_id = threading.get_ident()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join(2)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if time.perf_counter() - self._last < self.threshold:
                continue
            frame = sys._current_frames().get(self._thread_id)
            if frame is None:
                continue
            stack = traceback.extract_stack(frame)
            lines = [
                f"{'/'.join(f.filename.split('/')[-2:])}:{f.lineno} {f.name}"
                for f in stack
                if "asyncio/" not in f.filename and "loopwatch" not in f.filename
            ]
            self.samples[tuple(lines[-self.depth :])] += 1

    def report(self, top: int = 8) -> str:
        """The stacks seen most often during stalls, with the stalled milliseconds they account for."""
        if not self.samples:
            return "no stall sampled"
        out = []
        for stack, n in self.samples.most_common(top):
            out.append(f"~{n * self.interval * 1000:.0f} ms in stalls:\n    " + "\n    ".join(stack))
        return "\n".join(out)
