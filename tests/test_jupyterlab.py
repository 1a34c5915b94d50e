"""End to end in a real JupyterLab 4 and a headless Debian chromium: paste a token into the panel, connect, run a job.

Both comm routes are covered: JupyterLab's ``commsOverSubshells`` setting on (``perCommTarget``, the default:
widget messages go to a kernel subshell) and off (``disabled``: they go to the main shell while a cell awaits).
Needs the ``playwright`` and ``jupyterlab`` packages (the ``[browser]`` extra) and Debian's ``chromium`` (never a
downloaded browser): without them the test is skipped locally and fails under CI (``$CI`` set), where
``.ci/run`` installs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import extras
import pytest

from statsbot_nb.server import JobServer

ROUTES = ["perCommTarget", "disabled"]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--no-proxy-server",
]
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")

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


def _require(what: str) -> None:
    message = f"{what} is needed for the JupyterLab browser test"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI installs it: see .ci/run)")
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _http(url: str, method: str = "GET", timeout: float = 5.0) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
    with opener.open(urllib.request.Request(url, method=method), timeout=timeout) as response:
        return response.status


def _write_settings(settings: Path, route: str) -> None:
    apputils = settings / "@jupyterlab" / "apputils-extension"
    apputils.mkdir(parents=True)
    (apputils / "kernels-settings.jupyterlab-settings").write_text(json.dumps({"commsOverSubshells": route}))
    (apputils / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )


def _write_notebook(path: Path) -> None:
    def cell(source: str) -> dict:
        return {
            "cell_type": "code",
            "execution_count": None,
            "id": secrets.token_hex(4),
            "metadata": {},
            "outputs": [],
            "source": source,
        }

    path.write_text(
        json.dumps(
            {
                "cells": [cell("%load_ext statsbot_nb"), cell(WAIT_CELL)],
                "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
                "nbformat": 4,
                "nbformat_minor": 5,
            }
        )
    )


class Lab:
    """``jupyter lab`` in a subprocess with its own port, token, config, runtime, data and settings folders."""

    def __init__(self, tmp: Path, route: str, env: dict[str, str]) -> None:
        self.tmp, self.port, self.token = tmp, _free_port(), secrets.token_hex(16)
        self.root = tmp / "root"
        self.root.mkdir(parents=True)
        self.log_path = tmp / "jupyterlab.log"
        for name in ("config", "runtime", "data", "workspaces"):
            (tmp / name).mkdir()
        _write_settings(tmp / "settings", route)
        env = {
            **env,
            "JUPYTER_CONFIG_DIR": str(tmp / "config"),
            "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
            "JUPYTER_DATA_DIR": str(tmp / "data"),
            "PYTHONUNBUFFERED": "1",
        }
        cmd = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--LabApp.expose_app_in_browser=True",
            f"--LabApp.user_settings_dir={tmp / 'settings'}",
            f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
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
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base}{path}?token={self.token}"

    async def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                if await asyncio.to_thread(_http, self.url("/api/status")) == 200:
                    return
            await asyncio.sleep(0.25)
        raise TimeoutError(f"jupyter lab did not answer within {timeout} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    async def stop(self) -> None:
        """Shut the server (and so its kernel) down cleanly; terminate, then kill, if it does not go."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(_http, self.url("/api/shutdown"), "POST")
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


@pytest.fixture
def browser_env(home: Path) -> dict[str, str]:
    """The environment for lab, its kernel and chromium: a temporary HOME/STATSBOT_HOME and no proxies."""
    extras.require("browser")  # playwright and jupyterlab: the [browser] extra
    if shutil.which("chromium") is None:
        _require("Debian's chromium (apt-get install chromium)")
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS and not k.startswith("STATSBOT_")}
    env["STATSBOT_HOME"] = str(home)
    return env


@pytest.mark.timeout(180)
@pytest.mark.parametrize("route", ROUTES)
async def test_panel_connects_in_jupyterlab(route: str, browser_env: dict[str, str], tmp_path: Path):
    from playwright.async_api import async_playwright, expect

    async with JobServer("127.0.0.1", 0) as server:
        token = server.issue_token()
        lab = Lab(tmp_path / "lab", route, browser_env)
        _write_notebook(lab.root / "panel.ipynb")
        page = None
        try:
            await lab.wait_ready()
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS, env=browser_env, timeout=60_000
                )
                try:
                    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
                    page.set_default_timeout(60_000)
                    await page.goto(lab.url("/lab/tree/panel.ipynb") + "&reset", wait_until="domcontentloaded")
                    await page.wait_for_function(KERNEL_READY_JS, timeout=90_000, polling=250)
                    await page.evaluate(RUN_ALL_JS)

                    panel = page.locator(".statsbot-panel")
                    await expect(panel).to_be_visible(timeout=60_000)
                    password = page.locator(".statsbot-token input[type=password]")
                    await password.fill(token)
                    await page.locator(".statsbot-url input").fill(server.url)
                    await page.locator(".statsbot-connect").click()

                    await expect(page.locator(".statsbot-status span").first).to_have_text("connected", timeout=45_000)
                    await expect(password).to_have_value("", timeout=10_000)  # cleared by the kernel
                    await page.wait_for_function(
                        "(i) => (" + CELL_TEXT_JS + ")(i).includes('ROUTE')", arg=1, timeout=30_000, polling=250
                    )
                    printed = await page.evaluate(CELL_TEXT_JS, 1)
                    assert "STATE connected" in printed, printed

                    route_info = json.loads(printed.split("ROUTE", 1)[1].strip().splitlines()[0])
                    print(f"[{route}] Connect click handled in the kernel:", route_info)
                    assert len(route_info["clicks"]) == 1, route_info
                    subshell_id = route_info["clicks"][0]["subshell_id"]
                    if route == "disabled" or not route_info["subshells"]:
                        assert subshell_id is None, route_info
                    else:  # the click really travelled over a subshell
                        assert subshell_id, route_info

                    await server.wait_for_worker(timeout=30)
                    assert len(server.workers) == 1, server.workers
                    result = await server.run_job("list_models", {}, timeout=60)
                    assert result.success, result.error
                    await expect(page.locator(".statsbot-log")).to_contain_text("list_models", timeout=30_000)
                except BaseException:
                    if page is not None:
                        shot = tmp_path / f"jupyterlab-{route}.png"
                        with contextlib.suppress(Exception):
                            await page.screenshot(path=str(shot), full_page=True)
                            print(f"Screenshot of the failure: {shot}")
                    print(f"jupyter lab log ({lab.log_path}):\n{lab.log_tail()}")
                    raise
                finally:
                    with contextlib.suppress(Exception):
                        await browser.close()
        finally:
            await lab.stop()
