"""A running training job's learning curve, end to end: from the job process through the worker's events to
the panel's chart (real widgets without a frontend, a real worker and :class:`JobServer`), and never to the
server: the progress frames it received are the ones a worker without curves sends."""

from __future__ import annotations

import asyncio
import html
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_panel import fresh_session, recording_comm  # noqa: F401  (the panel tests' fixtures)

from statsbot_nb.events import Event, JobCurve, JobFinished
from statsbot_nb.ledgerview import read_rows
from statsbot_nb.server import JobServer
from statsbot_nb.ui.panel import ControlPanel

STAGES = 300


class FrameSpy(JobServer):
    """The reference server, keeping every frame a worker sent it (as received, before it parses them)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.frames: list[str] = []

    async def _on_frame(self, info: Any, frame: str | bytes) -> None:
        self.frames.append(frame if isinstance(frame, str) else frame.decode())
        await super()._on_frame(info, frame)


@pytest.fixture
async def spy():
    async with FrameSpy() as server:
        yield server


def training_table(folder: Path, n: int = 20_000) -> Path:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.normal(size=n)})
    frame["churned"] = np.where(frame.a + frame.b * frame.c + rng.normal(scale=0.7, size=n) > 0, "yes", "no")
    path = folder / "customers.csv"
    frame.to_csv(path, index=False)
    return path


def chart_state(value: str) -> tuple[int, float, float]:
    """(round, training, validation) that a chart says it shows (its hover title)."""
    title = html.unescape(re.search(r'title="([^"]*)"', value).group(1))  # type: ignore[union-attr]
    found = re.search(r"after round (\d+) of (\d+): training ([\d.e-]+), validation ([\d.e-]+)", title)
    assert found, title
    assert int(found.group(2)) == STAGES
    return int(found.group(1)), float(found.group(3)), float(found.group(4))


async def test_the_running_job_row_draws_its_learning_curve_live_and_the_server_gets_no_curve(
    spy: FrameSpy, make_worker, settings, home: Path
) -> None:
    table = training_table(settings.cwd)
    worker = make_worker(spy.url, spy.issue_token())
    panel = ControlPanel(worker, refresh_interval=0.25)
    curve_events: list[tuple[float, JobCurve]] = []
    finished_at: list[float] = []

    def observe(event: Event) -> None:
        if isinstance(event, JobCurve):
            curve_events.append((time.monotonic(), event))
        elif isinstance(event, JobFinished):
            finished_at.append(time.monotonic())

    worker.events.subscribe(observe)
    worker.start()
    await worker.wait_connected(timeout=10)
    handle = spy.submit(
        "train",
        {
            "file_path": str(table),
            "target_column": "churned",
            "feature_columns": ["a", "b", "c"],
            "model_type": "gradient_boosting",
            "task_type": "classification",
            "hyperparameters": {"n_estimators": STAGES, "max_depth": 3},
            "custom_name": "Churn boost",
        },
    )
    charts: list[tuple[float, str]] = []  # each new picture the row showed, when it appeared
    row = None
    while not handle.done:
        row = panel._rows.get(handle.job_id, row)
        if row is not None and row.job_id == handle.job_id and row.chart.value:
            if not charts or charts[-1][1] != row.chart.value:
                charts.append((time.monotonic(), row.chart.value))
            # The stage text, the ETA and Cancel are whole: the row wraps instead of cutting them off.
            assert row.box.layout.flex_flow == "row wrap"
            assert row.cancel.description == "Cancel" and row.cancel.layout.flex == "0 0 auto"
            assert "title=" in row.detail.value and "white-space:normal" in row.detail.value
            # The file's name in the row, its whole path on hover.
            assert "</b> customers.csv</span>" in row.label.value and f"title='train {table}'" in row.label.value
        await asyncio.sleep(0.02)
    result = await asyncio.wait_for(handle, 60)
    assert result.success, result.error

    # The chart changed while the job ran, round after round, with both lines, a few times a second at most.
    assert len(charts) >= 3, f"only {len(charts)} chart(s) drawn during the job"
    states = [chart_state(value) for _, value in charts]
    assert [s[0] for s in states] == sorted({s[0] for s in states}), states
    assert all(value.count("<polyline") == 2 and "log_loss" in value for _, value in charts)
    span = charts[-1][0] - charts[0][0]
    assert len(charts) - 1 <= span / 0.25 + 2, (len(charts), span)  # the panel redraws at most every 0.25 s
    during = [t for t, _ in curve_events if not finished_at or t <= finished_at[0]]
    assert len(during) >= 3 and len(during) - 1 <= (during[-1] - during[0]) / 0.2 + 2  # ~4-5 chunks a second
    rounds = [r for _, event in curve_events for r in event.chunk["rounds"]]
    assert rounds == list(range(1, STAGES + 1))  # every stage reached the worker, once, in order
    assert worker.curves == {}  # a finished job's live curve is dropped; the model keeps it

    # What the chart showed are the model's real numbers, as stored with it.
    meta = json.loads((settings.models_dir / result.data["model_id"] / "metadata.json").read_text())
    stored = meta["learning_curve"]
    assert stored["rounds"] == list(range(1, STAGES + 1))
    for r, training, validation in states:
        assert training == pytest.approx(stored["training"]["log_loss"][r - 1], rel=1e-3)
        assert validation == pytest.approx(stored["validation"]["log_loss"][r - 1], rel=1e-3)

    # The server received progress frames exactly as a worker without curves sends them, and no curve.
    frames = [json.loads(f) for f in spy.frames]
    progress = [f for f in frames if f.get("type") == "progress"]
    assert len(progress) >= 3
    assert all(set(f) == {"type", "job_id", "status", "progress", "message"} for f in progress)
    stages = [f["message"] for f in progress if f["status"] == "fitting"]
    expected = rf"Fitting gradient_boosting on [\d,]+ rows|Boosting stage \d+/{STAGES}"
    assert stages and all(re.fullmatch(expected, m) for m in stages), stages
    assert not any("learning_curve" in f or '"rounds"' in f or "log_loss" in f for f in spy.frames if '"progress"' in f)
    assert not any("learning_curve" in f or '"rounds"' in f for f in spy.frames)
    listed = await spy.run_job("list_models", {}, timeout=20)
    assert listed.success and "learning_curve" not in json.dumps(listed.data)
    # The ledger of what left lists these frames and nothing else.
    kinds = {row["frame"] for row in read_rows(home)}
    assert kinds <= {"auth (token withheld)", "progress", "result"}, kinds
    for _ in range(100):  # the tab reads the ledger in a thread, at most once a second
        if "progress" in panel.sent.value:
            break
        panel.refresh_sent()
        await asyncio.sleep(0.05)
    assert "<b>Stays on this machine</b>" in panel.sent.value and "learning curves" in panel.sent.value
