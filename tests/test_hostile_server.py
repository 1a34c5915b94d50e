"""A hostile server gets an answer every time and reads, writes, deletes or unpickles nothing it may not."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import pickle
import statistics
from pathlib import Path
from typing import Any

import extras
import numpy as np
import pandas as pd
import pytest
from legacy_server import LegacyServer
from test_e2e_jobs import make_tables, train_params

from statsbot_nb.context import JobSettings


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with a hash of its content."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


@pytest.fixture
def layout(tmp_path: Path, home: Path) -> dict[str, Path]:
    """The user's home with data, a folder outside every allowed one, and the model store."""
    user = home.parent
    data = make_tables(user / "data")
    outside = tmp_path / "outside"
    outside.mkdir()
    pd.DataFrame({"secret": [1, 2]}).to_csv(outside / "secret.csv", index=False)
    hidden = user / ".private"
    hidden.mkdir()
    pd.DataFrame({"x1": [1.0], "x2": [1.0], "city": ["Paris"]}).to_csv(hidden / "hidden.csv", index=False)
    (user / "data" / ".hidden.csv").write_text("x1,x2,city\n1,2,Paris\n")
    (user / "data" / "escape.csv").symlink_to(outside / "secret.csv")
    (user / "data" / "device.csv").symlink_to("/dev/zero")
    os.mkfifo(user / "data" / "pipe.csv")
    (user / "data" / "empty.csv").write_text("")
    (user / "data" / "notes.txt").write_text("hello")
    (user / "data" / "script.py").write_text("print('x')")
    big = pd.DataFrame({"x1": np.arange(40_000.0), "x2": 1.0, "city": "Paris", "price": 1.0})
    big.to_csv(user / "data" / "big.csv", index=False)
    return {"user": user, "data": user / "data", "outside": outside, "csv": data["csv"], "home": home}


async def _answer(server: LegacyServer, action: str, params: Any) -> dict[str, Any]:
    job_id = await server.send_job(action, params)
    return await server.wait_result(job_id, 60)


async def test_hostile_requests_are_refused_with_a_sentence(legacy: LegacyServer, make_worker, layout, home):
    settings = JobSettings(home=home, cwd=layout["user"], max_file_bytes=200_000)
    worker = make_worker(legacy.url, legacy.token, settings=settings, actions=None)
    worker.start()
    await worker.wait_connected(timeout=10)
    trained = await _answer(legacy, "train", train_params(layout["csv"], "price", "ridge", "regression"))
    assert trained["success"], trained.get("error")
    model_id = trained["data"]["model_id"]
    # a pickle planted next to the store, and a copy of the store's own model tampered with
    evil = home / "evil"
    evil.mkdir()
    (evil / "model.pkl").write_bytes(pickle.dumps({"not": "a model"}))
    (evil / "metadata.json").write_text(json.dumps({"model_id": "evil"}))
    before_outside = snapshot(layout["outside"])
    before_store = snapshot(home / "models")
    d, o = layout["data"], layout["outside"]

    refusals: list[tuple[str, dict[str, Any], str]] = [
        ("file_info", {"file_path": str(o / "secret.csv")}, "outside"),
        ("file_info", {"file_path": str(d / ".." / ".." / "outside" / "secret.csv")}, "outside"),
        ("file_info", {"file_path": "/etc/passwd"}, ""),
        ("train", train_params(d / "escape.csv", "price", "ridge", "regression"), "outside"),
        ("train", train_params(layout["user"] / ".private" / "hidden.csv", "price", "ridge", "regression"), "hidden"),
        ("train", train_params(d / ".hidden.csv", "price", "ridge", "regression"), "hidden"),
        ("train", train_params(d / "pipe.csv", "price", "ridge", "regression"), "regular file"),
        ("train", train_params(d / "device.csv", "price", "ridge", "regression"), ""),
        ("train", train_params(d / "empty.csv", "price", "ridge", "regression"), "empty"),
        ("train", train_params(d / "big.csv", "price", "ridge", "regression"), "limit"),
        ("train", train_params(d / "notes.txt", "price", "ridge", "regression"), ".csv"),
        ("train", train_params(d / "script.py", "price", "ridge", "regression"), ".csv"),
        ("train", train_params(d, "price", "ridge", "regression"), ""),
        ("predict", {"model_id": "../evil", "file_path": str(layout["csv"])}, "model id"),
        ("predict", {"model_id": "evil", "file_path": str(layout["csv"])}, ""),
        ("predict", {"model_id": "/etc/passwd", "file_path": str(layout["csv"])}, "model id"),
        ("delete_model", {"model_id": "../../outside"}, "model id"),
        ("delete_model", {"model_id": ".."}, "model id"),
        ("set_model_name", {"model_id": "../evil", "custom_name": "x"}, "model id"),
        ("save_file", {"file_path": str(o / "dropped.csv"), "dataframe": [{"a": 1}]}, "outside"),
        ("save_file", {"file_path": str(home / "models" / "x.csv"), "dataframe": [{"a": 1}]}, ""),
        ("save_file", {"file_path": str(d / "evil.py"), "dataframe": [{"a": 1}]}, ".csv"),
        (
            "join",
            {
                "operation": "inner_join",
                "file_paths": [str(layout["csv"]), str(layout["csv"])],
                "key_columns": ["x1"],
                "output_path": str(o / "j.csv"),
                "filters": [],
            },
            "outside",
        ),
        (
            "join",
            {
                "operation": "concat",
                "file_paths": [str(layout["csv"]), str(layout["csv"])],
                "key_columns": [],
                "output_path": str(d / "j.csv"),
                "filters": ["__import__('os').system('touch /tmp/pwned') == 1"],
            },
            "",
        ),
        (
            "join",
            {
                "operation": "concat",
                "file_paths": [str(layout["csv"]), str(layout["csv"])],
                "key_columns": [],
                "output_path": str(d / "j.csv"),
                "filters": ["x1 > 0; import os"],
            },
            "",
        ),
        ("load_data", {"file_path": str(layout["csv"])}, "privacy share"),
        (
            "train",
            train_params(
                layout["csv"],
                "price",
                "catboost_regression",
                "regression",
                hyperparameters={"output_borders": str(o / "victim.txt")},
            ),
            "cannot be set",
        ),
        (
            "train",
            train_params(
                layout["csv"],
                "price",
                "catboost_regression",
                "regression",
                hyperparameters={"input_borders": "/etc/shadow"},
            ),
            "cannot be set",
        ),
        (
            "train",
            train_params(
                layout["csv"], "price", "random_forest", "regression", hyperparameters={"criterion": "/etc/passwd"}
            ),
            "file path",
        ),
        ("train", "not an object", "params"),
        ("train", {"file_path": 42}, "file_path"),
    ]
    # the catboost cases need the [boost] extra (without it they are listed at the end of the run)
    refusals = extras.installed_cases(refusals, lambda r: r[1].get("model_type", "") if isinstance(r[1], dict) else "")
    for action, params, phrase in refusals:
        answer = await _answer(legacy, action, params)
        assert answer["success"] is False, (action, params, answer)
        error = answer["error"]
        assert "Traceback" not in error and len(error) < 600, error
        assert phrase.lower() in error.lower(), (action, params, error)
    # nothing outside the allowed folders and nothing in the store changed
    assert snapshot(layout["outside"]) == before_outside
    assert snapshot(home / "models") == before_store
    assert not (d / "j.csv").exists() and not Path("/tmp/pwned").exists()
    # tampering with a stored model makes the worker refuse to unpickle it
    pkl = home / "models" / model_id / "model.pkl"
    pkl.write_bytes(pkl.read_bytes() + b"\x00")
    tampered = await _answer(legacy, "predict", {"model_id": model_id, "file_path": str(layout["csv"])})
    assert not tampered["success"] and "checksum" in tampered["error"].lower()
    ok = await _answer(legacy, "list_models", {})
    assert ok["success"] and worker.state == "connected" and legacy.connections == 1
    assert legacy.violations == []


async def test_forest_training_leaves_the_worker_responsive(legacy: LegacyServer, make_worker, home):
    rng = np.random.default_rng(1)
    n = 30_000
    frame = pd.DataFrame(
        {"x1": rng.normal(size=n), "x2": rng.normal(size=n), "city": rng.choice(["a", "b", "c"], size=n)}
    )
    frame["price"] = frame.x1 * 2 + rng.normal(size=n)
    data = home.parent / "data"
    data.mkdir(exist_ok=True)
    frame.to_csv(data / "big.csv", index=False)
    worker = make_worker(legacy.url, legacy.token, actions=None, settings=JobSettings(home=home, cwd=home.parent))
    worker.start()
    await worker.wait_connected(timeout=10)
    params = train_params(
        data / "big.csv", "price", "random_forest", "regression", hyperparameters={"n_estimators": 120}
    )
    job_id = await legacy.send_job("train", params)
    await legacy.wait_for(lambda: len(legacy.progress.get(job_id, [])) >= 3, timeout=60)
    listed_id = await legacy.send_job("list_models", {})
    rtts: list[float] = []
    while job_id not in legacy.results:
        assert legacy.ws is not None
        rtts.append(await asyncio.wait_for(await legacy.ws.ping(), 5))
        await asyncio.sleep(0.05)
    result = legacy.results[job_id][0]
    assert result["success"], result.get("error")
    train_done = legacy.frames.index(result)
    listed = legacy.results[listed_id][0]
    assert legacy.frames.index(listed) < train_done, "list_models must be answered during the training"
    stamps = [t for t, _ in legacy.progress[job_id]]
    values = [m["progress"] for _, m in legacy.progress[job_id]]
    assert len(stamps) >= 8 and values == sorted(values)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert max(gaps) < 0.6 * (stamps[-1] - stamps[0]), "progress must arrive throughout, not in a burst"
    assert len(rtts) >= 5
    assert max(rtts) < 1.0, f"ping stalled: max {max(rtts):.3f} s, median {statistics.median(rtts):.4f}"
    assert legacy.violations == []
