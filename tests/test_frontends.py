"""The panel in every browser front end: JupyterLab 4 (light and dark themes) and Notebook 7, in headless chromium.

In each, as a user would: open a notebook, run it (``%load_ext statsbot_nb`` or ``statsbot_nb.panel()``), paste
a token from a real :class:`~statsbot_nb.server.JobServer` and click Connect; the server sends a ``train`` job,
whose row and progress bar show while it runs, then the job log's line; the Models tab lists the model, shows
its card and draws a plot. Every text element of the panel must be readable where it is drawn (WCAG AA
contrast against the theme's background: no dark-on-dark). Both widget comm routes are covered: JupyterLab's
``commsOverSubshells`` on (``perCommTarget``, the default: widget messages go to a kernel subshell) and off
(``disabled``: they go to the main shell while a cell awaits). One server, browser and kernel per front end.

Needs the ``[browser]`` extra (playwright, jupyterlab, notebook) and Debian's ``chromium`` (never a
downloaded browser): without them the tests are skipped locally and fail under CI (``$CI`` set), where
``.ci/run`` installs them. The text fallback (terminal IPython, nbconvert) is ``tests/test_text_fallback.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from pathlib import Path

import extras
import pytest
from jupyterweb import (
    OUTPUT_AREA,
    THEME_JS,
    Jupyter,
    cell_text,
    clean_env,
    clipped,
    close_views,
    connect,
    contrast,
    launch_chromium,
    narrow_view,
    open_and_run,
    open_tab,
    theme_floor,
    unreadable,
    write_notebook,
    write_table,
)

from statsbot_nb.server import JobServer

FRONTENDS = [
    # the light theme is also looked at in a narrow side panel (JupyterLab only: a linked output view)
    pytest.param("lab", "light", "perCommTarget", "%load_ext statsbot_nb", id="jupyterlab-light"),
    pytest.param("lab", "dark", "disabled", "import statsbot_nb\nstatsbot_nb.panel()", id="jupyterlab-dark"),
    pytest.param("notebook", "light", "perCommTarget", "%load_ext statsbot_nb", id="notebook7"),
]

NARROW_PX = 350

WAIT_CELL = """\
import asyncio, json, threading, statsbot_nb
_clicks = []
def _on_click(_b):
    header = get_ipython().kernel.get_parent().get('header', {})
    _clicks.append({'thread': threading.current_thread().name, 'subshell_id': header.get('subshell_id')})
statsbot_nb.panel().connect_button.on_click(_on_click)
for _ in range(600):
    w = statsbot_nb.current_worker()
    if w is not None and w.state == 'connected': break
    await asyncio.sleep(0.1)
print('STATE', w.state if w else None)
print('ROUTE', json.dumps({'subshells': bool(getattr(get_ipython().kernel, '_supports_kernel_subshells', False)),
                           'clicks': _clicks}))
"""

# The first Image in the model browser (the selected model's plot) once it holds a decoded picture.
PLOT_DRAWN_JS = """() => {
  const img = document.querySelector('.statsbot-browser img');
  return !!img && img.complete && img.naturalWidth > 100;
}"""
# A running job's progress bar that has moved (its filled part is wider than nothing).
BAR_MOVED_JS = """() => [...document.querySelectorAll('.statsbot-progress .progress-bar')]
  .some(b => b.getBoundingClientRect().width > 0)"""


@pytest.fixture
def browser_env(home: Path) -> dict[str, str]:
    """The environment for the server, its kernel and chromium: a temporary HOME/STATSBOT_HOME, no proxies."""
    extras.require("browser")  # playwright, jupyterlab and notebook: the [browser] extra
    if shutil.which("chromium") is None:
        message = "Debian's chromium (apt-get install chromium) is needed for the browser tests"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI installs it: see .ci/run)")
        pytest.skip(message)
    return clean_env(home)


def _route_checked(printed: str, route: str) -> dict:
    """The Connect click's route as the kernel saw it; a subshell exactly when the setting asks for one."""
    info = json.loads(printed.split("ROUTE", 1)[1].strip().splitlines()[0])
    assert len(info["clicks"]) == 1, info
    subshell_id = info["clicks"][0]["subshell_id"]
    if route == "disabled" or not info["subshells"]:
        assert subshell_id is None, info
    else:  # the click really travelled over a subshell
        assert subshell_id, info
    return info


@pytest.mark.timeout(240)
@pytest.mark.parametrize(("app", "theme", "route", "first_cell"), FRONTENDS)
async def test_panel_in_frontend(
    app: str, theme: str, route: str, first_cell: str, browser_env: dict[str, str], tmp_path: Path
):
    from playwright.async_api import async_playwright, expect

    async with JobServer("127.0.0.1", 0) as server:
        token = server.issue_token()
        jupyter = Jupyter(tmp_path / app, browser_env, app=app, theme=theme, route=route)
        write_notebook(jupyter.root / "panel.ipynb", [first_cell, WAIT_CELL])
        features = write_table(jupyter.root / "customers.csv", rows=8000)
        page = None
        try:
            await jupyter.wait_ready()
            async with async_playwright() as pw:
                browser = await launch_chromium(pw, browser_env)
                try:
                    page = await browser.new_page(viewport={"width": 1400, "height": 1100})
                    page.set_default_timeout(60_000)
                    await open_and_run(page, jupyter, "panel.ipynb")
                    assert await page.evaluate(THEME_JS) == f"JupyterLab {theme.capitalize()}"
                    await connect(page, token, server.url)

                    printed = await cell_text(page, 1, "ROUTE")
                    assert "STATE connected" in printed, printed
                    print(f"[{jupyter.name}] Connect click handled in the kernel:", _route_checked(printed, route))
                    await server.wait_for_worker(timeout=30)
                    assert len(server.workers) == 1, server.workers

                    params = {
                        "file_path": "customers.csv",
                        "target_column": "churned",
                        "feature_columns": features,
                        "model_type": "random_forest",
                        "task_type": "classification",
                        "hyperparameters": {"n_estimators": 400},  # long enough to look at while it runs
                        "custom_name": "Churn forest",
                    }
                    job = asyncio.ensure_future(server.run_job("train", params, timeout=180))
                    row = page.locator(".statsbot-panel .widget-hbox", has=page.locator(".statsbot-progress"))
                    await expect(row.filter(has_text="customers.csv").first).to_be_visible(timeout=60_000)
                    await page.wait_for_function(BAR_MOVED_JS, timeout=60_000, polling=100)
                    await asyncio.sleep(0.5)  # the panel's next refresh
                    floor = await theme_floor(page)
                    problems = [f"Notebook width, running: {line}" for line in await clipped(page, OUTPUT_AREA)]
                    problems += [f"A job running: {line}" for line in unreadable(await contrast(page), floor)]
                    narrow = app == "lab" and theme == "light"
                    if narrow:
                        view = await narrow_view(page, NARROW_PX)
                        problems += [f"{NARROW_PX} px, running: {line}" for line in await clipped(page, view)]
                    assert not job.done(), "the job finished before its row was looked at: make it longer"
                    result = await job
                    assert result.success, result.error

                    log = page.locator(".statsbot-log").first
                    await expect(log).to_contain_text("customers.csv", timeout=30_000)
                    await expect(log).to_contain_text("done")
                    await expect(row.filter(has_text="customers.csv")).to_have_count(0, timeout=30_000)
                    problems += [f"Notebook width, done: {line}" for line in await clipped(page, OUTPUT_AREA)]
                    if narrow:
                        problems += [f"{NARROW_PX} px, done: {line}" for line in await clipped(page, view)]
                        await close_views(page)
                    problems += [f"Worker tab: {line}" for line in unreadable(await contrast(page), floor)]

                    await open_tab(page, "Models")
                    browser_tab = page.locator(".statsbot-browser")
                    await expect(browser_tab.locator(".statsbot-models")).to_contain_text(
                        "Churn forest", timeout=30_000
                    )
                    await expect(browser_tab).to_contain_text("random_forest", timeout=30_000)  # the card's badge
                    await page.wait_for_function(PLOT_DRAWN_JS, timeout=60_000, polling=250)
                    problems += [f"Models tab: {line}" for line in unreadable(await contrast(page), floor)]
                    assert problems == [], (
                        f"cut off or hard to read in {jupyter.name} (the theme's contrast floor is {floor}:1):\n"
                        + "\n".join(problems)
                    )
                except BaseException:
                    if page is not None:
                        shot = tmp_path / f"{app}-{theme}.png"
                        with contextlib.suppress(Exception):
                            await page.screenshot(path=str(shot), full_page=True)
                            print(f"Screenshot of the failure: {shot}")
                    print(f"{jupyter.name} log ({jupyter.log_path}):\n{jupyter.log_tail()}")
                    raise
                finally:
                    with contextlib.suppress(Exception):
                        await browser.close()
        finally:
            await jupyter.stop()
