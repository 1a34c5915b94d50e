"""No traceback when an interpreter with the extension loaded exits (issue 15): terminal IPython with saved
models (the model browser is drawing while the interpreter goes away), and a script whose worker is still
connected, with a job running, at exit. Each is run a few times: the failure was a race with the
interpreter's shutdown of its thread pools."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from statsbot_nb.ml.train import TrainOptions, train_model

RUNS = 3


def saved_models(home: Path) -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    df["y"] = (df.a > 0).astype(int)
    for model_type in ("random_forest", "logistic"):
        options = TrainOptions("y", ["a", "b"], model_type, "classification")
        train_model(df, options, home / ".statsbot" / "models", lambda *a: None, "t.csv")


def env_for(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATSBOT_")}
    env.update(HOME=str(home), IPYTHONDIR=str(home / ".ipython"), PYTHONWARNINGS="ignore")
    return env


@pytest.mark.skipif(shutil.which("ipython") is None and shutil.which("ipython3") is None, reason="no ipython")
def test_terminal_ipython_with_saved_models_exits_without_a_traceback(tmp_path: Path) -> None:
    saved_models(tmp_path)
    ipython = shutil.which("ipython") or shutil.which("ipython3") or "ipython"
    for _ in range(RUNS):
        out = subprocess.run(
            [ipython, "--no-banner", "-c", "%load_ext statsbot_nb"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env_for(tmp_path),
            cwd=tmp_path,
        )
        assert out.returncode == 0, out.stderr
        assert "StatsBot worker" in out.stdout  # the text panel was shown
        assert "Traceback" not in out.stderr + out.stdout, out.stderr
        assert "Error" not in out.stderr, out.stderr


SCRIPT = """
import asyncio, threading
import statsbot_nb
from statsbot_nb import session
from statsbot_nb.server import JobServer



def main():
    ready = threading.Event(); box = {}
    async def serve():
        async with JobServer() as s:
            box['url'], box['token'] = s.url, s.issue_token(); ready.set()
            try:
                await s.run_job('train', box['job'], timeout=120)
            except Exception:
                pass
    box['job'] = {'file_path': DATA, 'target_column': 'y', 'feature_columns': ['a', 'b'],
                  'model_type': 'random_forest', 'task_type': 'classification',
                  'hyperparameters': {'n_estimators': 400}}
    threading.Thread(target=lambda: asyncio.run(serve()), daemon=True).start()  # after box['job']: it reads it
    ready.wait(30)
    statsbot_nb.panel()
    w = statsbot_nb.connect(token=box['token'], url=box['url'])
    session.wait_connected_sync(w, 30)
    import time
    deadline = time.time() + 60
    while not w.jobs and time.time() < deadline:
        time.sleep(0.05)
    print('exiting with', len(w.jobs), 'job(s)', flush=True)


if __name__ == '__main__':  # job processes re-import a script's main module, as multiprocessing does
    main()
"""


def test_a_script_exits_with_a_connected_worker_and_a_running_job_without_a_traceback(tmp_path: Path) -> None:
    saved_models(tmp_path)
    rng = np.random.default_rng(1)
    data = pd.DataFrame({"a": rng.normal(size=20000), "b": rng.normal(size=20000)})
    data["y"] = (data.a + data.b > 0).astype(int)
    data.to_csv(tmp_path / "t.csv", index=False)
    script = tmp_path / "script.py"
    script.write_text(SCRIPT.replace("DATA", repr(str(tmp_path / "t.csv"))))
    for _ in range(RUNS):
        out = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env_for(tmp_path),
            cwd=tmp_path,
        )
        assert "exiting with 1 job(s)" in out.stdout, out.stdout + out.stderr
        assert "Traceback" not in out.stderr + out.stdout, out.stderr
