"""Training on a real ``distributed.LocalCluster`` (issue 14): the wrong-model traps, the handler's switch,
the path rule and a cluster that is not there. Skipped without the ``[dask]`` extra (failed under CI)."""

from __future__ import annotations

import pickle
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from jobenv import JobEnv, job_env

from statsbot_nb.context import JobContext
from statsbot_nb.errors import JobError
from statsbot_nb.handlers.train import train
from statsbot_nb.ml.train import TrainOptions

pytestmark = pytest.mark.extra("dask")
CITIES = list("abcdefghij")


def table(n: int = 3000, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n) * 3, "city": rng.choice(CITIES, n)})
    df.loc[::17, "x1"] = np.nan
    effect = df.city.map({c: i for i, c in enumerate(CITIES)})
    df["y"] = 2 * df.x1.fillna(0) - df.x2 + effect + rng.normal(size=n) * 0.1
    return df


def cluster_train(path: Path, address: str, models: Path, model_type: str = "linear", **kw: Any) -> Any:
    from statsbot_nb.cluster.train import train_on_cluster

    options = TrainOptions("y", ["x1", "x2", "city"], model_type, None, kw.pop("hyper", None))
    return train_on_cluster(path, options, address, models, lambda *a: None, **kw)


def load(models: Path, model_id: str) -> Any:
    return pickle.loads((models / model_id / "model.pkl").read_bytes())


def held_out_rows(path: Path, npartitions: int) -> set[tuple[Any, ...]]:
    """The rows the cluster's split holds out, read partition by partition."""
    from statsbot_nb.cluster.prep import Layout, coerce, read_frame
    from statsbot_nb.ml.preprocess import ColumnRoles

    layout = Layout(ColumnRoles(("x1", "x2"), ("city",)), "y", True, 0.2, 1.0)
    ddf = read_frame(path, ["x1", "x2", "city", "y"]).repartition(npartitions=npartitions)
    rows: set[tuple[Any, ...]] = set()
    start = 0
    for part in ddf.to_delayed():
        frame = part.compute(scheduler="sync")
        _, target, held, _ = coerce(frame, layout, start)  # the hash is of each row's number in the file
        start += len(frame)
        rows |= set(zip(target[held].round(9), frame.loc[target.index[held], "city"], strict=True))
    return rows


def test_split_is_by_row_not_by_partition(tmp_path: Path, cluster: Any) -> None:
    df = table()
    df.to_csv(tmp_path / "t.csv", index=False)
    one, seven = held_out_rows(tmp_path / "t.csv", 1), held_out_rows(tmp_path / "t.csv", 7)
    assert one == seven
    assert 0.15 * len(df) < len(one) < 0.25 * len(df)
    a = cluster_train(tmp_path / "t.csv", cluster.scheduler_address, tmp_path / "m", npartitions=1)
    b = cluster_train(tmp_path / "t.csv", cluster.scheduler_address, tmp_path / "m", npartitions=7)
    assert a.dataset_stats["n_test"] == b.dataset_stats["n_test"] == len(one)
    np.testing.assert_allclose(
        load(tmp_path / "m", a.model_id)[-1].coef_, load(tmp_path / "m", b.model_id)[-1].coef_, rtol=1e-9
    )


def test_linear_matches_scikit_learn_on_the_same_split(tmp_path: Path, cluster: Any) -> None:
    from sklearn.linear_model import LinearRegression, Ridge

    df = table()
    df.to_csv(tmp_path / "t.csv", index=False)
    held = held_out_rows(tmp_path / "t.csv", 3)
    is_test = np.array([(round(y, 9), c) in held for y, c in zip(df.y, df.city, strict=True)])
    for model_type, reference in (("linear", LinearRegression()), ("ridge", Ridge(alpha=3.0))):
        got = cluster_train(
            tmp_path / "t.csv",
            cluster.scheduler_address,
            tmp_path / "m",
            model_type,
            npartitions=3,
            hyper={"alpha": 3.0} if model_type == "ridge" else None,
        )
        pipe = load(tmp_path / "m", got.model_id)
        train = pd.read_csv(tmp_path / "t.csv")[~is_test]
        Xt = pipe[:-1].transform(train[["x1", "x2", "city"]])
        reference.fit(Xt, train.y)
        np.testing.assert_allclose(pipe[-1].coef_, reference.coef_, rtol=1e-6, atol=1e-8)
        assert pipe[-1].intercept_ == pytest.approx(reference.intercept_, rel=1e-6)
        test = pd.read_csv(tmp_path / "t.csv")[is_test]
        mse = float(np.mean((pipe.predict(test[["x1", "x2", "city"]]) - test.y) ** 2))
        assert got.metrics["mse"] == pytest.approx(mse, rel=1e-6)
        assert got.metrics["r2"] > 0.99


def test_categories_come_from_the_whole_table(tmp_path: Path, cluster: Any) -> None:
    """A city seen only in the last partition is still a category of the model, with its own coefficient."""
    df = table(2000).sort_values("city").reset_index(drop=True)  # 'j' only at the end: the last partition
    df.to_csv(tmp_path / "t.csv", index=False)
    got = cluster_train(tmp_path / "t.csv", cluster.scheduler_address, tmp_path / "m", npartitions=7)
    pipe = load(tmp_path / "m", got.model_id)
    onehot = pipe[0].named_transformers_["cat"].named_steps["onehot"]
    assert list(onehot.categories_[0]) == CITIES
    rows = pd.DataFrame({"x1": [0.0, 0.0], "x2": [0.0, 0.0], "city": ["a", "j"]})
    assert np.diff(pipe.predict(rows))[0] == pytest.approx(9.0, abs=0.1)


def test_categories_past_the_cap_group_like_the_local_encoder(tmp_path: Path, cluster: Any) -> None:
    from statsbot_nb.ml.preprocess import MAX_CATEGORIES

    rng = np.random.default_rng(3)
    names = [f"c{i:02d}" for i in range(40)]
    weights = np.arange(40, 0, -1) / np.arange(40, 0, -1).sum()
    df = pd.DataFrame(
        {"x1": rng.normal(size=4000), "x2": rng.normal(size=4000), "city": rng.choice(names, 4000, p=weights)}
    )
    df["y"] = df.x1 + rng.normal(size=4000)
    df.to_csv(tmp_path / "t.csv", index=False)
    got = cluster_train(tmp_path / "t.csv", cluster.scheduler_address, tmp_path / "m", npartitions=5)
    onehot = load(tmp_path / "m", got.model_id)[0].named_transformers_["cat"].named_steps["onehot"]
    local = onehot.__class__(handle_unknown="ignore", sparse_output=False, max_categories=MAX_CATEGORIES)
    local.fit(df[["city"]])  # on all rows; the cluster's counts are of the training rows, so compare sizes
    assert len(onehot.get_feature_names_out()) == len(local.get_feature_names_out()) == MAX_CATEGORIES


def test_labels_are_encoded_in_the_whole_tables_order() -> None:
    from statsbot_nb.cluster.prep import label_codes

    classes = ("cat", "dog", "eel")
    assert list(label_codes(pd.Series(["eel", "dog"]), classes)) == [2, 1]  # not [1, 0], a partition's own
    with pytest.raises(JobError, match="class label"):
        label_codes(pd.Series(["fox"]), classes)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> JobEnv:
    return job_env(tmp_path, monkeypatch)


def dask_ctx(env: JobEnv, address: str, **kw: Any) -> JobContext:
    settings = replace(env.settings, dask_scheduler=address, **kw)
    return JobContext(settings, lambda p, m, s: env.events.append((p, m, s)), min_interval=0)


PARAMS = {"target_column": "y", "feature_columns": ["x1", "x2", "city"], "task_type": "regression"}


def test_the_train_handler_trains_on_the_cluster_and_says_so(env: JobEnv, cluster: Any) -> None:
    table().to_csv(env.data / "t.csv", index=False)
    data = train(
        {**PARAMS, "file_path": str(env.data / "t.csv"), "model_type": "ridge"},
        dask_ctx(env, cluster.scheduler_address),
    )
    assert any("Trained on the Dask cluster" in note for note in data["notes"])
    from statsbot_nb.jobs import summarize

    assert summarize("train", data).endswith("(on the Dask cluster)")  # the job log's line says where it ran
    meta = __import__("json").loads((env.settings.models_dir / data["model_id"] / "metadata.json").read_text())
    assert meta["trained_on"]["where"] == "dask" and meta["trained_on"]["rows"] == 3000
    assert meta["trained_on"]["workers"] == 2
    assert any("partition" in message for _, message, _ in env.events)
    from statsbot_nb.handlers.predict import predict

    out = predict(
        {"model_id": data["model_id"], "file_path": str(env.data / "t.csv"), "output_path": str(env.data / "p.csv")},
        env.ctx,
    )
    assert out


def test_a_forest_runs_here_with_a_sentence_pointing_to_xgboost(env: JobEnv, cluster: Any) -> None:
    table(300).to_csv(env.data / "t.csv", index=False)
    params = {**PARAMS, "file_path": str(env.data / "t.csv"), "model_type": "random_forest"}
    data = train(params, dask_ctx(env, cluster.scheduler_address))
    assert any("not on the Dask cluster" in n and "xgboost_*" in n for n in data["notes"])
    from statsbot_nb.jobs import summarize

    assert summarize("train", data).endswith("(on this machine, not the Dask cluster)")


def test_a_remote_cluster_cannot_read_a_file_only_here(env: JobEnv) -> None:
    table(300).to_csv(env.data / "t.csv", index=False)
    params = {**PARAMS, "file_path": str(env.data / "t.csv"), "model_type": "linear"}
    with pytest.raises(JobError, match=r"only on this machine.*--dask-shared-dir"):
        train(params, dask_ctx(env, "tcp://10.255.255.1:8786"))


def test_no_scheduler_is_a_sentence_not_a_hang(env: JobEnv) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    table(300).to_csv(env.data / "t.csv", index=False)
    params = {**PARAMS, "file_path": str(env.data / "t.csv"), "model_type": "linear"}
    started = time.monotonic()
    with pytest.raises(JobError, match="No Dask scheduler answered"):
        train(params, dask_ctx(env, f"tcp://127.0.0.1:{port}", dask_timeout=2.0))
    assert time.monotonic() - started < 20


def test_worker_processes_train_the_same_model(tmp_path: Path, cluster: Any) -> None:
    from distributed import LocalCluster

    table().to_csv(tmp_path / "t.csv", index=False)
    threads = cluster_train(tmp_path / "t.csv", cluster.scheduler_address, tmp_path / "m", npartitions=4)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as procs:
        processes = cluster_train(tmp_path / "t.csv", procs.scheduler_address, tmp_path / "m", npartitions=4)
    np.testing.assert_allclose(
        load(tmp_path / "m", threads.model_id)[-1].coef_, load(tmp_path / "m", processes.model_id)[-1].coef_
    )
