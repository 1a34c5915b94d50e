"""What every benchmark case shares: the tables, a reference server with one worker process behind it, and
side-by-side timing.

A :class:`Peer` is one worker under test (ours, today's worker given by ``--upstream``, or the bare echo
floor) as a separate process, dialling its own in-process :class:`~statsbot_nb.server.JobServer` on
loopback, with its own ``HOME`` and StatsBot home. Jobs are timed the way the bot feels them: from the
moment the server queues the job to the moment it holds the result (dispatch to result).

Figures are ratios of medians over alternating rounds (ours, reference, ours, reference ...), so a noisy
neighbour on a shared machine slows both sides of a round alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shlex
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from statsbot_nb.server import JobServer
from statsbot_nb.server.core import JobResult

#: Our worker, headless, as a user starts it.
OURS = "{python} -m statsbot_nb.cli --token {token} --ws-url {ws_url} --allow {data}"
#: A bare websockets client that answers every job at once: the floor any worker is measured against.
ECHO = "{python} " + shlex.quote(str(Path(__file__).with_name("echo_worker.py"))) + " {ws_url} {token}"

FEATURES = [f"f{i}" for i in range(20)]


@dataclass
class Row:
    """One line of the results table: a figure, what it is compared with, the ratio and the target."""

    case: str
    ours: str
    reference: str
    ratio: float | None
    target: str
    reference_name: str = ""
    met: bool | None = None
    notes: list[str] = field(default_factory=list)


def make_table(path: Path, rows: int, seed: int = 0) -> Path:
    """A classification table of ``rows`` x 20 numeric features (``f0`` ... ``f19``) and a 0/1 ``target``."""
    if path.exists():
        return path
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=rows, n_features=20, n_informative=10, random_state=seed)
    frame = pd.DataFrame(X, columns=FEATURES)
    frame["target"] = y
    tmp = path.with_suffix(".tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)
    return path


def train_params(path: Path, model_type: str, **hyper: Any) -> dict[str, Any]:
    """A ``train`` job as the bot sends it."""
    return {
        "file_path": str(path),
        "target_column": "target",
        "feature_columns": list(FEATURES),
        "model_type": model_type,
        "task_type": "classification",
        "hyperparameters": hyper or None,
    }


class Peer:
    """One worker process behind its own reference server; ``async with Peer(...) as peer``."""

    def __init__(self, name: str, template: str, root: Path, data: Path, extra_env: dict[str, str] | None = None):
        self.name, self.template, self.data = name, template, data
        self.home = root / name.replace(" ", "_")
        self.home.mkdir(parents=True, exist_ok=True)
        self.extra_env = extra_env or {}
        self.server = JobServer(ping_interval=None)
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def models_dir(self) -> Path:
        """Where this peer's models live (``$HOME/.statsbot/models``, the layout every worker uses)."""
        return self.home / ".statsbot" / "models"

    async def __aenter__(self) -> Peer:
        await self.server.start()
        token = self.server.issue_token(user_id=1)
        command = self.template.format(
            python=shlex.quote(sys.executable),
            token=token,
            ws_url=self.server.url,
            data=shlex.quote(str(self.data)),
            home=shlex.quote(str(self.home)),
        )
        env = {
            **os.environ,
            "HOME": str(self.home),
            "STATSBOT_HOME": str(self.home / ".statsbot"),
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        env.pop("STATSBOT_TOKEN", None)
        log = open(self.home / "worker.out", "ab")
        self.proc = await asyncio.create_subprocess_shell(
            command, stdout=log, stderr=asyncio.subprocess.STDOUT, env=env, cwd=self.home, start_new_session=True
        )
        log.close()
        try:
            await self.server.wait_for_worker(timeout=120)
        except TimeoutError:
            await self.__aexit__()
            tail = (self.home / "worker.out").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} did not connect within 120 s; its output:\n{tail}") from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 15)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, 9)
                await self.proc.wait()
        await self.server.close()

    async def job(
        self, action: str, params: dict[str, Any] | None = None, timeout: float = 900, marks: list | None = None
    ) -> tuple[float, JobResult]:
        """Run one job; seconds from queueing it to holding its result, and the result.

        ``marks``, when given, receives ``(seconds since queueing, progress message)`` for every progress
        frame and ``(seconds, "result")`` at the end: where the time went, as the server saw it.
        """
        started = time.perf_counter()

        def on_progress(_handle: Any, _percent: float, message: str) -> None:
            if marks is not None:
                marks.append((time.perf_counter() - started, message))

        result = await self.server.run_job(action, params or {}, timeout=timeout, on_progress=on_progress)
        elapsed = time.perf_counter() - started
        if marks is not None:
            marks.append((elapsed, "result"))
        if not result.success:
            raise RuntimeError(f"{self.name}: {action} failed: {result.error}")
        return elapsed, result

    async def jobs_at_once(self, jobs: Sequence[tuple[str, dict[str, Any]]], timeout: float = 900) -> float:
        """Queue every job at once; seconds until the last result."""
        started = time.perf_counter()
        handles = [self.server.submit(action, params) for action, params in jobs]
        results = await asyncio.wait_for(asyncio.gather(*(asyncio.shield(h.future) for h in handles)), timeout)
        elapsed = time.perf_counter() - started
        failed = [r.error for r in results if not r.success]
        if failed:
            raise RuntimeError(f"{self.name}: {len(failed)} of {len(jobs)} jobs failed, e.g. {failed[0]}")
        return elapsed


async def alternate(
    rounds: int, sides: dict[str, Callable[[], Awaitable[float]]], warmup: int = 1
) -> dict[str, list[float]]:
    """Run each side once per round, in turn (after ``warmup`` unrecorded rounds); the samples per side."""
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for i in range(warmup + rounds):
        for name, measure in sides.items():
            value = await measure()
            if i >= warmup:
                samples[name].append(value)
    return samples


#: Lines printed under the table (profiles of where the time went), appended by the case modules.
NOTES: list[str] = []


def stage_profile(runs: list[list[tuple[float, str]]], names: dict[str, str]) -> str:
    """Median seconds between the progress messages that start each stage (``names``: message prefix ->
    stage label), from a list of runs' ``marks`` (see :meth:`Peer.job`)."""
    spans: dict[str, list[float]] = {}
    for marks in runs:
        points = [(0.0, "dispatch")]
        for at, message in marks:
            label = next((v for k, v in names.items() if message.startswith(k)), None)
            if label and label != points[-1][1]:
                points.append((at, label))
        points.append((marks[-1][0], "result"))
        for (t0, label), (t1, _) in itertools.pairwise(points):
            spans.setdefault(label, []).append(t1 - t0)
    return ", ".join(f"{label} {seconds(median(v))}" for label, v in spans.items())


def median(values: Sequence[float]) -> float:
    """The median (NaN for no values)."""
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100)."""
    return float(np.percentile(np.asarray(values, dtype="float64"), q)) if len(values) else float("nan")


def seconds(value: float) -> str:
    """A duration for the table: ms below a second, else s."""
    if value != value:  # NaN
        return "-"
    return f"{value * 1000:.3g} ms" if value < 1 else f"{value:.3g} s"


def ratio_row(
    case: str,
    ours: Sequence[float],
    reference: Sequence[float],
    reference_name: str,
    bound: float,
    at_most: bool = True,
) -> Row:
    """A row comparing medians: ``ours / reference`` against ``bound`` (``at_most``: smaller is better)."""
    a, b = median(ours), median(reference)
    ratio = a / b if b else None
    met = None if ratio is None else (ratio <= bound if at_most else ratio >= bound)
    target = f"≤ {bound:g}x" if at_most else f"≥ {bound:g}x"
    return Row(case, seconds(a), seconds(b), ratio, target, reference_name, met)
