"""Predicting on a real ``distributed.LocalCluster`` (issue 14): the same predictions as the local ``predict``
row for row, one file or one per partition, the path rule, the small-file rule, a changed input and a failed
job that leaves nothing behind. Skipped without the ``[dask]`` extra (failed under CI)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from jobenv import JobEnv, job_env

from statsbot_nb.cluster import predict as cluster_predict
from statsbot_nb.context import JobContext
from statsbot_nb.errors import JobError
from statsbot_nb.handlers.predict import predict
from statsbot_nb.handlers.train import train

pytestmark = pytest.mark.extra("dask")
CITIES = ["Aarau", "Basel", "Chur", "Davos", "Zürich"]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> JobEnv:
    return job_env(tmp_path, monkeypatch)


def table(n: int = 3000, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "id": np.arange(n),
            "x1": rng.normal(size=n).round(6),
            "x2": rng.normal(size=n) * 3,
            "city": rng.choice(CITIES, n),
            "note": rng.choice(["a, quoted", "plain", ""], n),
        }
    )
    df.loc[::13, "x1"] = np.nan
    df.loc[::29, "city"] = np.nan
    effect = df.city.map({c: i for i, c in enumerate(CITIES)}).fillna(2)
    df["y"] = 2 * df.x1.fillna(0) - df.x2 + effect + rng.normal(size=n) * 0.5
    df["level"] = pd.cut(df.y, [-np.inf, -2, 2, np.inf], labels=["low", "mid", "high"]).astype(str)
    df["hot"] = np.where(df.y > 2, "yes", "no")
    return df


def trained(env: JobEnv, path: Path, model_type: str, target: str, task: str) -> str:
    params = {
        "file_path": str(path),
        "target_column": target,
        "feature_columns": ["x1", "x2", "city"],
        "model_type": model_type,
        "task_type": task,
    }
    return train(params, env.ctx)["model_id"]


def dask_ctx(env: JobEnv, address: str, job_id: str = "job_1", **kw: Any) -> JobContext:
    settings = replace(env.settings, dask_scheduler=address, **kw)
    return JobContext(settings, lambda p, m, s: env.events.append((p, m, s)), min_interval=0, job_id=job_id)


def read_output(path: Path) -> pd.DataFrame:
    """The predictions file, or the parts of a folder concatenated in name order."""
    if path.is_dir():
        names = sorted(os.listdir(path))
        assert all(n.startswith("part-") and n.endswith(".csv") for n in names), names
        return pd.concat([pd.read_csv(path / n) for n in names], ignore_index=True)
    return pd.read_csv(path)


def assert_same_predictions(local: pd.DataFrame, cluster: pd.DataFrame) -> None:
    assert list(cluster.columns) == list(local.columns)
    assert len(cluster) == len(local)
    # every column, exactly: the predictions and probabilities, and the input rows in input order
    pd.testing.assert_frame_equal(cluster, local, check_exact=True)


MODELS = [
    ("ridge", "y", "regression"),
    ("random_forest", "y", "regression"),
    ("logistic", "level", "classification"),
    pytest.param("xgboost_classification", "hot", "classification", marks=pytest.mark.extra("xgboost")),
]


@pytest.mark.parametrize(("model_type", "target", "task"), MODELS)
@pytest.mark.parametrize("blocksize", [9_000, 50_000, 1 << 30])
def test_cluster_predictions_equal_local_ones_row_for_row(
    env: JobEnv, cluster: Any, monkeypatch: pytest.MonkeyPatch, model_type: str, target: str, task: str, blocksize: int
) -> None:
    df = table()
    df.to_csv(env.data / "t.csv", index=False)
    model_id = trained(env, env.data / "t.csv", model_type, target, task)
    local = predict({"model_id": model_id, "file_path": str(env.data / "t.csv")}, env.ctx)
    monkeypatch.setattr(cluster_predict, "SMALL_FILE_BYTES", 0)
    monkeypatch.setattr(cluster_predict, "BLOCK_BYTES", blocksize)
    for layout in ("one_file", "per_partition"):
        params = {"model_id": model_id, "file_path": str(env.data / "t.csv"), "output_layout": layout}
        got = predict(params, dask_ctx(env, cluster.scheduler_address, f"job_{layout}"))
        assert got["notes"][0].startswith("Predicted on the Dask cluster")
        partitions = -(-(env.data / "t.csv").stat().st_size // blocksize)
        assert f"{partitions} partition(s)" in got["notes"][0]
        assert_same_predictions(read_output(Path(local["output_file"])), read_output(Path(got["output_file"])))
        for key in ("predictions_sample", "predictions_count", "dataframe_rows", "dataframe_columns"):
            assert got[key] == local[key], key
        assert got["predictions_meaning"] == local["predictions_meaning"]
        assert got["dataframe_sample"] is None and got["predictions_count"] == 3000
        assert set(got) == set(local) | {"notes"}  # every key the bot reads, with real values
        if layout == "per_partition":
            names = sorted(os.listdir(got["output_file"]))
            assert len(names) == partitions == len([n for n in names if n.startswith("part-")])
            assert Path(got["output_file"]).parent == env.data
            tag = model_type.replace("_", "").upper()
            assert Path(got["output_file"]).name == f"predictions_{tag}_{target.upper()}_job_per_partition"
    if target == "level":
        out = read_output(Path(got["output_file"]))
        assert set(out.prediction) == {"low", "mid", "high"}
        assert {"proba_high", "proba_low", "proba_mid"} <= set(out.columns)
    if target == "hot":  # two classes: the bot gets the second class's probability
        assert got["predictions_meaning"] == "probability of the second class in sorted order"


@pytest.fixture
def regression(env: JobEnv) -> str:
    """A ridge model trained here on :func:`table` (the file is ``t.csv``)."""
    table().to_csv(env.data / "t.csv", index=False)
    return trained(env, env.data / "t.csv", "ridge", "y", "regression")


def sharing(env: JobEnv, ctx: JobContext) -> JobContext:
    return JobContext(ctx.settings.with_privacy("share"), job_id=ctx.job_id)


def test_parquet_row_groups_are_the_partitions(env: JobEnv, cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    df = table(2500)
    df.to_csv(env.data / "t.csv", index=False)
    model_id = trained(env, env.data / "t.csv", "logistic", "level", "classification")
    df.to_parquet(env.data / "t.parquet", row_group_size=600, index=False)
    params = {"model_id": model_id, "file_path": str(env.data / "t.parquet")}
    local = predict(params, sharing(env, env.ctx))
    monkeypatch.setattr(cluster_predict, "SMALL_FILE_BYTES", 0)
    got = predict(params, sharing(env, dask_ctx(env, cluster.scheduler_address)))
    assert "5 partition(s)" in got["notes"][0]
    assert_same_predictions(read_output(Path(local["output_file"])), read_output(Path(got["output_file"])))
    assert got["dataframe_sample"] == local["dataframe_sample"] and len(got["dataframe_sample"]) == 10
    assert got["predictions_sample"] == local["predictions_sample"]


def test_a_file_that_is_not_utf8_is_read_as_latin1_as_here(
    env: JobEnv, cluster: Any, regression: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    df = table()
    (env.data / "latin.csv").write_bytes(df.to_csv(index=False).encode("latin-1"))  # "Zürich" as one byte
    params = {"model_id": regression, "file_path": str(env.data / "latin.csv")}
    local = predict(params, env.ctx)
    monkeypatch.setattr(cluster_predict, "SMALL_FILE_BYTES", 0)
    monkeypatch.setattr(cluster_predict, "BLOCK_BYTES", 20_000)
    got = predict(params, dask_ctx(env, cluster.scheduler_address))
    assert any("not UTF-8, so it was read as Latin-1" in note for note in got["notes"])
    assert_same_predictions(read_output(Path(local["output_file"])), read_output(Path(got["output_file"])))


def test_parts_gathered_and_written_here_equal_the_workers_parts(env: JobEnv, cluster: Any, regression: str) -> None:
    """The branch for a cluster that cannot see the output folder: the parts come back and are written here."""
    from statsbot_nb.handlers.params import policy
    from statsbot_nb.ml.data import read_columns
    from statsbot_nb.ml.predict import load_predictor

    files = policy(env.settings)
    written = {}
    for workers_write in (True, False):
        predictor = load_predictor(env.settings.models_dir, regression)
        with (
            files.open_readable(env.data / "t.csv") as source,
            files.open_output(env.data / f"p{workers_write}.csv") as out,
        ):
            done = cluster_predict.predict_on_cluster(
                source,
                read_columns(source),
                predictor,
                out,
                lambda *a: None,
                address=cluster.scheduler_address,
                layout="per_partition",
                local=True,
                blocksize=25_000,
                workers_write=workers_write,
            )
        assert done.output == env.data / f"p{workers_write}"
        assert ("written by the cluster's workers" in done.notes[-1]) is workers_write
        assert ("gathered and written here" in done.notes[-1]) is not workers_write
        assert done.rows == 3000 and len(done.head_input) == len(done.head_extra) == 10
        written[workers_write] = sorted(os.listdir(done.output))
        assert not (env.data / f"p{workers_write}.csv").exists()
    assert written[True] == written[False] == [f"part-{i:05d}.csv" for i in range(len(written[True]))]
    for name in written[True]:  # no marker, no temporary file left; the same rows in each part
        pd.testing.assert_frame_equal(pd.read_csv(env.data / "pTrue" / name), pd.read_csv(env.data / "pFalse" / name))


def test_worker_processes_write_the_parts_and_predict_the_same(
    env: JobEnv, regression: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distributed import LocalCluster

    local = predict({"model_id": regression, "file_path": str(env.data / "t.csv")}, env.ctx)
    monkeypatch.setattr(cluster_predict, "BLOCK_BYTES", 40_000)
    params = {"model_id": regression, "file_path": str(env.data / "t.csv"), "output_layout": "per_partition"}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as procs:
        got = predict(params, dask_ctx(env, procs.scheduler_address))
    assert "written by the cluster's workers" in got["notes"][-1]
    assert_same_predictions(read_output(Path(local["output_file"])), read_output(Path(got["output_file"])))


def test_a_small_file_predicts_here_with_a_note(env: JobEnv, cluster: Any, regression: str) -> None:
    got = predict(
        {"model_id": regression, "file_path": str(env.data / "t.csv")}, dask_ctx(env, cluster.scheduler_address)
    )
    assert got["notes"] == [
        "Predicted on this machine, not on the Dask cluster: t.csv (0.2 MB) is under 64.0 MB, a single partition, "
        "where the cluster would only add its overhead."
    ]
    from statsbot_nb.jobs import summarize

    assert not summarize("predict", got).endswith("(on the Dask cluster)")


def test_the_job_log_says_a_prediction_ran_on_the_cluster(
    env: JobEnv, cluster: Any, regression: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from statsbot_nb.jobs import summarize

    monkeypatch.setattr(cluster_predict, "SMALL_FILE_BYTES", 0)
    got = predict(
        {"model_id": regression, "file_path": str(env.data / "t.csv")}, dask_ctx(env, cluster.scheduler_address)
    )
    assert summarize("predict", got) == f"3000 predictions -> {got['output_file']} (on the Dask cluster)"
    assert any("Predicted partition 1 of 1" in message for _, message, _ in env.events)


def test_a_remote_cluster_cannot_read_a_file_only_here(
    env: JobEnv, regression: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster_predict, "SMALL_FILE_BYTES", 0)
    for layout in ("one_file", "per_partition"):
        params = {"model_id": regression, "file_path": str(env.data / "t.csv"), "output_layout": layout}
        with pytest.raises(JobError, match=r"only on this machine.*--dask-shared-dir"):
            predict(params, dask_ctx(env, "tcp://10.255.255.1:8786"))
    assert sorted(os.listdir(env.data)) == ["t.csv"]  # nothing written


def test_the_file_policy_applies_first(env: JobEnv, tmp_path: Path, regression: str) -> None:
    outside = tmp_path / "outside.csv"
    table(50).to_csv(outside, index=False)
    with pytest.raises(JobError, match="outside the folders"):
        predict(
            {"model_id": regression, "file_path": str(outside)},
            dask_ctx(env, "tcp://10.255.255.1:8786"),
        )


def test_per_partition_without_a_cluster_writes_one_file_and_says_so(env: JobEnv, regression: str) -> None:
    got = predict(
        {"model_id": regression, "file_path": str(env.data / "t.csv"), "output_layout": "per_partition"}, env.ctx
    )
    assert Path(got["output_file"]).is_file()
    assert any("applies to predictions on a Dask cluster" in note and "one file" in note for note in got["notes"])


def test_an_unknown_output_layout_is_a_sentence(env: JobEnv, regression: str) -> None:
    with pytest.raises(JobError, match=r"output_layout must be 'one_file'.*'per_partition'"):
        predict({"model_id": regression, "file_path": str(env.data / "t.csv"), "output_layout": "many"}, env.ctx)


def test_keras_models_and_excel_files_predict_here() -> None:
    why = cluster_predict.why_not_predict_on_cluster
    assert "keras" in str(why(Path("big.csv"), 10**10, "keras_binary_classification", "one_file"))
    assert "CSV, TSV and Parquet" in str(why(Path("big.xlsx"), 10**10, "ridge", "per_partition"))
    assert why(Path("small.csv"), 10, "ridge", "per_partition") is None  # parts asked for: the cluster cuts them
    assert why(Path("big.parquet"), 10**10, "xgboost_regression", "one_file") is None


def test_a_failed_per_partition_job_leaves_nothing(
    env: JobEnv, cluster: Any, regression: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (env.data / "t.csv").read_text(encoding="utf-8")
    (env.data / "bad.csv").write_text(text + '1,2,3,Basel,"an unclosed quote\n', encoding="utf-8")
    monkeypatch.setattr(cluster_predict, "BLOCK_BYTES", 20_000)
    params = {"model_id": regression, "file_path": str(env.data / "bad.csv"), "output_layout": "per_partition"}
    with pytest.raises(JobError, match=r"Partition \d+ of bad.csv could not be read"):
        predict(params, dask_ctx(env, cluster.scheduler_address))
    assert sorted(os.listdir(env.data)) == ["bad.csv", "t.csv"]  # no folder, no part, no marker


def test_a_file_changed_after_the_check_is_refused(env: JobEnv) -> None:
    from statsbot_nb.cluster.parts import read_part
    from statsbot_nb.handlers.params import policy

    table(200).to_csv(env.data / "t.csv", index=False)
    with policy(env.settings).open_readable(env.data / "t.csv") as source:
        part = cluster_predict.plan_parts(source, ["x1"], 1 << 20, True, "utf-8")[0]
    assert len(read_part(part)) == 200
    with open(env.data / "t.csv", "a", encoding="utf-8") as fh:
        fh.write("1,2,3,Basel,x,4,low\n")
    with pytest.raises(JobError, match="changed while the Dask cluster was reading it"):
        read_part(part)
    (env.data / "t.csv").unlink()
    (env.data / "t.csv").symlink_to(env.data / "elsewhere.csv")
    with pytest.raises(JobError, match="cannot open"):
        read_part(part)


def test_a_worker_writes_only_into_the_folder_the_job_made(tmp_path: Path) -> None:
    from statsbot_nb.cluster.parts import PartSink, write_part

    (tmp_path / "made").mkdir()
    (tmp_path / "made" / ".statsbot-parts-abc").write_text("")
    (tmp_path / "other").mkdir()
    st = os.stat(tmp_path / "made")
    frame = pd.DataFrame({"a": [1, 2]})
    assert (
        write_part([frame], PartSink(str(tmp_path / "made"), ".statsbot-parts-abc", st.st_dev, st.st_ino), 3)
        == "part-00003.csv"
    )
    for sink in (
        PartSink(str(tmp_path / "other"), ".statsbot-parts-abc"),  # no marker there
        PartSink(str(tmp_path / "made"), ".statsbot-parts-abc", st.st_dev, st.st_ino + 1),  # another folder
    ):
        with pytest.raises(JobError, match="was replaced while the job ran"):
            write_part([frame], sink, 4)
    (tmp_path / "link").symlink_to(tmp_path / "made")
    with pytest.raises(JobError, match="cannot open the output folder"):
        write_part([frame], PartSink(str(tmp_path / "link"), ".statsbot-parts-abc"), 5)
    with pytest.raises(JobError, match="already exists"):  # never replaces a part
        write_part([frame], PartSink(str(tmp_path / "made"), ".statsbot-parts-abc"), 3)
    assert sorted(os.listdir(tmp_path / "made")) == [".statsbot-parts-abc", "part-00003.csv"]
    assert os.listdir(tmp_path / "other") == []
