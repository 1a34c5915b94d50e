"""In a real kernel (nbclient): the extension, the worker on the kernel's loop, liveness, token hygiene."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from legacy_server import LegacyServer
from nbclient import NotebookClient
from test_e2e_jobs import train_params

SECOND_TOKEN = "f1e2d3c4-0000-4000-8000-123456789abc"


def _notebook(cells: list[str]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def _text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out["text"])
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
        elif out.get("output_type") == "error":
            parts.append("\n".join(out.get("traceback", [])))
    return "".join(parts)


async def _execute(nb: nbformat.NotebookNode, cwd: Path) -> nbformat.NotebookNode:
    client = NotebookClient(
        nb, timeout=180, kernel_name="python3", allow_errors=False, resources={"metadata": {"path": str(cwd)}}
    )
    await client.async_execute()
    return nb


@pytest.fixture
def training_csv(home: Path) -> Path:
    rng = np.random.default_rng(3)
    n = 30_000
    frame = pd.DataFrame(
        {"x1": rng.normal(size=n), "x2": rng.normal(size=n), "city": rng.choice(["a", "b", "c"], size=n)}
    )
    frame["price"] = 2 * frame.x1 - frame.x2 + rng.normal(size=n)
    path = home.parent / "data" / "train.csv"
    path.parent.mkdir(exist_ok=True)
    frame.to_csv(path, index=False)
    return path


async def test_worker_in_a_real_kernel(
    legacy: LegacyServer, home: Path, training_csv: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.setenv("TEST_TOKEN", legacy.token)
    monkeypatch.setenv("TEST_URL", legacy.url)
    monkeypatch.setenv("SECOND_TOKEN", SECOND_TOKEN)
    monkeypatch.setenv("TESTS_DIR", str(Path(__file__).parent))
    nb = _notebook(
        [
            "%load_ext statsbot_nb",
            "import asyncio, os, sys, time\nimport statsbot_nb\n"
            "sys.path.insert(0, os.environ['TESTS_DIR'])\nfrom jobfuncs import TEST_ACTIONS\n"
            "w = statsbot_nb.connect(token=os.environ['TEST_TOKEN'], url=os.environ['TEST_URL'],"
            " actions=TEST_ACTIONS)\n"
            "await w.wait_connected(timeout=60)\nprint('state', w.state)",
            # the train job arrives from the server while this cell awaits
            "p = statsbot_nb.panel()\nlags, bars = [], []\ndeadline = time.monotonic() + 150\n"
            "while time.monotonic() < deadline:\n"
            "    t0 = time.monotonic()\n"
            "    await asyncio.sleep(0.01)\n"
            "    lags.append(time.monotonic() - t0 - 0.01)\n"
            "    bars += [r.bar.value for r in p._rows.values()]\n"
            "    if len(w.jobs) == 2 and all(j.finished for j in w.jobs.values()):\n"
            "        break\n"
            "train_job = next(j for j in w.jobs.values() if j.action == 'train')\n"
            "died = next(j for j in w.jobs.values() if j.action == 'die')\n"
            "print('job', train_job.action, train_job.status, train_job.error)\n"
            "print('died', died.status, 'killed' in died.error)\n"
            "print('lag_max_ms', round(max(lags) * 1000, 1), 'lag_p99_ms',"
            " round(sorted(lags)[int(len(lags) * 0.99)] * 1000, 1), 'ticks', len(lags))\n"
            "print('bar_values', len(set(bars)), 'bar_max', max(bars or [0]))\n"
            "print('refreshes', p.refreshes)",
            "statsbot_nb.panel()",
            "%statsbot status",
            "%statsbot jobs",
            # the token typed into the panel is cleared as soon as Connect reads it
            "p.token.value = os.environ['SECOND_TOKEN']\np.url.value = os.environ['TEST_URL']\n"
            "p.connect_button.click()\nawait asyncio.sleep(1)\nprint('token field', repr(p.token.value))\n"
            "print('new worker', statsbot_nb.current_worker() is not w, w.state)",
            "%unload_ext statsbot_nb",
        ]
    )

    async def bot() -> None:
        await legacy.wait_worker(timeout=120)
        params = train_params(
            training_csv, "price", "random_forest", "regression", hyperparameters={"n_estimators": 150}
        )
        await legacy.send_job("train", params)
        await legacy.send_job("die", {})  # a job whose process is killed: the kernel must stay up

    sender = asyncio.create_task(bot())
    executed = await _execute(nb, tmp_path)
    await sender
    texts = [_text(c) for c in executed.cells]
    assert "state connected" in texts[1]
    out = texts[2]
    print(out)
    assert "job train done None" in out, out
    assert "died failed True" in out, out
    lag = float(re.search(r"lag_max_ms ([\d.]+)", out).group(1))
    ticks = int(re.search(r"ticks (\d+)", out).group(1))
    assert ticks > 100
    # the issue asks for "a few tens of milliseconds"; measured 10-17 ms max (p99 1-4 ms) on a shared
    # 2-core machine. A browser refresh drawing in a thread once made this 65-170 ms.
    assert lag < 100, f"the kernel's loop stalled: {out}"
    assert int(re.search(r"bar_values (\d+)", out).group(1)) >= 3, out
    assert int(re.search(r"refreshes (\d+)", out).group(1)) >= 3, out
    panel_outputs = executed.cells[3]["outputs"]
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in panel_outputs)
    assert "StatsBot worker - connected" in texts[3]
    assert "connected" in texts[4] and "Jobs: 1 done, 1 failed" in texts[4]
    assert "train" in texts[5] and "done" in texts[5]
    assert "token field ''" in texts[6] and "new worker True" in texts[6]
    # the widget panel was shown by %load_ext
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in executed.cells[0]["outputs"])
    saved = json.dumps(executed)
    assert legacy.token not in saved and SECOND_TOKEN not in saved
    assert "application/vnd.jupyter.widget-state+json" in json.dumps(executed.metadata)
    assert legacy.violations == []


async def test_run_all_with_every_cell_queued_at_once(reference_url_token, home: Path):
    """Like JupyterLab's Run All: every execute request is queued before the first reply (the pattern
    that hangs with nest-asyncio on ipykernel 7.4). Our sync helper refuses instead of nesting."""
    from jupyter_client.manager import AsyncKernelManager

    url, token = reference_url_token
    cells = [
        "%load_ext statsbot_nb",
        f"import statsbot_nb\nfrom statsbot_nb import session\nw = statsbot_nb.connect(token={token!r}, url={url!r})",
        "try:\n    session.wait_connected_sync(w)\nexcept RuntimeError as exc:\n    print('refused:', exc)",
        "await w.wait_connected(timeout=60)",
        "print('after', w.state)",
    ]
    km = AsyncKernelManager(kernel_name="python3")
    await km.start_kernel()
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
        ids = [kc.execute(code) for code in cells]  # all queued at once
        statuses: dict[str, str] = {}
        stdout: list[str] = []
        while not all(i in statuses for i in ids):  # other replies (a late kernel_info) are not ours
            reply = await asyncio.wait_for(kc.get_shell_msg(), 90)
            statuses[reply["parent_header"].get("msg_id", "")] = reply["content"]["status"]
        while True:
            try:
                msg = await asyncio.wait_for(kc.get_iopub_msg(), 2)
            except (asyncio.TimeoutError, TimeoutError):
                break
            if msg["msg_type"] == "stream":
                stdout.append(msg["content"]["text"])
        assert [statuses[i] for i in ids] == ["ok"] * len(ids)
        text = "".join(stdout)
        assert "refused: This wait would block the notebook's event loop" in text
        assert "after connected" in text
    finally:
        kc.stop_channels()
        await km.shutdown_kernel(now=True)


@pytest.fixture
async def reference_url_token():
    from statsbot_nb.server import JobServer

    async with JobServer() as server:
        yield server.url, server.issue_token()
