"""Every state of the panel says something (issue 15): the job log's names and files, nothing running,
no models (no broken images), reconnecting with the seconds counted down. Real widgets, real workers."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path, PurePath

import pytest

from statsbot_nb import session
from statsbot_nb.core import JobRecord
from statsbot_nb.retry import Backoff
from statsbot_nb.ui import panel as panel_module
from statsbot_nb.ui.browser import ModelBrowser
from statsbot_nb.ui.joblog import log_html, outcome_of, relative_file
from statsbot_nb.ui.panel import ControlPanel


@pytest.fixture(autouse=True)
async def fresh_session(home: Path):
    session.capture_main_loop()
    yield
    panel_module.close_panel()
    session._current = None
    session._main_loop = None


def finished(job_id: str, action: str, params: dict, message: str, result: dict | None = None, status: str = "done"):
    job = JobRecord(job_id, action, params, status=status, message=message, result=result)
    job.accepted_at = job.started_at = 1_700_000_000.0
    job.ended_at = job.started_at + 2.5
    if status != "done":
        job.error = message
    return job


def test_files_show_relative_to_the_most_specific_allowed_folder() -> None:
    folders = [PurePath("/home/ana"), PurePath("/home/ana/projects/churn")]
    assert relative_file("/home/ana/projects/churn/data/q3.csv", folders) == "data/q3.csv"
    assert relative_file("/home/ana/notes/t.csv", folders) == "notes/t.csv"
    assert relative_file("/srv/shared/t.csv", folders) == "/srv/shared/t.csv"  # in no allowed folder: as is
    assert relative_file("", folders) == ""


def test_a_trained_model_shows_its_display_name_with_the_id_on_hover() -> None:
    job = finished(
        "j1",
        "train",
        {"file_path": "/home/ana/projects/churn/data/q3.csv"},
        "model_random_forest_classification_20261201_1 accuracy 0.91",
        {"model_id": "model_random_forest_classification_20261201_1", "display_name": "Churn forest"},
    )
    shown, hover = outcome_of(job, {})
    assert shown == "“Churn forest” accuracy 0.91"
    assert "model_random_forest_classification_20261201_1" in hover
    table = log_html([job], [PurePath("/home/ana/projects/churn")], {})
    assert ">data/q3.csv<" in table and "title='/home/ana/projects/churn/data/q3.csv'" in table
    assert "“Churn forest”" in table and "title='model_random_forest_classification_20261201_1 accuracy" in table


def test_a_prediction_names_its_model_when_the_panel_knows_it() -> None:
    job = finished("j2", "predict", {"model_id": "m_1", "file_path": "/d/new.csv"}, "40 predictions -> /d/p.csv")
    shown, _ = outcome_of(job, {"m_1": "Churn forest"})
    assert shown == "“Churn forest”: 40 predictions -> /d/p.csv"


def test_long_values_are_kept_whole_on_hover_and_escaped() -> None:
    error = "x" * 500 + " <script>"
    job = finished("j3", "train", {"file_path": "/d/t.csv"}, error, status="failed")
    table = log_html([job], [], {})
    assert "<script>" not in table
    assert "…" in table and ("x" * 500) in table  # cut in the cell, whole in its title
    assert "flex-wrap:wrap" in table and "overflow-wrap:break-word" in table  # wraps instead of being cut off


def test_an_empty_log_and_nothing_running_say_so() -> None:
    assert "No finished jobs yet" in log_html([], [], {})
    p = ControlPanel()
    assert "nothing right now" in p.running_heading.value
    assert "No jobs yet" in p.log.value
    p.close()


async def test_no_models_shows_a_sentence_and_no_broken_images(home: Path) -> None:
    browser = ModelBrowser(home / ".statsbot")
    browser.refresh()
    await browser.settled()
    assert "No models yet" in browser.card.value
    assert browser.plot.layout.display == "none" and browser.comparison.layout.display == "none"


async def test_reconnecting_counts_the_seconds_down(settings) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from statsbot_nb.worker import Worker

    url = f"ws://127.0.0.1:{port}/ws"
    worker = Worker("t" * 20, url, settings=settings, backoff=Backoff(initial=6.0, cap=6.0, jitter=0.0))
    p = ControlPanel(worker, refresh_interval=0.05)
    worker.start()
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while "Reconnecting in" not in p.status.value:
            assert asyncio.get_running_loop().time() < deadline, p.status.value
            await asyncio.sleep(0.05)
        first = int(re.search(r"Reconnecting in (\d+) s", p.status.value).group(1))
        await asyncio.sleep(2.2)
        later = re.search(r"Reconnecting in (\d+) s|Reconnecting now", p.status.value)
        assert later is not None, p.status.value
        assert later.group(1) is None or int(later.group(1)) <= first - 2, (first, p.status.value)
        assert "reconnecting" in p.status.value
    finally:
        await asyncio.wait_for(worker.stop(), 10)
        p.close()
