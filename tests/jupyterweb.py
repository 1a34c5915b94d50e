"""Drive the panel in real Jupyter front ends: JupyterLab 4 or Notebook 7 in a subprocess, Debian's chromium.

Shared by ``tests/test_frontends.py`` and ``docs/make_screenshots.py`` (which puts this folder on
``sys.path``). Nothing here is a test: a :class:`Jupyter` server with its own port, token, config, runtime,
data, settings (theme, widget comm route) and workspace folders; notebooks written from cell sources; the
page steps a user takes (open, run all, paste the token, click Connect, open a tab); and a measure of how
readable the panel's text is (WCAG contrast of every text element against what is drawn behind it).

Never a downloaded browser: chromium is Debian's package, found on ``$PATH``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--no-proxy-server",
]
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
THEMES = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}

# True once the notebook is open with its kernel connected and idle (the execution indicator was flaky).
KERNEL_READY_JS = """() => {
  const app = window.jupyterapp;
  const nb = app && app.shell && app.shell.currentWidget;
  if (!nb || !nb.context || !nb.context.isReady || !nb.sessionContext || !nb.sessionContext.session) return false;
  const kernel = nb.sessionContext.session.kernel;
  return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}"""
RUN_ALL_JS = "() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); return true; }"
CELL_TEXT_JS = """(index) => {
  const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
  if (cells.length <= index) return '';
  const outputs = cells.get(index).toJSON().outputs || [];
  return outputs.map(o => [].concat(o.text || (o.data && o.data['text/plain']) || o.evalue || []).join('')).join('');
}"""
THEME_JS = "() => document.body.dataset.jpThemeName || ''"
# The space a notebook gives the panel's output (JupyterLab and Notebook 7 alike): what it must fit in.
OUTPUT_AREA = ".jp-Notebook .jp-OutputArea-output:has(.statsbot-panel)"

# Every visible element under ROOT with text of its own: the text, its colour and what is drawn behind it,
# both as composited by the browser (ancestors' backgrounds blended, opacity applied), and the contrast
# ratio between them (WCAG 2: 4.5 for ordinary text, 3 for large or bold-large text).
CONTRAST_JS = """(root) => {
  const parse = (c) => {
    const m = c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return [0, 0, 0, 0];
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, bottom) => {  // top composited over an opaque bottom
    const a = top[3];
    return [0, 1, 2].map(i => top[i] * a + bottom[i] * (1 - a)).concat([1]);
  };
  const lum = (c) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  };
  const background = (el) => {  // blend backgrounds from the page down to el
    const chain = [];
    for (let e = el; e; e = e.parentElement) chain.push(e);
    let bg = [255, 255, 255, 1];
    for (const e of chain.reverse()) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) bg = over(c, bg);
    }
    return bg;
  };
  const opacity = (el) => {
    let o = 1;
    for (let e = el; e; e = e.parentElement) o *= Number(getComputedStyle(e).opacity);
    return o;
  };
  const out = [];
  const top = document.querySelector(root);
  if (!top) return out;
  for (const el of [top, ...top.querySelectorAll('*')]) {
    const own = [...el.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent).join('').trim();
    const isField = (el.tagName === 'INPUT' && el.type !== 'checkbox' && el.type !== 'radio' && el.value) ||
                    el.tagName === 'SELECT' || el.tagName === 'OPTION';
    if (!own && !isField) continue;
    const box = el.getBoundingClientRect();
    const style = getComputedStyle(el);
    if (box.width === 0 || box.height === 0 || style.visibility === 'hidden') continue;
    if (el.tagName === 'OPTION' && el.parentElement && el.parentElement.size <= 1) continue;
    const bg = background(el);
    const fg = over([...parse(style.color).slice(0, 3), parse(style.color)[3] * opacity(el)], bg);
    const [l1, l2] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
    out.push({
      text: (own || el.value || el.textContent || '').trim().slice(0, 60),
      tag: el.tagName.toLowerCase(),
      cls: (el.className && el.className.baseVal === undefined ? el.className : '').slice(0, 80),
      fg: fg.slice(0, 3).map(Math.round), bg: bg.slice(0, 3).map(Math.round),
      ratio: Math.round(((l1 + 0.05) / (l2 + 0.05)) * 100) / 100,
      large: size >= 24 || (bold && size >= 18.66),
      graphic: !!el.closest('[aria-hidden="true"]'),  // a mark beside words (a state's dot): 3:1, as graphics
    });
  }
  return out;
}"""


# JupyterLab's own secondary text (an inactive tab's label: --jp-ui-font-color2 on --jp-layout-color2) in the
# page's theme, measured like CONTRAST_JS measures the panel: the theme's own floor for readable text.
THEME_FLOOR_JS = """() => {
  const probe = document.createElement('div');
  probe.style.cssText = 'color:var(--jp-ui-font-color2);background:var(--jp-layout-color2);position:absolute';
  probe.className = 'statsbot-contrast-probe';
  probe.textContent = 'probe';
  document.body.appendChild(probe);
  const fgText = getComputedStyle(probe).color, bgText = getComputedStyle(probe).backgroundColor;
  probe.remove();
  return [fgText, bgText];
}"""


def _rgba(css: str) -> tuple[float, float, float, float]:
    """``rgb(1, 2, 3)`` / ``rgba(1, 2, 3, 0.5)`` / ``rgb(1 2 3 / 0.5)`` as four numbers."""
    inner = css[css.index("(") + 1 : css.rindex(")")].replace("/", " ").replace(",", " ").split()
    values = [float(v) for v in inner]
    return (values[0], values[1], values[2], values[3] if len(values) > 3 else 1.0)


def contrast_ratio(fg_css: str, bg_css: str) -> float:
    """WCAG 2 contrast of a CSS colour drawn over another (over white where the background is not opaque)."""

    def over(top: tuple[float, ...], bottom: tuple[float, ...]) -> tuple[float, ...]:
        return (*(top[i] * top[3] + bottom[i] * (1 - top[3]) for i in range(3)), 1.0)

    def luminance(c: tuple[float, ...]) -> float:
        def channel(v: float) -> float:
            v /= 255
            return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

        return 0.2126 * channel(c[0]) + 0.7152 * channel(c[1]) + 0.0722 * channel(c[2])

    bg = over(_rgba(bg_css), (255.0, 255.0, 255.0, 1.0))
    fg = over(_rgba(fg_css), bg)
    high, low = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (high + 0.05) / (low + 0.05)


# Which important parts of the panel under ROOT (the element whose box the panel must fit in) are cut off: not
# wholly inside what ROOT and every clipping container between shows (scrolled away or clipped), or with their
# text narrower than its content: a button must show its whole label, anything else may instead carry a
# tooltip with it in full. Fields and drop-downs scroll their text by design: only their placement counts.
# Also: a word of at most 20 characters (a time, a status, a file name) split over lines.
CLIPPED_JS = """(root) => {
  const frame = document.querySelector(root);
  if (!frame) return ['no ' + root];
  const box = frame.getBoundingClientRect();
  const shown = (el) => {  // the horizontal span el may be seen in: ROOT and every clipping ancestor inside it
    let [left, right] = [box.left, box.right];
    for (let e = el.parentElement; e && e !== frame; e = e.parentElement) {
      if (getComputedStyle(e).overflowX === 'visible') continue;
      const b = e.getBoundingClientRect();
      [left, right] = [Math.max(left, b.left), Math.min(right, b.right)];
    }
    return [left, right];
  };
  const important = ['.jupyter-button', '.lm-TabBar-tab', '.statsbot-status', '.statsbot-log .statsbot-logcell',
    '.statsbot-progress', '.widget-label', '.widget-checkbox label', 'input', 'select'];
  const out = [];
  for (const el of frame.querySelectorAll(important.map(s => '.statsbot-panel ' + s).join(','))) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || getComputedStyle(el).visibility === 'hidden') continue;
    const text = (el.innerText || el.value || el.placeholder || el.className || '').trim().replace(/\\s+/g, ' ');
    const name = el.tagName.toLowerCase() + ' ' + JSON.stringify(text.slice(0, 50));
    const [left, right] = shown(el);
    if (r.left < left - 1 || r.right > right + 1) {
      const [from, to] = [Math.round(r.left - left), Math.round(r.right - left)];
      out.push(`${name} is not wholly shown (${from}..${to} px in a ${Math.round(right - left)} px space)`);
      continue;
    }
    if (el.tagName === 'INPUT' || el.tagName === 'SELECT') continue;
    const button = el.classList.contains('jupyter-button');
    for (const e of [el, ...el.querySelectorAll('*')]) {
      const clips = getComputedStyle(e).overflowX !== 'visible';
      if (clips && e.scrollWidth > e.clientWidth + 1 && (button || (!e.title && !el.title))) {
        const why = button ? '' : ', no tooltip';
        out.push(`${name} is cut off (${e.clientWidth} px shown of ${e.scrollWidth} px${why})`);
        break;
      }
    }
    // a short word (a time, a file name) split over lines is unreadable; long values may wrap anywhere
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    broken: for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const m of node.textContent.matchAll(/\\S+/g)) {
        if (m[0].length > 20) continue;
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const tops = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
        if (tops.size > 1) {
          out.push(`${name}: the word ${JSON.stringify(m[0])} is split over ${tops.size} lines`);
          break broken;
        }
      }
    }
  }
  return out;
}"""

# Move the panel's linked output view (JupyterLab's "Create New View for Cell Output") beside the notebook and
# make it WIDTH px wide, the left sidebar collapsed: the panel as it looks in a narrow side panel.
NARROW_VIEW_JS = """(width) => {
  const app = window.jupyterapp;
  app.shell.collapseLeft();
  const dock = app.shell._dockPanel;
  const config = dock.saveLayout();
  if (!config.main || config.main.type !== 'split-area') return -1;
  const total = dock.node.getBoundingClientRect().width;
  config.main.orientation = 'horizontal';
  config.main.sizes = [(total - width) / total, width / total];
  dock.restoreLayout(config);
  return total;
}"""
CLOSE_VIEWS_JS = """() => {
  for (const w of Array.from(window.jupyterapp.shell.widgets('main'))) {
    if (w.node.classList.contains('jp-LinkedOutputView') || w.node.querySelector('.jp-LinkedOutputView')) w.close();
  }
  return true;
}"""
VIEW_WIDTH_JS = """() => {
  const view = document.querySelector('.jp-LinkedOutputView');
  return view ? view.getBoundingClientRect().width : -1;
}"""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http(url: str, method: str = "GET", timeout: float = 5.0) -> int:
    """The HTTP status of one request to loopback (never through a proxy)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(urllib.request.Request(url, method=method), timeout=timeout) as response:
        return response.status


def clean_env(home: Path) -> dict[str, str]:
    """The environment for the server, its kernels and chromium: ``STATSBOT_HOME=home``, no proxies."""
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS and not k.startswith("STATSBOT_")}
    env["STATSBOT_HOME"] = str(home)
    return env


def write_settings(settings: Path, route: str, theme: str) -> None:
    """User settings: the widget comm route, the theme, and no news or update toasts."""
    apputils = settings / "@jupyterlab" / "apputils-extension"
    apputils.mkdir(parents=True, exist_ok=True)
    (apputils / "kernels-settings.jupyterlab-settings").write_text(json.dumps({"commsOverSubshells": route}))
    (apputils / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    (apputils / "themes.jupyterlab-settings").write_text(json.dumps({"theme": THEMES[theme], "adaptive-theme": False}))


def write_notebook(path: Path, sources: list[str]) -> None:
    """A notebook of code cells with these sources and no outputs (Python 3 kernel)."""

    def cell(source: str) -> dict[str, Any]:
        return {
            "cell_type": "code",
            "execution_count": None,
            "id": secrets.token_hex(4),
            "metadata": {},
            "outputs": [],
            "source": source,
        }

    notebook = {
        "cells": [cell(s) for s in sources],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(notebook))


def write_table(path: Path, rows: int = 3000, seed: int = 0) -> list[str]:
    """A customer table (8 numeric columns and a yes/no ``churned`` target) as CSV; returns the features."""
    rng = np.random.default_rng(seed)
    features = ["tenure", "monthly_fee", "support_calls", "usage_hours", "discount", "age", "devices", "late_pays"]
    X = rng.normal(size=(rows, len(features)))
    y = X[:, 0] - X[:, 1] * X[:, 2] + 0.5 * X[:, 3] + rng.normal(scale=0.7, size=rows) > 0
    pd.DataFrame(X.round(4), columns=features).assign(churned=np.where(y, "yes", "no")).to_csv(path, index=False)
    return features


class Jupyter:
    """``jupyter lab`` (``app="lab"``) or Notebook 7 (``app="notebook"``) in a subprocess, fully isolated."""

    def __init__(
        self, tmp: Path, env: dict[str, str], *, app: str = "lab", theme: str = "light", route: str = "perCommTarget"
    ) -> None:
        if app not in ("lab", "notebook"):
            raise ValueError(f"app must be 'lab' or 'notebook', not {app!r}")
        self.app, self.theme, self.route = app, theme, route
        self.tmp, self.port, self.token = tmp, free_port(), secrets.token_hex(16)
        self.root = tmp / "root"
        self.root.mkdir(parents=True)
        self.log_path = tmp / f"jupyter-{app}.log"
        for name in ("config", "runtime", "data", "workspaces"):
            (tmp / name).mkdir()
        write_settings(tmp / "settings", route, theme)
        env = {
            **env,
            "JUPYTER_CONFIG_DIR": str(tmp / "config"),
            "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
            "JUPYTER_DATA_DIR": str(tmp / "data"),
            "PYTHONUNBUFFERED": "1",
        }
        klass = "LabApp" if app == "lab" else "JupyterNotebookApp"
        cmd = [
            sys.executable,
            "-m",
            "jupyterlab" if app == "lab" else "notebook",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            f"--{klass}.expose_app_in_browser=True",
            f"--{klass}.user_settings_dir={tmp / 'settings'}",
            f"--{klass}.workspaces_dir={tmp / 'workspaces'}",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def name(self) -> str:
        """``JupyterLab 4 (dark)``, ``Notebook 7 (light)``: for messages and file names."""
        return f"{'JupyterLab 4' if self.app == 'lab' else 'Notebook 7'} ({self.theme})"

    def url(self, path: str) -> str:
        """The full URL of ``path`` on this server, with its token."""
        return f"http://127.0.0.1:{self.port}{path}?token={self.token}"

    def notebook_url(self, name: str) -> str:
        """Where the front end opens the notebook ``name`` (in the server's root folder)."""
        if self.app == "lab":
            return self.url(f"/lab/tree/{name}") + "&reset"
        return self.url(f"/notebooks/{name}")

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the server answers ``/api/status`` (raise with its log if it exits or never does)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                if await asyncio.to_thread(http, self.url("/api/status")) == 200:
                    return
            await asyncio.sleep(0.25)
        raise TimeoutError(f"{self.name} did not answer within {timeout} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's log (its kernels' stderr too)."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    async def stop(self) -> None:
        """Shut the server (and so its kernel) down cleanly; terminate, then kill, if it does not go."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(http, self.url("/api/shutdown"), "POST")
            for _ in range(100):
                if self.proc.poll() is not None:
                    break
                await asyncio.sleep(0.1)
        for stop, wait in ((self.proc.terminate, 10), (self.proc.kill, 10)):
            if self.proc.poll() is None:
                stop()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.to_thread(self.proc.wait, wait)
        self._log.close()


async def launch_chromium(playwright: Any, env: dict[str, str]) -> Any:
    """Debian's headless chromium (``$PATH``), never a downloaded one."""
    executable = shutil.which("chromium")
    if executable is None:
        raise FileNotFoundError("Debian's chromium is not installed (apt-get install chromium)")
    return await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, env=env, timeout=60_000)


async def open_and_run(page: Any, jupyter: Jupyter, notebook: str) -> None:
    """Open ``notebook``, wait for its kernel to be idle, run every cell and wait for the panel."""
    from playwright.async_api import expect

    await page.goto(jupyter.notebook_url(notebook), wait_until="domcontentloaded")
    await page.wait_for_function(KERNEL_READY_JS, timeout=90_000, polling=250)
    await page.evaluate(RUN_ALL_JS)
    await expect(page.locator(".statsbot-panel")).to_be_visible(timeout=60_000)


async def connect(page: Any, token: str, url: str) -> None:
    """Paste the token and the server's URL into the panel, click Connect, wait for "connected"."""
    from playwright.async_api import expect

    password = page.locator(".statsbot-token input[type=password]")
    await password.fill(token)
    await page.locator(".statsbot-url input").fill(url)
    await page.locator(".statsbot-connect").click()
    # the state's word first (after a coloured dot, if any), then the sentence: "● connected Connected to ..."
    await expect(page.locator(".statsbot-status")).to_have_text(re.compile(r"^\W*connected\s"), timeout=45_000)
    await expect(password).to_have_value("", timeout=10_000)  # cleared by the kernel


async def open_tab(page: Any, title: str) -> None:
    """Click the panel's tab called ``title``."""
    await page.locator(".statsbot-panel .lm-TabBar-tab", has_text=title).first.click()


async def narrow_view(page: Any, width: int = 350) -> str:
    """Open the panel's output in a view of its own, ``width`` px wide beside the notebook (JupyterLab only);
    returns the view's selector. A user gets the same with "Create New View for Cell Output" and a drag."""
    await page.evaluate("() => window.jupyterapp.commands.execute('notebook:create-output-view')")
    await page.locator(".jp-LinkedOutputView .statsbot-panel").wait_for(state="visible")
    asked, shown = float(width), -1.0
    for _ in range(4):  # the layout settles a moment later; borders take a few pixels: correct for them
        if await page.evaluate(NARROW_VIEW_JS, asked) < 0:
            raise RuntimeError("the output view did not open beside the notebook")
        await asyncio.sleep(0.6)
        shown = float(await page.evaluate(VIEW_WIDTH_JS))
        if abs(shown - width) <= 1:
            break
        asked += width - shown
    if abs(shown - width) > 2:
        raise RuntimeError(f"the output view is {shown} px wide, not {width} px")
    return ".jp-LinkedOutputView"


async def close_views(page: Any) -> None:
    """Close every output view :func:`narrow_view` opened (the notebook fills the main area again)."""
    await page.evaluate(CLOSE_VIEWS_JS)
    await page.locator(".jp-LinkedOutputView").first.wait_for(state="detached")


async def clipped(page: Any, root: str) -> list[str]:
    """What important part of the panel under ``root`` is cut off or drawn past its edge, one line each."""
    return list(await page.evaluate(CLIPPED_JS, root))


async def cell_text(page: Any, index: int, contains: str, timeout: float = 30.0) -> str:
    """The text outputs of cell ``index`` once they contain ``contains``."""
    await page.wait_for_function(
        "(a) => (" + CELL_TEXT_JS + ")(a[0]).includes(a[1])",
        arg=[index, contains],
        timeout=timeout * 1000,
        polling=250,
    )
    return str(await page.evaluate(CELL_TEXT_JS, index))


async def contrast(page: Any, root: str = ".statsbot-panel") -> list[dict[str, Any]]:
    """Every visible text element under ``root``: text, colours as drawn, WCAG contrast ratio, large or not."""
    return list(await page.evaluate(CONTRAST_JS, root))


async def theme_floor(page: Any) -> float:
    """The contrast of JupyterLab's own secondary text in the page's theme (an inactive tab's label)."""
    fg, bg = await page.evaluate(THEME_FLOOR_JS)
    return round(contrast_ratio(fg, bg), 2)


def unreadable(report: list[dict[str, Any]], floor: float = 4.5) -> list[str]:
    """The elements of a :func:`contrast` report below WCAG AA (4.5:1; large text and marks hidden from screen
    readers, which are graphics beside words, 3:1), one line each.

    ``floor`` lowers the bar to the theme's own secondary text where that is below AA (JupyterLab's inactive
    tab labels are 4.43:1 in the light theme and 4.23:1 in the dark one): the panel is not asked to be more
    readable than the front end it lives in, only never less.
    """
    minimum, large_minimum = min(4.5, floor), min(3.0, floor)
    return [
        f"{r['ratio']}:1  {r['tag']}.{r['cls']!s:.40}  {r['text']!r}  fg {r['fg']} on bg {r['bg']}"
        for r in report
        if r["ratio"] < (large_minimum if r["large"] or r.get("graphic") else minimum)
    ]
