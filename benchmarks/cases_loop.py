"""The kernel stays live: loop lag while a training runs and the control panel refreshes, and while a burst of
``list_models`` jobs and a flood of progress messages arrive.

This benchmark's own process plays the notebook kernel: its event loop runs our worker (started by
``statsbot_nb.connect()``, as a notebook does) and the real control panel (:class:`ControlPanel`, real
ipywidgets; with no front end, each widget message is serialised the way the kernel's session would before
sending it, so updating a widget costs what it costs in Jupyter). The reference server runs in a process
of its own (:mod:`server_proc`): in real life it is another machine, so its work must not count as the
kernel's. A ticker sleeps 10 ms over and over on the kernel's loop; a tick's lag is how late it woke.

While the trainings run, a "user" clicks around the model browser, half a second after each click showed
its result: Refresh, another model (its card and plot drawn), another plot kind, the task filter (the
comparison chart redrawn); a training that finishes refreshes the browser by itself, and the panel shows
progress and the "Sent to the server" tab.

    python benchmarks/run.py --only loop [--rounds 3]
    STATSBOT_BENCH_STALLS=1 python benchmarks/run.py --only loop   # also print what stalled the loop
    STATSBOT_BENCH_STALLS=debug ...                                # and asyncio's slow-callback warnings
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from cases_train import plain
from harness import Row, make_table, train_params
from loopwatch import STALL_MS, LagStats, StallSampler, Ticker

P99_TARGET_MS = 25.0
CLICK_PERIOD_S = 0.5


class ServerProcess:
    """The reference server in its own process (:mod:`server_proc`); jobs are submitted over its stdin."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.url = self.token = ""
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = 0
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ServerProcess:
        script = str(Path(__file__).with_name("server_proc.py"))
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, script, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=2**20
        )
        assert self.proc.stdout is not None
        hello = json.loads(await asyncio.wait_for(self.proc.stdout.readline(), 60))
        self.url, self.token = hello["url"], hello["token"]
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            answer = json.loads(line)
            future = self._waiting.pop(answer["id"], None)
            if future is not None and not future.done():
                future.set_result(answer)
        for future in self._waiting.values():
            future.set_exception(RuntimeError("the benchmark's server process ended"))

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            await self._reader

    async def jobs(self, action: str, params: dict[str, Any] | None = None, count: int = 1) -> float:
        """Queue ``count`` copies of a job at once; seconds until the last result (raises if one failed)."""
        assert self.proc is not None and self.proc.stdin is not None
        self._ids += 1
        future = self._waiting[self._ids] = asyncio.get_running_loop().create_future()
        request = {"id": self._ids, "action": action, "params": params or {}, "count": count}
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        answer = await future
        if not answer["ok"]:
            raise RuntimeError(f"{action} failed: {answer.get('error')}")
        return float(answer["seconds"])


def kernel_comm_class() -> type:
    """A comm that does what ipykernel's does with each widget message except the socket: JSON and HMAC."""
    from comm.base_comm import BaseComm

    key = os.urandom(32)

    class KernelComm(BaseComm):  # type: ignore[misc]
        messages = 0

        def publish_msg(self, msg_type: str, data: Any = None, metadata: Any = None, buffers: Any = None, **keys: Any):
            body = json.dumps({"msg_type": msg_type, "content": {"comm_id": self.comm_id, "data": data}}, default=str)
            signer = hmac.new(key, body.encode(), hashlib.sha256)
            for buf in buffers or ():
                signer.update(bytes(buf))
            KernelComm.messages += 1

    return KernelComm


@contextlib.contextmanager
def kernel_like(home: Path) -> Iterator[None]:
    """A private ``HOME``/StatsBot home and kernel-like widget comms for the duration (restored after)."""
    import comm

    saved = {k: os.environ.get(k) for k in ("HOME", "STATSBOT_HOME", "STATSBOT_TOKEN", "STATSBOT_WS_URL")}
    os.environ["HOME"], os.environ["STATSBOT_HOME"] = str(home), str(home / ".statsbot")
    os.environ.pop("STATSBOT_TOKEN", None)
    os.environ.pop("STATSBOT_WS_URL", None)
    made = kernel_comm_class()
    original = comm.create_comm
    comm.create_comm = lambda *a, **k: made(*a, **k)
    try:
        yield
    finally:
        comm.create_comm = original
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


async def click_around(browser: Any, stop: asyncio.Event) -> int:
    """What a user browsing models does until ``stop``: a click, and :data:`CLICK_PERIOD_S` after its result
    showed the next one. Returns how many clicks."""
    clicks = 0
    while not stop.is_set():
        step = clicks % 4
        if step == 0:
            browser.refresh()
        elif step == 1:
            ids = [mid for _, mid in browser.models.options]
            if ids:
                at = ids.index(browser.models.value) if browser.models.value in ids else -1
                browser.models.value = ids[(at + 1) % len(ids)]
        elif step == 2:
            kinds = list(browser.kinds.options)
            if len(kinds) > 1:
                browser.kinds.value = kinds[(kinds.index(browser.kinds.value) + 1) % len(kinds)]
        else:
            browser.task.value = "classification" if browser.task.value == "all" else "all"
        clicks += 1
        with contextlib.suppress(asyncio.TimeoutError):  # a person looks at what the click showed, then clicks on
            await asyncio.wait_for(browser.settled(60), 60)
            await asyncio.wait_for(stop.wait(), CLICK_PERIOD_S)
    return clicks


async def measured(work: Callable[[], Awaitable[Any]], browser: Any, sampler: StallSampler | None) -> LagStats:
    """Loop lag while ``work()`` runs, the user clicks around and the browser settles afterwards."""
    stop = asyncio.Event()
    async with Ticker(sampler) as ticker:
        clicker = asyncio.ensure_future(click_around(browser, stop))
        try:
            await work()
        finally:
            stop.set()
            await clicker
        await browser.settled(60)
    return ticker.stats


async def floor(work: Callable[[], Awaitable[Any]], sampler: StallSampler | None) -> LagStats:
    """Loop lag of a bare loop (no worker, no panel) while ``work()`` runs: what the machine alone costs."""
    async with Ticker(sampler) as ticker:
        await work()
    return ticker.stats


def lag_row(case: str, ours: LagStats, bare: LagStats, bare_name: str) -> Row:
    """A row against the absolute target p99 ≤ 25 ms, with the bare loop's p99 under the same load beside it."""
    p99, ref = ours.pct(99), bare.pct(99)
    return Row(
        case,
        ours.summary(),
        f"p99 {ref:.1f} ms, max {max(bare.lags_ms, default=float('nan')):.0f} ms",
        p99 / ref if ref > 0 else None,
        f"p99 ≤ {P99_TARGET_MS:g} ms",
        bare_name,
        p99 <= P99_TARGET_MS,
    )


@contextlib.asynccontextmanager
async def kernel_session(root: Path, data: Path) -> AsyncIterator[tuple[ServerProcess, Any, Any]]:
    """The server (in its process), the control panel, and a worker started by ``connect()`` on this loop."""
    home = root / "loop-home"
    home.mkdir(exist_ok=True)
    with kernel_like(home):
        from statsbot_nb import session
        from statsbot_nb.jobs import ACTIONS, ActionSpec
        from statsbot_nb.ui import panel as panel_module

        actions = {**ACTIONS, "flood": ActionSpec("loopjobs:flood", isolated=True)}
        session.capture_main_loop()
        async with ServerProcess() as srv:
            panel = panel_module.panel()
            worker = session.connect(srv.token, srv.url, allow=[str(data)], machine_id="bench-loop", actions=actions)
            try:
                await worker.wait_connected(timeout=60)
                yield srv, worker, panel
            finally:
                await asyncio.wait_for(worker.stop(), 30)
                panel_module.close_panel()
                session._current = None  # the session is this process's, reset for other cases
                session._main_loop = None


async def warm(srv: ServerProcess, browser: Any, small: Path) -> None:
    """Two small trainings (the forkserver started, models to browse), the browser settled."""
    await srv.jobs("train", train_params(small, "logistic"))
    await srv.jobs("train", train_params(small, "random_forest", n_estimators=5))
    browser.refresh()
    await browser.settled(60)


def wide_table(path: Path, rows: int, columns: int) -> Path:
    """A table of short text cells, ``rows`` x ``columns``: what a large ``load_data`` result carries."""
    if not path.exists():
        import numpy as np
        import pandas as pd

        rng = np.random.default_rng(2)
        words = np.array([f"item-{i:05d}" for i in range(1000)])
        frame = pd.DataFrame({f"c{j}": words[rng.integers(0, 1000, rows)] for j in range(columns)})
        frame.to_csv(path, index=False)
    return path


async def run(root: Path, rounds: int, smoke: bool, upstream: str | None) -> list[Row]:
    """The liveness rows of the table: ours and the bare loop's under the same load, in alternating rounds."""
    data = root / "data"
    data.mkdir(exist_ok=True)
    rows_n = 5_000 if smoke else 200_000
    table = make_table(data / f"train_{rows_n}.csv", rows_n)
    small = make_table(data / "train_2000.csv", 2_000, seed=1)
    wide = wide_table(data / ("wide_small.csv" if smoke else "wide.csv"), 10_000, 10 if smoke else 100)
    diagnose = os.environ.get("STATSBOT_BENCH_STALLS", "")
    loop = asyncio.get_running_loop()
    if diagnose == "debug":  # asyncio names each callback that ran longer than a stall (and slows the loop)
        loop.set_debug(True)
        loop.slow_callback_duration = STALL_MS / 1000
    sampler = StallSampler().start() if diagnose else None
    ours: dict[str, LagStats] = {k: LagStats() for k in ("train", "burst", "large")}
    bare: dict[str, LagStats] = {k: LagStats() for k in ours}

    def keep(into: LagStats, got: LagStats, name: str) -> None:
        into.lags_ms += got.lags_ms
        if sampler is not None:
            print(f"[loop] {name}: {got.summary()}\n{sampler.report()}", file=sys.stderr)
            sampler.samples.clear()

    async with kernel_session(root, data) as (srv, worker, panel):
        browser = panel.browser
        await warm(srv, browser, small)
        forest = train_params(table, "random_forest", n_estimators=10, n_jobs=-1)

        async def trainings() -> None:
            await srv.jobs("train", train_params(table, "logistic"))
            await srv.jobs("train", forest)

        async def plain_trainings() -> None:
            await plain(table, "logistic")
            await plain(table, "random_forest", 10, -1)

        async def burst_and_flood() -> None:
            flood = asyncio.ensure_future(srv.jobs("flood", {"count": 1_000 if smoke else 5_000}))
            for _ in range(2 if smoke else 10):
                await srv.jobs("list_models", count=50)
                await asyncio.sleep(0.05)
            await flood

        async def large_result() -> None:
            worker.update_settings(privacy="share")
            try:
                await srv.jobs("load_data", {"file_path": str(wide)})
            finally:
                worker.update_settings(privacy="standard")

        for _ in range(rounds):
            if sampler is not None:
                sampler.samples.clear()
            keep(ours["train"], await measured(trainings, browser, sampler), "training")
            keep(bare["train"], await floor(plain_trainings, sampler), "plain training, bare loop")
            for name, work in (("burst", burst_and_flood), ("large", large_result)):
                started = time.perf_counter()
                keep(ours[name], await measured(work, browser, sampler), name)
                idle = functools.partial(asyncio.sleep, time.perf_counter() - started)
                keep(bare[name], await floor(idle, sampler), "idle, bare loop")
    if sampler is not None:
        sampler.stop()
        loop.set_debug(False)
    size = "10,000 x 10" if smoke else "10,000 x 100"
    return [
        lag_row(
            f"loop lag while training (logistic + random forest, {rows_n:,} x 20) and browsing models",
            ours["train"],
            bare["train"],
            "bare loop, plain script training",
        ),
        lag_row(
            "loop lag during list_models bursts (50 at once) and a progress flood, browsing",
            ours["burst"],
            bare["burst"],
            "bare loop, idle",
        ),
        lag_row(
            f"loop lag while a load_data result ({size} text cells) is sent, browsing",
            ours["large"],
            bare["large"],
            "bare loop, idle",
        ),
    ]
