"""Training on a Dask cluster against training here, on the same table: the worker started with
``--dask-local 2`` (a ``LocalCluster`` of two worker processes) against the worker without it (issue 14).

    python benchmarks/run.py --only dask            # 1,000,000 rows, CSV and Parquet (some minutes)
    python benchmarks/run.py --only dask --smoke    # 5,000 rows, one round: the case still runs

Both sides are timed as the bot feels a job, from the server queueing it to holding the result, in
alternating rounds. On one machine the cluster cannot be faster: its two workers share the cores a local
fit uses, every pass over the table goes through the scheduler, and the table is read once per pass (four
passes for linear and ridge). The ratio is printed as measured; there is no target to meet, only the figure.

To compare another model type on the cluster, add it to :data:`MODELS` (``"xgboost_regression"``: the table
is a regression table already).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from harness import NOTES, OURS, Peer, Row, alternate, median, seconds, stage_profile

#: Model types measured on both sides; one line adds another (it must be a regression model type).
MODELS: tuple[str, ...] = ("ridge", "xgboost_regression")
FEATURES = [f"f{i}" for i in range(8)] + ["city"]
#: The worker under test with a LocalCluster of its own for its whole life.
DASK = OURS + " --dask-local 2"
#: The progress message that starts each stage of a ``train`` job here (ml/train.py), and its label.
LOCAL_STAGES = {
    "Checking": "start-up (and reading, when its message was throttled)",
    "Reading": "reading",
    "Preparing": "preprocessing",
    "Fitting": "fitting",
    "Evaluating": "scoring",
    "Measuring": "importances",
    "Saving": "saving",
}
#: The last progress message of each pass on the cluster (cluster/train.py), and the pass it ends.
CLUSTER_PASSES = {
    "Reading": "start-up",
    "Types:": "pass 1 (types, rows)",
    "Statistics:": "pass 2 (statistics)",
    "Fitting:": "pass 3 (X'X, X'y)",
    "Scoring:": "pass 4 (held-out metrics)",
}


def make_regression_table(folder: Path, rows: int) -> dict[str, Path]:
    """The table once under ``folder`` (kept across runs with ``--keep``): eight numbers, a city of 20, a
    target linear in them; as CSV (five significant digits, about 75 bytes a row) and as Parquet."""
    paths = {"CSV": folder / f"dask_{rows}.csv", "Parquet": folder / f"dask_{rows}.parquet"}
    if all(p.exists() for p in paths.values()):
        return paths
    rng = np.random.default_rng(14)
    frame = pd.DataFrame(rng.normal(size=(rows, 8)).astype("float32"), columns=FEATURES[:-1])
    cities = np.array([f"city{i:02d}" for i in range(20)])
    codes = rng.integers(0, len(cities), rows)
    frame["city"] = cities[codes]
    weights = np.linspace(-2, 2, 8, dtype="float32")
    frame["y"] = frame[FEATURES[:-1]].to_numpy() @ weights + codes * 0.1 + rng.normal(size=rows).astype("float32")
    for kind, path in paths.items():
        tmp = path.with_name(path.name + ".tmp")
        if kind == "CSV":
            frame.to_csv(tmp, index=False, float_format="%.5g")
        else:
            frame.to_parquet(tmp, index=False)
        tmp.replace(path)
    return paths


def train_params(path: Path, model_type: str) -> dict[str, Any]:
    """A regression ``train`` job as the bot sends it."""
    return {
        "file_path": str(path),
        "target_column": "y",
        "feature_columns": list(FEATURES),
        "model_type": model_type,
        "task_type": "regression",
        "hyperparameters": None,
    }


def pass_profile(runs: list[list[tuple[float, str]]]) -> str:
    """Median seconds of each pass on the cluster: from the end of the previous one to its last message."""
    spans: dict[str, list[float]] = {}
    for marks in runs:
        previous = 0.0
        for prefix, label in CLUSTER_PASSES.items():
            end = max((t for t, message in marks if message.startswith(prefix)), default=None)
            if end is not None:
                spans.setdefault(label, []).append(end - previous)
                previous = end
        spans.setdefault("saving and the result", []).append(marks[-1][0] - previous)
    return ", ".join(f"{label} {seconds(median(v))}" for label, v in spans.items())


def on_cluster(data: dict[str, Any] | None) -> bool:
    """Whether a ``train`` result says the model was trained on the Dask cluster."""
    return any(str(note).startswith("Trained on the Dask cluster") for note in (data or {}).get("notes", []))


def side(peer: Peer, params: dict[str, Any], runs: list[list[tuple[float, str]]], cluster: bool) -> Any:
    """A side for :func:`alternate`: one ``train`` job on ``peer``, its progress marks kept in ``runs``; a job
    that did not train where this side says (``cluster``) stops the benchmark rather than mislabel a figure."""

    async def measure() -> float:
        runs.append([])
        elapsed, result = await peer.job("train", params, marks=runs[-1])
        if on_cluster(result.data) != cluster:
            where = "here" if cluster else "on the cluster"
            raise RuntimeError(f"{peer.name}: {params['model_type']} on {params['file_path']} trained {where}")
        return elapsed

    return measure


async def run(root: Path, rounds: int, smoke: bool, upstream: str | None) -> list[Row]:
    """The rows comparing ``--dask-local 2`` with training here."""
    if importlib.util.find_spec("distributed") is None:
        raise RuntimeError("the dask case needs the dask extra: pip install -e '.[dask]'")
    data = root / "data"
    data.mkdir(exist_ok=True)
    rows_n = 5_000 if smoke else 1_000_000
    tables = make_regression_table(data, rows_n)
    rows: list[Row] = []
    async with Peer("ours-here", OURS, root, data) as here, Peer("ours-dask", DASK, root, data) as dask:
        for model_type in MODELS:
            for kind, table in tables.items():
                params = train_params(table, model_type)
                marks: dict[str, list[list[tuple[float, str]]]] = {"dask": [], "here": []}
                sides = {
                    "dask": side(dask, params, marks["dask"], cluster=True),
                    "here": side(here, params, marks["here"], cluster=False),
                }
                s = await alternate(rounds, sides)
                rows.append(
                    Row(
                        f"train {model_type}, {rows_n:,} rows {kind}, --dask-local 2 vs here",
                        seconds(median(s["dask"])),
                        seconds(median(s["here"])),
                        median(s["dask"]) / median(s["here"]),
                        "none: shown (1 machine)",
                        "this machine, no Dask",
                    )
                )
                measured = {name: runs[1:] or runs for name, runs in marks.items()}  # the warm-up round left out
                NOTES.append(
                    f"{model_type} {rows_n:,} rows {kind}, on the cluster: {pass_profile(measured['dask'])}; "
                    f"here: {stage_profile(measured['here'], LOCAL_STAGES)}"
                )
    NOTES.append(
        "Dask on one machine: its workers share the cores a local fit uses, so it can only add time (the "
        "scheduler, moving sums and samples between processes, one read of the table per pass). On a real "
        "cluster the table sits on storage every worker reads (--dask-shared-dir, an object store), each pass "
        "reads its partitions in parallel on as many machines, and what crosses the network is a few sums per "
        "partition: it pays off once the table no longer fits one machine's memory, or reading it is the bottleneck."
    )
    return rows
