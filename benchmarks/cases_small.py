"""Small jobs, the ones a user waits for in the chat: a 300-row ``train``, a 40-row ``predict``,
``list_models`` on an empty store and with 50 models, and a burst of ``list_models`` queued at once.

Each is timed from the server queueing the job to holding its result. Ours is compared with today's worker
(``--upstream``; without it those rows show ``-``) and with the bare echo floor (:mod:`echo_worker`, a
websockets client that answers every job at once). Every worker's store is filled by training through that
worker (a 300 x 20 table, logistic regression). Today's worker names a model after the second it was
trained in and overwrites a model of the same second, so its trainings are spaced a second apart.

Latency rows compare medians of single jobs over alternating rounds (ours, reference, ours, reference ...);
the burst row compares jobs per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from harness import ECHO, FEATURES, OURS, Peer, Row, alternate, make_table, median, ratio_row, seconds, train_params

TRAIN_ROWS = 300
PREDICT_ROWS = 40
STORE_MODELS = 50
BURST = 200
MODELS = ("logistic", "random_forest")


def predict_params(path: Path, model_id: str) -> dict[str, Any]:
    """A ``predict`` job as the bot sends it."""
    return {"model_id": model_id, "file_path": str(path), "feature_columns": list(FEATURES)}


def count_models(peer: Peer) -> int:
    """Model folders in a peer's store (hidden temporary folders excluded)."""
    if not peer.models_dir.is_dir():
        return 0
    return sum(1 for p in peer.models_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


async def fill_store(peer: Peer, table: Path, count: int, one_per_second: bool) -> None:
    """Train until the peer's store holds ``count`` models (``one_per_second``: start each in a new second)."""
    while count_models(peer) < count:
        if one_per_second:
            await asyncio.sleep(1.02 - time.time() % 1.0)
        await peer.job("train", train_params(table, "logistic"))


def latencies(peer: Peer, n: int, into: list[float]) -> Callable[[], Awaitable[float]]:
    """A side for :func:`alternate`: ``n`` ``list_models`` one after the other; each latency kept in ``into``."""

    async def measure() -> float:
        mine = [(await peer.job("list_models"))[0] for _ in range(n)]
        into.extend(mine)
        return median(mine)

    return measure


def p50_row(case: str, ours: list[float], reference: list[float], name: str, bound: float | None) -> Row:
    """Medians of single-job latencies; ``bound`` None for a row shown for information only."""
    a, b = median(ours), median(reference)
    ratio = a / b if b else None
    met = None if ratio is None or bound is None else ratio <= bound
    return Row(case, seconds(a), seconds(b), ratio, "-" if bound is None else f"≤ {bound:g}x", name, met)


def burst_side(peer: Peer, n: int) -> Callable[[], Awaitable[float]]:
    """A side for :func:`alternate`: ``n`` ``list_models`` queued at once; jobs per second."""

    async def measure() -> float:
        return n / await peer.jobs_at_once([("list_models", {})] * n)

    return measure


def rate_row(case: str, ours: list[float], reference: list[float], name: str, bound: float | None) -> Row:
    """Throughput (jobs/s, more is better): ``ours / reference`` at least ``bound``."""
    a, b = median(ours), median(reference)
    ratio = a / b if b else None
    met = None if ratio is None or bound is None else ratio >= bound
    target = "-" if bound is None else f"≥ {bound:g}x"
    return Row(case, f"{a:.0f} jobs/s", f"{b:.0f} jobs/s", ratio, target, name, met)


def alone_row(case: str, samples: list[float], target: str) -> Row:
    """A row with our figure only (no reference given)."""
    return Row(case, seconds(median(samples)), "-", None, target)


async def run(root: Path, rounds: int, smoke: bool, upstream: str | None) -> list[Row]:
    """The small-job rows of the table."""
    data = root / "data"
    data.mkdir(exist_ok=True)
    table = make_table(data / f"small_{TRAIN_ROWS}.csv", TRAIN_ROWS)
    predict_table = make_table(data / f"small_{PREDICT_ROWS}.csv", PREDICT_ROWS, seed=1)
    n_models = 5 if smoke else STORE_MODELS
    per_round = 10 if smoke else 40
    burst = 20 if smoke else BURST
    today = "today's worker"
    rows: list[Row] = []
    async with contextlib.AsyncExitStack() as stack:
        ours = await stack.enter_async_context(Peer("ours-small", OURS, root, data))
        echo = await stack.enter_async_context(Peer("echo-small", ECHO, root, data))
        up = await stack.enter_async_context(Peer("upstream-small", upstream, root, data)) if upstream else None

        # 1. list_models on an empty store, against the echo floor (and today's worker)
        got: dict[str, list[float]] = {"ours": [], "echo": [], "up": []}
        sides = {"ours": latencies(ours, per_round, got["ours"]), "echo": latencies(echo, per_round, got["echo"])}
        if up is not None:
            sides["up"] = latencies(up, per_round, got["up"])
        await alternate(rounds, sides)
        rows.append(p50_row("list_models p50, empty store, vs echo floor", got["ours"], got["echo"], "echo", 1.3))
        if up is not None:
            rows.append(p50_row("list_models p50, empty store, vs today's worker", got["ours"], got["up"], today, None))

        # 2. fill the stores by training through each worker
        fills = [fill_store(ours, table, n_models, one_per_second=False)]
        if up is not None:
            fills.append(fill_store(up, table, n_models, one_per_second=True))
        await asyncio.gather(*fills)
        label = f"{n_models} models"

        # 3. list_models with the store full
        got = {"ours": [], "echo": [], "up": []}
        sides = {"ours": latencies(ours, per_round, got["ours"]), "echo": latencies(echo, per_round, got["echo"])}
        if up is not None:
            sides["up"] = latencies(up, per_round, got["up"])
        await alternate(rounds, sides)
        if up is not None:
            rows.append(p50_row(f"list_models, {label}, vs today's worker", got["ours"], got["up"], today, 0.25))
        else:
            rows.append(alone_row(f"list_models, {label}, vs today's worker", got["ours"], "≤ 0.25x"))
        rows.append(p50_row(f"list_models, {label}, vs echo floor", got["ours"], got["echo"], "echo", None))

        # 4. a burst of list_models queued at once
        sides = {"ours": burst_side(ours, burst), "echo": burst_side(echo, burst)}
        if up is not None:
            sides["up"] = burst_side(up, burst)
        s = await alternate(rounds, sides)
        case = f"burst of {burst} list_models ({label}), jobs/s"
        if up is not None:
            rows.append(rate_row(f"{case}, vs today's worker", s["ours"], s["up"], today, 1.0))
        rows.append(rate_row(f"{case}, vs echo floor", s["ours"], s["echo"], "echo", None))

        # 5. a 300-row train and a 40-row predict, dispatch to result
        model_ids: dict[str, str] = {}
        for model_type in MODELS:
            case = f"train {model_type}, {TRAIN_ROWS} x 20, vs today's worker"
            sides = {}
            for name, peer in (("ours", ours), ("up", up)):
                if peer is None:
                    continue

                async def one(peer: Peer = peer, name: str = name, model_type: str = model_type) -> float:
                    elapsed, result = await peer.job("train", train_params(table, model_type))
                    if model_type == "logistic":
                        model_ids[name] = result.data["model_id"] if result.data else ""
                    return elapsed

                sides[name] = one
            s = await alternate(rounds, sides)
            if up is not None:
                rows.append(ratio_row(case, s["ours"], s["up"], today, 2.0))
            else:
                rows.append(alone_row(case, s["ours"], "≤ 2x"))

        case = f"predict, {PREDICT_ROWS} rows, vs today's worker"
        sides = {}
        for name, peer in (("ours", ours), ("up", up)):
            if peer is None:
                continue

            async def predict(peer: Peer = peer, name: str = name) -> float:
                return (await peer.job("predict", predict_params(predict_table, model_ids[name])))[0]

            sides[name] = predict
        s = await alternate(rounds, sides)
        if up is not None:
            rows.append(ratio_row(case, s["ours"], s["up"], today, 2.0))
        else:
            rows.append(alone_row(case, s["ours"], "≤ 2x"))
    return rows
