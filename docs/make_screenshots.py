"""Regenerate the panel's screenshots in ``docs/screenshots/``: the real panel, server, worker and front ends.

For each front end (JupyterLab 4 light, JupyterLab 4 dark, Notebook 7) this starts the reference job server
(:class:`statsbot_nb.server.JobServer`) and the front end in a temporary folder, opens a notebook in Debian's
headless chromium, runs ``%load_ext statsbot_nb``, pastes a token and clicks Connect, exactly as a user would.
The server then sends ``train`` jobs on a generated customer table: finished models for the job log and the
Models tab, and a longer gradient-boosting job that is photographed while it runs::

    python docs/make_screenshots.py              # writes docs/screenshots/*.png (about 2-4 minutes)
    python docs/make_screenshots.py --only dark  # one front end: light, dark or notebook

Needs the ``[browser]`` extra and ``apt install chromium`` (as the browser tests: ``tests/jupyterweb.py`` is the
shared harness). Nothing is downloaded and nothing leaves the machine. Re-run it whenever the panel's looks
change; every file is rewritten. PNGs are written without metadata and, when over :data:`MAX_BYTES`,
re-encoded with a 256-colour palette so the repository stays small.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from jupyterweb import (  # noqa: E402  (the shared harness lives with the tests)
    Jupyter,
    clean_env,
    close_views,
    connect,
    launch_chromium,
    narrow_view,
    open_and_run,
    open_tab,
    write_notebook,
    write_table,
)

from statsbot_nb.server import JobServer  # noqa: E402

OUT = Path(__file__).resolve().parent / "screenshots"
MAX_BYTES = 200_000
VIEWPORT = {"width": 1280, "height": 900}
NARROW_PX = 350

# The cell holding the panel (input and output): JupyterLab and Notebook 7 both draw cells as .jp-Cell.
PANEL_CELL = ".jp-Cell:has(.statsbot-panel)"
# How far the first running job's bar has filled, 0-1 (-1 while there is none).
BAR_FRACTION_JS = """() => {
  const bar = document.querySelector('.statsbot-progress .progress-bar');
  if (!bar) return -1;
  const track = bar.parentElement.getBoundingClientRect().width;
  return track > 0 ? bar.getBoundingClientRect().width / track : -1;
}"""
NO_BAR_JS = "() => !document.querySelector('.statsbot-panel .statsbot-progress')"
BLUR_JS = "() => { if (document.activeElement) document.activeElement.blur(); return true; }"
PLOT_SRC_JS = "() => (document.querySelector('.statsbot-browser img') || {}).src || ''"
# The model browser's plot once it holds a decoded picture other than BEFORE (the previous model's or kind's).
PLOT_REDRAWN_JS = """(before) => {
  const img = document.querySelector('.statsbot-browser img');
  return !!img && img.src !== before && img.complete && img.naturalWidth > 100;
}"""


def _params(features: list[str], model_type: str, name: str, **hyper: Any) -> dict[str, Any]:
    return {
        "file_path": "customers.csv",
        "target_column": "churned",
        "feature_columns": features,
        "model_type": model_type,
        "task_type": "classification",
        "hyperparameters": hyper or None,
        "custom_name": name,
    }


def save_png(png: bytes, path: Path) -> Path:
    """Write ``png`` without metadata; over :data:`MAX_BYTES`, as a 256-colour palette image."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    if buffer.tell() > MAX_BYTES:
        buffer = io.BytesIO()
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            buffer, "PNG", optimize=True
        )
    path.write_bytes(buffer.getvalue())
    return path


class Session:
    """One front end with the panel connected to a fresh reference server, and the table it trains on."""

    def __init__(self, page: Any, server: JobServer, features: list[str]) -> None:
        self.page, self.server, self.features = page, server, features

    async def train(self, model_type: str, name: str, **hyper: Any) -> None:
        """Run a ``train`` job to the end (raise if it fails)."""
        result = await self.server.run_job("train", _params(self.features, model_type, name, **hyper), timeout=600)
        if not result.success:
            raise RuntimeError(f"training {name} failed: {result.error}")

    async def start_long_job(self, at_least: float = 0.3) -> Any:
        """Start a gradient-boosting job; return its handle once its bar is ``at_least`` full."""
        params = _params(self.features, "gradient_boosting", "Churn boosting", n_estimators=400)
        # the previous job's row (its bar full) must be gone first, or it would pass for this one's
        await self.page.wait_for_function(NO_BAR_JS, timeout=60_000, polling=200)
        handle = self.server.submit("train", params)
        await self.page.wait_for_function(f"() => ({BAR_FRACTION_JS})() >= {at_least}", timeout=300_000, polling=200)
        await asyncio.sleep(1.0)  # let the panel's next refresh (and any chart beside the bar) catch up
        return handle

    async def shot(self, selector: str, path: Path) -> Path:
        """Screenshot one element (no focus ring, no caret)."""
        await self.page.evaluate(BLUR_JS)
        png = await self.page.locator(selector).first.screenshot(animations="disabled", caret="hide")
        return save_png(png, path)

    async def clip_shot(self, top: str, bottom: str, path: Path) -> Path:
        """Screenshot from the top of ``top`` to the bottom of ``bottom``, as wide as ``top``."""
        await self.page.evaluate(BLUR_JS)
        first = await self.page.locator(top).first.bounding_box()
        last = await self.page.locator(bottom).first.bounding_box()
        height = last["y"] + last["height"] - first["y"] + 8
        clip = {"x": first["x"], "y": first["y"], "width": first["width"], "height": height}
        return save_png(await self.page.screenshot(clip=clip, animations="disabled", caret="hide"), path)

    async def page_shot(self, path: Path) -> Path:
        """Screenshot the whole viewport."""
        await self.page.evaluate(BLUR_JS)
        return save_png(await self.page.screenshot(animations="disabled", caret="hide"), path)


async def with_frontend(
    tmp: Path, app: str, theme: str, work: Callable[[Session], Awaitable[list[Path]]], rows: int = 20_000
) -> list[Path]:
    """Start a server and a front end, open the notebook, connect the panel, then ``work(session)``."""
    from playwright.async_api import async_playwright

    env = clean_env(tmp / "statsbot")
    env["HOME"] = str(tmp)
    async with JobServer("127.0.0.1", 0) as server:
        jupyter = Jupyter(tmp / f"{app}-{theme}", env, app=app, theme=theme)
        write_notebook(jupyter.root / "churn.ipynb", ["%load_ext statsbot_nb"])
        features = write_table(jupyter.root / "customers.csv", rows=rows)
        try:
            await jupyter.wait_ready()
            async with async_playwright() as pw:
                browser = await launch_chromium(pw, env)
                try:
                    page = await browser.new_page(viewport=VIEWPORT)
                    page.set_default_timeout(60_000)
                    await open_and_run(page, jupyter, "churn.ipynb")
                    await connect(page, server.issue_token(), server.url)
                    await server.wait_for_worker(timeout=30)
                    return await work(Session(page, server, features))
                finally:
                    with contextlib.suppress(Exception):
                        await browser.close()
        except BaseException:
            print(f"{jupyter.name} log:\n{jupyter.log_tail()}", file=sys.stderr)
            raise
        finally:
            await jupyter.stop()


async def lab_light(session: Session, out: Path) -> list[Path]:
    """JupyterLab light: a running job beside finished ones, the same at 350 px, then the Models tab."""
    await session.train("random_forest", "Churn forest", n_estimators=100)
    await session.train("logistic", "Churn logistic")
    job = await session.start_long_job()
    written = [await session.shot(PANEL_CELL, out / "jupyterlab-light.png")]
    written.append(await session.shot(await narrow_view(session.page, NARROW_PX), out / "narrow-350px.png"))
    page = session.page
    await close_views(page)  # back to the notebook alone, at full width
    result = await asyncio.wait_for(asyncio.shield(job.future), 600)
    if not result.success:
        raise RuntimeError(f"the long job failed: {result.error}")
    await open_tab(page, "Models")
    await page.set_viewport_size({"width": VIEWPORT["width"], "height": 2000})  # the card and its plot in view
    await page.wait_for_function(PLOT_REDRAWN_JS, arg="", timeout=60_000, polling=250)  # the first model's plot
    models = page.locator(".statsbot-models select")
    if await models.evaluate("(s) => s.selectedIndex") != 0:  # the newest model, the boosted one, is first
        before = await page.evaluate(PLOT_SRC_JS)
        await models.select_option(index=0)
        await page.wait_for_function(PLOT_REDRAWN_JS, arg=before, timeout=60_000, polling=250)
    curve = page.locator(".statsbot-plot-kinds button", has_text="learning_curve")
    if await curve.count():  # the live learning curve's stored copy, where the worker keeps one
        before = await page.evaluate(PLOT_SRC_JS)
        await curve.first.click()
        await page.wait_for_function(PLOT_REDRAWN_JS, arg=before, timeout=60_000, polling=250)
    await asyncio.sleep(1.0)
    await page.locator(".statsbot-panel .lm-TabBar").first.scroll_into_view_if_needed()
    written.append(await session.clip_shot(".statsbot-panel", ".statsbot-browser img", out / "models-tab.png"))
    return written


async def running_then_cancel(session: Session, path: Path, whole_page: bool) -> list[Path]:
    """One finished model, a running job photographed, then cancelled (a theme or front end of its own)."""
    await session.train("random_forest", "Churn forest", n_estimators=100)
    job = await session.start_long_job()
    shot = await (session.page_shot(path) if whole_page else session.shot(PANEL_CELL, path))
    await session.server.cancel(job.job_id)
    return [shot]


async def main(out: Path, only: str | None) -> list[Path]:
    """Write every screenshot (or one front end's) into ``out`` and return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    plan: dict[str, tuple[str, str, Callable[[Session], Awaitable[list[Path]]]]] = {
        "light": ("lab", "light", lambda s: lab_light(s, out)),
        "dark": ("lab", "dark", lambda s: running_then_cancel(s, out / "jupyterlab-dark.png", False)),
        "notebook": ("notebook", "light", lambda s: running_then_cancel(s, out / "notebook7.png", True)),
    }
    written: list[Path] = []
    for name, (app, theme, work) in plan.items():
        if only in (None, name):
            with tempfile.TemporaryDirectory(prefix="statsbot-shots-") as tmp:
                written += await with_frontend(Path(tmp), app, theme, work)
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("light", "dark", "notebook"), help="one front end only")
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder to write into (default {OUT})")
    args = parser.parse_args()
    for path in asyncio.run(main(args.out, args.only)):
        print(f"{path}  {path.stat().st_size / 1024:.0f} KB")
