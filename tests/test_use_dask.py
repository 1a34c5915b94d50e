"""``statsbot_nb.use_dask()`` with a real worker (``statsbot_nb.connect``) on a real ``JobServer`` and a real
``LocalCluster``: jobs after ``use_dask(cluster)`` train on the cluster, after ``use_dask(None)`` here."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import statsbot_nb
from statsbot_nb import session
from statsbot_nb.errors import ConfigError
from statsbot_nb.server import JobServer

pytestmark = pytest.mark.extra("dask")


@pytest.fixture(autouse=True)
async def fresh_session(home: Path) -> Any:
    """Each test gets its own session state (current worker, captured loop, Dask choice)."""
    session.capture_main_loop()
    yield
    worker = session.current_worker()
    if worker is not None and worker.state not in ("stopped", "rejected"):
        await asyncio.wait_for(worker.stop(), 10)
    session._current = None
    session._main_loop = None
    session._dask.clear()


def a_table(home: Path) -> Path:
    data = home.parent / "data"
    data.mkdir(exist_ok=True)
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"x1": rng.normal(size=400), "city": rng.choice(list("abc"), 400)})
    df["y"] = 3 * df.x1 + df.city.map({"a": 0, "b": 1, "c": 2}) + rng.normal(size=400) * 0.1
    df.to_csv(data / "t.csv", index=False)
    return data / "t.csv"


def metadata(home: Path, model_id: str) -> dict[str, Any]:
    return json.loads((home / "models" / model_id / "metadata.json").read_text(encoding="utf-8"))


async def test_train_runs_on_the_cluster_after_use_dask_and_here_after_use_dask_none(
    reference: JobServer, cluster: Any, home: Path
) -> None:
    path = a_table(home)
    # the data folder allowed explicitly: job processes fork from a forkserver started by an earlier test,
    # whose $HOME (the default allowed folder) was that test's
    worker = statsbot_nb.connect(token=reference.issue_token(), url=reference.url, allow=[path.parent])
    await worker.wait_connected(timeout=30)
    said = statsbot_nb.use_dask(cluster)
    assert said == (
        f"Dask: jobs that can run on the cluster at {cluster.scheduler_address} go there from the current "
        "worker's next job on; the rest run on this machine, and each job's notes say where it ran."
    )
    assert repr(said) == str(said)  # a notebook shows the sentence, not a quoted string
    assert worker.settings.dask_scheduler == cluster.scheduler_address and worker.settings.dask_local
    params = {
        "file_path": str(path),
        "target_column": "y",
        "feature_columns": ["x1", "city"],
        "model_type": "linear",
        "task_type": "regression",
    }
    on_cluster = await reference.run_job("train", params, timeout=240)
    assert on_cluster.success, on_cluster.error
    assert on_cluster.data is not None
    trained_on = metadata(home, on_cluster.data["model_id"])["trained_on"]
    assert trained_on["where"] == "dask" and trained_on["scheduler"] == cluster.scheduler_address
    assert trained_on["rows"] == 400 and trained_on["workers"] == 2
    assert any(n.startswith("Trained on the Dask cluster") for n in on_cluster.data["notes"])
    model_id = on_cluster.data["model_id"]
    parts = await reference.run_job(
        "predict", {"model_id": model_id, "file_path": str(path), "output_layout": "per_partition"}, timeout=240
    )
    assert parts.success, parts.error
    assert parts.data is not None and parts.data["predictions_count"] == 400
    assert parts.data["notes"][0].startswith(f"Predicted on the Dask cluster at {cluster.scheduler_address}")
    assert sorted(p.name for p in Path(parts.data["output_file"]).iterdir()) == ["part-00000.csv"]

    assert (
        statsbot_nb.use_dask(None)
        == "Dask is off: every job runs on this machine from the current worker's next job on."
    )
    assert worker.settings.dask_scheduler is None and not worker.settings.dask_local
    here = await reference.run_job("train", params, timeout=240)
    assert here.success, here.error
    assert here.data is not None
    assert "trained_on" not in metadata(home, here.data["model_id"])
    assert not any("Dask" in n for n in here.data.get("notes", []))


async def test_a_choice_made_before_connect_applies_to_the_next_worker(reference: JobServer, cluster: Any) -> None:
    said = statsbot_nb.use_dask(cluster.scheduler_address, shared_dirs=["/mnt/shared"])
    assert said.endswith(
        "go there once you connect(); the rest run on this machine, and each job's notes say where it ran."
    )
    worker = statsbot_nb.connect(token=reference.issue_token(), url=reference.url)
    assert worker.settings.dask_scheduler == cluster.scheduler_address
    assert worker.settings.dask_shared_dirs == (Path("/mnt/shared"),)
    assert not worker.settings.dask_local  # an address alone: the path rule decides from the address
    await worker.wait_connected(timeout=30)


def test_a_client_gives_its_scheduler_address(cluster: Any) -> None:
    from distributed import Client

    from statsbot_nb.usedask import scheduler_address

    with Client(cluster, set_as_default=False) as client:
        assert scheduler_address(client) == (cluster.scheduler_address, True)  # its cluster is a LocalCluster
    assert scheduler_address(" tcp://10.1.2.3:8786 ") == ("tcp://10.1.2.3:8786", False)


def test_an_in_process_cluster_needs_a_tcp_address() -> None:
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as inproc:
        assert inproc.scheduler_address.startswith("inproc://")
        with pytest.raises(ConfigError, match=r"in-process address.*protocol='tcp'"):
            statsbot_nb.use_dask(inproc)
    assert session._dask == {}  # nothing was changed


def test_a_remote_address_without_shared_folders_says_what_it_can_read() -> None:
    said = statsbot_nb.use_dask("tcp://10.1.2.3:8786")
    assert said.endswith(
        "That cluster reads only files under shared_dirs=[...] (folders its workers see at the same path)."
    )
    with pytest.raises(ConfigError, match="not a Dask scheduler address"):
        statsbot_nb.use_dask("tcp://host 8786")
    with pytest.raises(ConfigError, match="not a value of type int"):
        statsbot_nb.use_dask(8786)
