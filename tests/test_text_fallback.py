"""Where widgets cannot render, the panel prints as readable text: terminal IPython and ``nbconvert --to markdown``.

Each runs as a user would run it, in a subprocess: ``ipython -c "%load_ext statsbot_nb"`` (with a model in the
store, which makes the model browser work in the background), a script run by ``ipython`` or ``python`` that
connects to a real :class:`~statsbot_nb.server.JobServer`, runs a ``train`` job and displays
``statsbot_nb.panel()``, and ``jupyter nbconvert --execute --to markdown`` of a notebook doing the same. The
text must say what the panel says (the state in words, the job's line), carry no widget-model noise
(``VBox(children=...``, a widget's model id or mimetype) and no traceback, on stdout or stderr, up to and
including the interpreter's exit.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from statsbot_nb.context import JobContext, JobSettings
from statsbot_nb.handlers.train import train

# What a widget's own text looks like where it leaked instead of the panel's text.
WIDGET_NOISE = re.compile(
    r"(VBox|HBox|Tab|Password|Text|Button|HTML|Output|Layout|Dropdown|Select)\(|"
    r"application/vnd\.jupyter\.widget|model_id['\"]?\s*[:=]\s*['\"][0-9a-f]{32}|"
    r"Widget Javascript not detected|Error displaying widget"
)
NOT_CONNECTED = "StatsBot worker - Not connected. Paste the token from /connect in the bot and click Connect."

# Runs under IPython (a script or a notebook cell body): a real server, a worker, one train job, the panel.
JOB_SCRIPT = """\
import asyncio
import statsbot_nb
from IPython.display import display
from statsbot_nb.server import JobServer

PARAMS = {params}

async def main():
    async with JobServer("127.0.0.1", 0) as server:
        worker = statsbot_nb.connect(token=server.issue_token(), url=server.url)
        await worker.wait_connected(timeout=30)
        result = await server.run_job("train", PARAMS, timeout=180)
        assert result.success, result.error
        display(statsbot_nb.panel())
        worker.disconnect()
"""


def _table(folder: Path) -> dict:
    """A small CSV in ``folder`` and the ``train`` params for a named random forest on it."""
    rows = [f"{i % 7},{(i * 3) % 11},{'yes' if (i % 7) + (i * 3) % 11 > 8 else 'no'}" for i in range(300)]
    (folder / "customers.csv").write_text("tenure,calls,churned\n" + "\n".join(rows) + "\n")
    return {
        "file_path": str(folder / "customers.csv"),
        "target_column": "churned",
        "feature_columns": ["tenure", "calls"],
        "model_type": "random_forest",
        "task_type": "classification",
        "hyperparameters": {"n_estimators": 20},
        "custom_name": "Churn forest",
    }


def _clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATSBOT_") and "proxy" not in k.lower()}
    env.update(STATSBOT_HOME=str(home), HOME=str(home.parent), PYTHONUNBUFFERED="1", TERM="dumb")
    return env


# The job log's line for the train job (the file may be shown relative to its folder, or in full).
TRAIN_LINE = re.compile(r"^\s*\d\d:\d\d:\d\d  train  \S*customers\.csv  done  ", re.MULTILINE)


def _assert_readable(output: str, *expected: str | re.Pattern[str]) -> None:
    assert "Traceback" not in output and "Exception ignored" not in output, output
    noise = WIDGET_NOISE.search(output)
    assert noise is None, f"widget-model noise {noise.group(0)!r} in:\n{output}"
    for text in expected:
        found = text.search(output) if isinstance(text, re.Pattern) else text in output
        assert found, f"{text!r} missing from:\n{output}"


def _ipython(*args: str, cwd: Path, env: dict[str, str], timeout: float = 180) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "IPython", "--no-banner", "--colors=NoColor", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_terminal_ipython_load_ext_prints_the_panel_as_text_and_exits_cleanly(home: Path, tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    params = _table(data)
    ctx = JobContext(JobSettings(home=home, allowed_dirs=(data,), cwd=data))
    train(params, ctx)  # a model in the store: the model browser reads and draws it while IPython exits

    output = _ipython("-c", "%load_ext statsbot_nb", cwd=data, env=_clean_env(home))
    _assert_readable(output, NOT_CONNECTED)


@pytest.mark.parametrize("interpreter", ["ipython", "python"])
def test_script_showing_the_panel_after_a_job(interpreter: str, home: Path, tmp_path: Path):
    data = tmp_path / "data"
    data.mkdir()
    script = data / "show_panel.py"
    # the guard every script starting processes needs (job processes start from a forkserver, which imports
    # the main script as a module: without it the script would run again there)
    body = JOB_SCRIPT.format(params=repr(_table(data)))
    script.write_text(body + "\nif __name__ == '__main__':\n    asyncio.run(main())\n")

    env = _clean_env(home)
    if interpreter == "ipython":
        output = _ipython(str(script), cwd=data, env=env)
    else:  # plain Python: IPython's display() prints the panel's text there too
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=data,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=180,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, output
    _assert_readable(output, "StatsBot worker - connected: Connected to ws://127.0.0.1:", TRAIN_LINE)


def test_nbconvert_to_markdown_shows_the_panel_as_text(home: Path, tmp_path: Path):
    pytest.importorskip("nbconvert")
    data = tmp_path / "data"
    data.mkdir()
    cells = [
        "%load_ext statsbot_nb",
        JOB_SCRIPT.format(params=repr(_table(data))) + "\nawait main()",
    ]
    notebook = {
        "cells": [
            {"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [], "source": s}
            for i, s in enumerate(cells)
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (data / "panel.ipynb").write_text(json.dumps(notebook))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter",
            "nbconvert",
            "--to",
            "markdown",
            "--execute",
            "--ExecutePreprocessor.timeout=240",
            "panel.ipynb",
        ],
        cwd=data,
        env=_clean_env(home),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    markdown = (data / "panel.md").read_text()
    print(markdown)
    _assert_readable(markdown + done.stderr, NOT_CONNECTED, "StatsBot worker - connected", TRAIN_LINE)
