"""``xgboost_*`` on a real ``distributed.LocalCluster`` (issue 14): exact metrics from sums, the whole table's
classes, rounds reported from the cluster, a cancel that stops the cluster's fit, and a cluster that goes away.
Skipped without the ``[dask]`` and ``[boost]`` extras (failed under CI)."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from statsbot_nb.errors import JobError
from statsbot_nb.ml.train import TrainOptions

pytestmark = [pytest.mark.extra("dask"), pytest.mark.extra("xgboost"), pytest.mark.extra("lightgbm")]
LIBRARIES = ("xgboost", "lightgbm")


def churn(n: int = 4000, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "plan": rng.choice(list("xyz"), n)})
    df.loc[::13, "a"] = np.nan
    score = df.a.fillna(0) + df.b + (df.plan == "x") + rng.normal(size=n) * 0.5
    df["churned"] = np.where(score > 0.3, "yes", "no")
    df["tier"] = np.digitize(score, [-0.5, 0.8]) + 1  # 1, 2, 3 as numbers
    return df


def fit(path: Path, address: str, models: Path, target: str, model_type: str, **kw: Any) -> Any:
    from statsbot_nb.cluster.train import train_on_cluster

    options = TrainOptions(target, ["a", "b", "plan"], model_type, None, kw.pop("hyper", {"n_estimators": 30}))
    return train_on_cluster(path, options, address, models, kw.pop("progress", lambda *a: None), **kw)


def held_out(path: Path, target: str, classes: tuple[Any, ...], numeric: bool) -> np.ndarray:
    """The rows (of the file, in order) the cluster's hash split holds out."""
    from statsbot_nb.cluster.prep import Layout, coerce, read_frame
    from statsbot_nb.ml.preprocess import ColumnRoles

    layout = Layout(ColumnRoles(("a", "b"), ("plan",)), target, numeric, 0.2, 1.0, classes)
    frame = read_frame(path, ["a", "b", "plan", target]).compute(scheduler="sync")
    _, _, mask, _ = coerce(frame, layout)
    return mask


@pytest.mark.parametrize("library", LIBRARIES)
def test_binary_classifier_metrics_equal_scikit_learns_on_the_held_out_rows(
    tmp_path: Path, cluster: Any, library: str
) -> None:
    from statsbot_nb.ml import evaluate
    from statsbot_nb.ml.store import load_model

    df = churn()
    df.to_csv(tmp_path / "t.csv", index=False)
    got = fit(
        tmp_path / "t.csv",
        cluster.scheduler_address,
        tmp_path / "m",
        "churned",
        f"{library}_binary_classification",
        npartitions=4,
    )
    pipe, encoders, meta = load_model(tmp_path / "m", got.model_id)
    assert list(encoders["churned"].classes_) == ["no", "yes"]
    assert type(pipe[-1]).__name__ == {"xgboost": "XGBClassifier", "lightgbm": "LGBMClassifier"}[library]
    assert not pipe[-1].get_params().get("callbacks")
    saved = (tmp_path / "m" / got.model_id / "model.pkl").read_bytes()
    assert b"ClusterRounds" not in saved and b"LightRounds" not in saved and b"Dask" not in saved
    mask = held_out(tmp_path / "t.csv", "churned", ("no", "yes"), False)
    test = df[mask]
    y = encoders["churned"].transform(test.churned)
    pred = pipe.predict(test[["a", "b", "plan"]])
    proba = pipe.predict_proba(test[["a", "b", "plan"]])
    expected = evaluate.classification_metrics(y, pred, proba, 2)
    assert set(got.metrics) == set(expected)
    for key, value in expected.items():
        assert got.metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert got.metrics["accuracy"] > 0.8
    assert got.dataset_stats["class_distribution"]["yes"]["count"] == int((df.churned == "yes").sum())
    assert meta["trained_on"]["partitions"] == 4 and meta["trained_on"]["rows"] == len(df)
    curve = meta["learning_curve"]
    assert set(curve) == {"rounds", "training", "validation"} and curve["rounds"] == list(range(1, 31))
    assert [len(v) for v in curve["validation"].values()] == [30]


def test_multiclass_numbers_keep_every_class_even_one_with_a_single_row(tmp_path: Path, cluster: Any) -> None:
    """Class 9 has one row; whichever side the hash puts it, the model must know it (it trains)."""
    from statsbot_nb.ml import evaluate
    from statsbot_nb.ml.store import load_model

    df = churn(3000)
    df.loc[7, "tier"] = 9
    df.to_csv(tmp_path / "t.csv", index=False)
    got = fit(
        tmp_path / "t.csv",
        cluster.scheduler_address,
        tmp_path / "m",
        "tier",
        "xgboost_multiclass_classification",
        npartitions=3,
    )
    pipe, encoders, _ = load_model(tmp_path / "m", got.model_id)
    assert list(encoders["tier"].classes_) == [1, 2, 3, 9]
    assert pipe[-1].n_classes_ == 4
    assert set(got.dataset_stats["class_distribution"]) == {"1", "2", "3", "9"}
    mask = held_out(tmp_path / "t.csv", "tier", (1, 2, 3, 9), True)
    mask[7] = False  # its only row trains, as the local split moves it
    test = df[mask]
    y = encoders["tier"].transform(test.tier)
    X = test[["a", "b", "plan"]]
    expected = evaluate.classification_metrics(y, pipe.predict(X), pipe.predict_proba(X), 4)
    for key in ("accuracy", "precision", "recall", "f1", "log_loss", "brier_score", "roc_auc"):
        assert got.metrics[key] == pytest.approx(expected[key], rel=1e-5, abs=1e-6), key


def test_rounds_are_reported_from_the_cluster(tmp_path: Path, cluster: Any) -> None:
    churn(2000).to_csv(tmp_path / "t.csv", index=False)
    events: list[tuple[float, str, str]] = []
    fit(
        tmp_path / "t.csv",
        cluster.scheduler_address,
        tmp_path / "m",
        "b",
        "xgboost_regression",
        hyper={"n_estimators": 400, "max_depth": 8},
        progress=lambda *e: events.append(e),
    )
    rounds = [int(m.split()[2].split("/")[0]) for _, m, _ in events if m.startswith("Boosting round")]
    assert rounds[-1] == 400 and len(set(rounds)) >= 3, rounds
    assert rounds == sorted(rounds)
    percents = [p for p, m, _ in events if m.startswith("Boosting round")]
    assert percents == sorted(percents) and 20 <= percents[0] < percents[-1] <= 75


CHILD = """
import sys
from pathlib import Path
from statsbot_nb.cluster.train import train_on_cluster
from statsbot_nb.ml.train import TrainOptions
options = TrainOptions("b", ["a", "plan"], sys.argv[4], None, {"n_estimators": 100000, "max_depth": 10})
train_on_cluster(
    Path(sys.argv[1]), options, sys.argv[2], Path(sys.argv[3]), lambda *a: print(*a, flush=True), npartitions=4
)
"""


def busy(client: Any) -> int:
    return sum(client.run(lambda dask_worker: len(dask_worker.state.executing)).values())


@pytest.mark.parametrize("library", LIBRARIES)
def test_killing_the_job_process_stops_the_clusters_fit(tmp_path: Path, library: str) -> None:
    """The job process dies (a cancel kills it): the workers' fit stops at the next round, not at round 10^5."""
    from distributed import Client, LocalCluster

    churn(3000).to_csv(tmp_path / "t.csv", index=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as local:
        with Client(local) as client:
            script = tmp_path / "child.py"
            script.write_text(textwrap.dedent(CHILD))
            child = subprocess.Popen(
                [
                    sys.executable,
                    str(script),
                    str(tmp_path / "t.csv"),
                    local.scheduler_address,
                    str(tmp_path / "m"),
                    f"{library}_regression",
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                for line in child.stdout or ():
                    if "Boosting round" in line and not line.split("round ")[1].startswith("0/"):
                        break
                assert busy(client) >= 1  # the cluster is boosting (on each worker that holds a partition)
            finally:
                os.kill(child.pid, signal.SIGKILL)
                child.wait()
            deadline = time.monotonic() + 30
            while busy(client) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert busy(client) == 0, "the cluster kept fitting for a job that no longer exists"


def test_a_cluster_that_goes_away_mid_fit_fails_the_job_with_a_sentence(tmp_path: Path) -> None:
    from distributed import LocalCluster

    churn(3000).to_csv(tmp_path / "t.csv", index=False)
    local = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0")
    started = threading.Event()

    def progress(percent: float, message: str, stage: str) -> None:
        if message.startswith("Boosting round 1"):
            started.set()

    def close_when_fitting() -> None:
        started.wait(120)
        local.close()

    closer = threading.Thread(target=close_when_fitting)
    closer.start()
    began = time.monotonic()
    try:
        with pytest.raises(JobError, match=r"Dask cluster .* went away"):
            fit(
                tmp_path / "t.csv",
                local.scheduler_address,
                tmp_path / "m",
                "b",
                "xgboost_regression",
                hyper={"n_estimators": 100000},
                progress=progress,
                timeout=5.0,
            )
    finally:
        started.set()
        closer.join()
        local.close()
    assert started.is_set() and time.monotonic() - began < 90


def test_the_train_handler_sends_xgboost_to_the_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cluster: Any
) -> None:
    from dataclasses import replace

    from jobenv import job_env

    from statsbot_nb.context import JobContext
    from statsbot_nb.handlers.predict import predict
    from statsbot_nb.handlers.train import train

    env = job_env(tmp_path, monkeypatch)
    churn(1500).to_csv(env.data / "t.csv", index=False)
    ctx = JobContext(replace(env.settings, dask_scheduler=cluster.scheduler_address), lambda *e: None, min_interval=0)
    data = train(
        {
            "file_path": str(env.data / "t.csv"),
            "target_column": "churned",
            "feature_columns": ["a", "b", "plan"],
            "model_type": "xgboost_binary_classification",
            "task_type": "classification",
            "hyperparameters": {"n_estimators": 20},
        },
        ctx,
    )
    assert any("Trained on the Dask cluster" in note for note in data["notes"])
    out = predict({"model_id": data["model_id"], "file_path": str(env.data / "t.csv")}, env.ctx)
    assert out["predictions_count"] == 1500
    pipe = pickle.loads((env.settings.models_dir / data["model_id"] / "model.pkl").read_bytes())
    assert pipe[-1].n_classes_ == 2
    first = pd.read_csv(env.data / "t.csv").head(len(out["predictions_sample"]))[["a", "b", "plan"]]
    # the bot's numbers for a binary model: the probability of the second class ("yes"), as for a local model
    np.testing.assert_allclose(out["predictions_sample"], pipe.predict_proba(first)[:, 1], rtol=1e-5)
    assert out["predictions_meaning"] == "probability of the second class in sorted order"
    written = pd.read_csv(out["output_file"])
    assert set(written.prediction) == {"yes", "no"}  # the user's labels, decoded here


def skewed(kind: str) -> pd.DataFrame:
    df = churn(4000, seed=5)
    if kind == "class":
        return df.sort_values("churned")
    if kind == "number":
        return df.sort_values("b")
    df.loc[df.index[-300:], "plan"] = "w"  # a plan only the last partition has
    return df


@pytest.mark.parametrize(
    ("kind", "sentence"),
    [
        ("class", "partition 1 of 4 has no training row of class 'yes'"),
        ("number", "'b' in partition 1 of 4 averages"),
        ("category", "has no row with 'plan' = 'w'"),
    ],
)
def test_lightgbm_refuses_partitions_that_would_make_a_wrong_model(
    tmp_path: Path, cluster: Any, kind: str, sentence: str
) -> None:
    """Each worker bins features from its own rows: a partition that is not a fair sample is refused, and
    the same rows shuffled train (so the refusal is about the partitions, not the data)."""
    df = skewed(kind)
    df.to_csv(tmp_path / "skewed.csv", index=False)
    target, model_type = ("churned", "lightgbm_binary_classification")
    if kind == "number":
        target, model_type = "a", "lightgbm_regression"
    with pytest.raises(JobError, match=r"not trained on the Dask cluster: .*xgboost_\*") as refused:
        fit(tmp_path / "skewed.csv", cluster.scheduler_address, tmp_path / "m", target, model_type, npartitions=4)
    assert sentence in str(refused.value)
    df.sample(frac=1, random_state=0).to_csv(tmp_path / "shuffled.csv", index=False)
    got = fit(tmp_path / "shuffled.csv", cluster.scheduler_address, tmp_path / "m", target, model_type, npartitions=4)
    assert got.model_id
