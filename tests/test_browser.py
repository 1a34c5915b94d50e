"""The model browser tab, driven through its widgets (no browser): list, filters, card, plots, comparison."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_local import OLD_ID, env, template  # noqa: F401  (fixtures)
from test_panel import _until

from statsbot_nb import session
from statsbot_nb.context import JobSettings
from statsbot_nb.local import LocalModel
from statsbot_nb.ml.plots import figure_to_png
from statsbot_nb.server import JobServer
from statsbot_nb.ui.browser import ModelBrowser
from statsbot_nb.ui.panel import ControlPanel
from statsbot_nb.worker import Worker

PNG = b"\x89PNG"


def png(image) -> bytes:
    """The bytes an Image widget holds (ipywidgets keeps them as a memoryview)."""
    return bytes(image.value)


@pytest.fixture(autouse=True)
async def main_loop():
    session.capture_main_loop()
    yield
    session._main_loop = None


async def test_list_filter_card_plots_and_comparison(env):  # noqa: F811
    browser = ModelBrowser(env.statsbot)
    browser.refresh()
    await browser.settled()
    assert len(browser.models.options) == 5  # three trained here, an older worker's, a bare folder
    assert browser.model_type.options == ("all", "logistic", "random_forest")

    browser.task.value = "regression"
    await browser.settled()
    assert [mid for _, mid in browser.models.options] == [env.ids["regression"]]
    assert "Price forest" in browser.card.value
    assert browser.kinds.options == ("predicted_vs_actual", "residuals", "feature_importance")
    assert png(browser.plot).startswith(PNG)
    first = png(browser.plot)
    browser.kinds.value = "residuals"
    await browser.settled()
    assert png(browser.plot).startswith(PNG) and png(browser.plot) != first
    assert browser.metric.options == ("r2", "rmse", "mae", "mse")
    assert png(browser.comparison).startswith(PNG)

    browser.task.value = "classification"
    await browser.settled()
    ids = [mid for _, mid in browser.models.options]
    assert env.ids["binary"] in ids and env.ids["multiclass"] in ids and OLD_ID in ids
    browser.models.value = env.ids["binary"]
    await browser.settled()
    assert set(browser.kinds.options) == {
        "confusion_matrix",
        "roc",
        "precision_recall",
        "calibration",
        "feature_importance",
    }
    for kind in browser.kinds.options:
        browser.kinds.value = kind
        await browser.settled()
        assert png(browser.plot).startswith(PNG), kind
    browser.metric.value = "f1"
    await browser.settled()
    assert png(browser.comparison).startswith(PNG)

    browser.model_type.value = "random_forest"
    await browser.settled()
    assert env.ids["binary"] not in [mid for _, mid in browser.models.options]


async def test_older_worker_model_says_why_plots_are_missing(env):  # noqa: F811
    browser = ModelBrowser(env.statsbot)
    browser.refresh()
    await browser.settled()
    browser.models.value = OLD_ID
    await browser.settled()
    assert browser.kinds.options == ()
    assert png(browser.plot) == b""
    assert "older worker" in browser.plot_note.value
    assert OLD_ID in browser.card.value


async def test_panel_browser_refreshes_after_a_training_job(env):  # noqa: F811
    data = env.data / "train.csv"
    from test_local import make_frame

    make_frame().to_csv(data, index=False)
    async with JobServer() as server:
        worker = Worker(server.issue_token(), server.url, settings=JobSettings(home=env.statsbot, cwd=env.data))
        panel = ControlPanel(worker, refresh_interval=0.05)
        worker.start()
        await worker.wait_connected(timeout=10)
        await panel.browser.settled()
        before = len(panel.browser.models.options)
        result = await server.run_job(
            "train",
            {
                "file_path": str(data),
                "target_column": "y",
                "feature_columns": ["x1", "x2", "city"],
                "model_type": "ridge",
                "task_type": "regression",
                "custom_name": "Fresh ridge",
            },
            timeout=120,
        )
        assert result.success, result.error
        await _until(lambda: len(panel.browser.models.options) == before + 1)
        await panel.browser.settled()
        assert any("Fresh ridge" in label for label, _ in panel.browser.models.options)
        assert panel.tabs.get_title(1) == "Models"
        await asyncio.wait_for(worker.stop(), 10)
        panel.close()


def test_browser_has_its_own_widget_classes(tmp_path: Path, home):
    browser = ModelBrowser(tmp_path)
    assert "statsbot-browser" in browser.widget._dom_classes


async def test_a_slow_drawing_never_overwrites_a_newer_choice(env):  # noqa: F811
    browser = ModelBrowser(env.statsbot)
    browser.refresh()
    await browser.settled()
    browser.models.value = env.ids["binary"]
    await browser.settled()
    for kind in ("roc", "calibration", "precision_recall", "confusion_matrix", "roc"):
        browser.kinds.value = kind  # clicked quickly: several drawings in flight at once
    await browser.settled()
    expected = figure_to_png(LocalModel(env.statsbot / "models", env.ids["binary"]).plot("roc"))
    assert png(browser.plot) == expected, "the picture shown must be the last kind chosen"
