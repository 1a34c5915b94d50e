"""``xgboost_*`` (and ``lightgbm_*``, see :mod:`.lgbm`) on the cluster through the libraries' own Dask modules.

The cluster's workers build the same design matrix the local trainer would (the preprocessor fitted
from whole-table statistics, labels as codes of the whole table's classes), and ``xgboost.dask`` trains
one booster across them. The booster comes back here and is loaded into a plain ``XGBRegressor`` /
``XGBClassifier``, so the saved model is the ordinary pipeline every other tool reads.

Progress and cancel travel through the cluster itself:

- :class:`ClusterRounds`, a training callback that runs on every cluster worker, publishes each round's
  number and evaluation metrics on a per-job topic (rank 0 only, at most a few times a second); the job
  process here subscribes to it and reports the rounds as the job's progress.
- The same callback stops the fit when this job's task on the worker has been cancelled (the job
  process was killed or closed its client, so the scheduler dropped the task). The workers agree on it
  with one ``allreduce`` per round, so they all stop at the same round and none waits for the others.
"""

from __future__ import annotations

import contextlib
import queue
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost
from xgboost import collective

from ..errors import JobError
from ..ml.paramcheck import first_line
from .connect import cluster_failure, watch_for
from .prep import Layout, class_values, coerce, label_codes, transform

#: the fewest seconds between two published rounds (the job's progress throttles again)
PUBLISH_EVERY = 0.25
#: seconds without a new round before the scheduler is asked whether it still answers and has workers
QUIET_CHECK = 2.0
#: the design matrix's target column (feature columns are f0, f1, ...)
TARGET = "__target__"
_DROPPED = ("cancelled", "released", "forgotten", "error")


def task_dropped() -> bool:
    """True when the scheduler no longer wants the task this thread runs (its client went away)."""
    try:
        from distributed import get_worker
        from distributed.worker import thread_state

        worker = get_worker()
    except (ImportError, ValueError):
        return False
    task = worker.state.tasks.get(getattr(thread_state, "key", None))
    return task is None or task.state in _DROPPED


class ClusterRounds(xgboost.callback.TrainingCallback):
    """Runs on each cluster worker: publishes rounds on ``topic`` and stops when the job was dropped."""

    def __init__(self, topic: str, total: int) -> None:
        super().__init__()
        self.topic, self.total, self.last = topic, total, 0.0

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        """Agree with every worker whether to stop, then publish the round (rank 0, throttled)."""
        stop = np.array([int(task_dropped())], dtype=np.int32)
        agreed = (
            bool(collective.allreduce(stop, collective.Op.MAX)[0]) if collective.is_distributed() else bool(stop[0])
        )
        done = epoch + 1
        now = time.monotonic()
        if collective.get_rank() == 0 and (now - self.last >= PUBLISH_EVERY or done == self.total or agreed):
            self.last = now
            from distributed import get_worker

            metrics = {name: {m: float(v[-1]) for m, v in log.items()} for name, log in evals_log.items()}
            with contextlib.suppress(ValueError):
                get_worker().log_event(self.topic, {"round": done, "total": self.total, "metrics": metrics})
        return agreed


def design_rows(part: pd.DataFrame, layout: Layout, pre: Any, held_out_rows: bool, start: int = 0) -> pd.DataFrame:
    """The preprocessed training (or held-out) rows of one partition, with the target (codes for classes)."""
    X, target, held_out, _ = coerce(part, layout, start)
    rows = held_out if held_out_rows else ~held_out
    Xt = transform(pre, X[rows]).astype("float32")
    frame = pd.DataFrame(Xt, columns=[f"f{i}" for i in range(Xt.shape[1])])
    if layout.classes is not None:
        frame[TARGET] = label_codes(class_values(target[rows], layout), layout.classes).astype("int32")
    else:
        frame[TARGET] = target[rows].to_numpy(dtype="float64")
    return frame


def fit_boosted(
    client: Any,
    address: str,
    parts: list[Any],
    starts: list[int],
    layout: Layout,
    pre: Any,
    plan: Any,
    report: Callable[[float, str], None],
    timeout: float,
    rows: tuple[list[int], list[int]] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Train ``plan`` (an XGBoost estimator) on the cluster; the fitted local estimator and its eval log.

    The fit runs in a thread of this process while this one reports the rounds the cluster publishes;
    a cluster that publishes no round and has not answered, or had no worker, for ``timeout`` seconds ends
    the job with a sentence (:class:`statsbot_nb.cluster.connect.ClusterWatch`). ``parts`` are the table's
    partitions (delayed) and ``starts`` the numbers of their first rows in the file; ``rows`` are the
    training and held-out row counts per partition: partitions with none are left out of that set (a
    worker holding only empty ones would have nothing to train on).
    """
    import dask.dataframe as dd
    from dask import delayed

    width = len(pre.get_feature_names_out())
    meta = pd.DataFrame({**{f"f{i}": np.zeros(0, "float32") for i in range(width)}, TARGET: np.zeros(0)})
    if layout.classes is not None:
        meta[TARGET] = meta[TARGET].astype("int32")

    def design(held_out_rows: bool, counts: list[int] | None) -> Any:
        """The design rows of the same delayed partitions every other pass reads, each told its first row
        number (a partition number from ``map_partitions`` is renumbered when partitions are selected).
        Persisted: lightgbm.dask loses the dependencies of a collection built from delayed parts."""
        chosen = [i for i in range(len(parts)) if counts is None or counts[i]]
        tasks = [delayed(design_rows)(parts[i], layout, pre, held_out_rows, starts[i]) for i in chosen]
        return client.persist(dd.from_delayed(tasks, meta=meta, verify_meta=False))

    train = design(False, rows[0] if rows else None)
    test = design(True, rows[1] if rows else None)
    features = [f"f{i}" for i in range(width)]
    params = {k: v for k, v in plan.estimator.get_params().items() if k not in ("callbacks", "n_jobs")}
    total = int(params.get("n_estimators") or 100)
    topic = f"statsbot-rounds-{uuid.uuid4().hex}"
    classify = layout.classes is not None
    sets = {"training": (train[features], train[TARGET]), "validation": (test[features], test[TARGET])}
    if plan.family == "lightgbm":
        from .lgbm import LightRounds, lightgbm_estimator

        est = lightgbm_estimator(params, classify)
        # arrays, as the local model is fitted on: a model fitted on named columns warns when given arrays
        arrays = {k: (x.to_dask_array(), y.to_dask_array()) for k, (x, y) in sets.items()}
        fit_args: dict[str, Any] = {
            "eval_set": list(arrays.values()),
            "eval_names": list(arrays),
            "callbacks": [LightRounds(topic, total)],
        }
        X, y = arrays["training"]
    else:
        import xgboost.dask as xgb_dask

        cls = xgb_dask.DaskXGBClassifier if classify else xgb_dask.DaskXGBRegressor
        est = cls(**params, callbacks=[ClusterRounds(topic, total)])
        fit_args = {"eval_set": list(sets.values()), "verbose": False}
        X, y = sets["training"]
    est.client = client
    rounds: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
    client.subscribe_topic(topic, lambda event: rounds.put(event[1]))
    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            with client.as_current(), warnings.catch_warnings():  # xgboost.dask looks up "the" client
                warnings.simplefilter("ignore")  # lightgbm.dask: "n_jobs will be ignored", eval_set renamed
                est.fit(X, y, **fit_args)
        except BaseException as exc:  # handed to the reporting thread, which raises it
            outcome["error"] = exc

    thread = threading.Thread(target=fit, name="statsbot-xgboost-dask", daemon=True)
    report(0.0, f"Boosting round 0/{total} on the cluster")
    thread.start()
    shown = 0
    watch = watch_for(client, address, timeout=timeout)
    quiet_since = time.monotonic()
    while thread.is_alive():
        thread.join(0.2)
        with contextlib.suppress(queue.Empty):
            while True:  # every worker may publish (LightGBM): report each round once, in order
                done = int(rounds.get_nowait()["round"])
                if done > shown:
                    shown = done
                    report(done / total, f"Boosting round {done}/{total} on the cluster")
                    watch.progressed()
                    quiet_since = time.monotonic()
        if time.monotonic() - quiet_since >= QUIET_CHECK:  # no round for a while: is the cluster still there?
            watch.check()  # a JobError once it has not answered, or had no worker, for ``timeout`` seconds
            quiet_since = time.monotonic()
    with contextlib.suppress(Exception):
        client.unsubscribe_topic(topic)
    error = outcome.get("error")
    if isinstance(error, JobError):  # a sentence from a partition (the table changed while training)
        raise error
    settings = xgboost.core.XGBoostError | ValueError | TypeError | NotImplementedError  # gblinear: not distributed
    if isinstance(error, settings) or type(error).__name__ == "LightGBMError":
        raise JobError(f"{plan.model_type} could not be trained with these settings: {first_line(error)}") from error
    if error is not None:
        raise cluster_failure(address, error) from error
    n_jobs = plan.estimator.get_params().get("n_jobs")
    if plan.family == "lightgbm":
        from .lgbm import local_lightgbm

        return local_lightgbm(est, n_jobs), {k: dict(v) for k, v in est.evals_result_.items()}
    names = dict(zip(("validation_0", "validation_1"), sets, strict=True))
    return _local_estimator(est, plan.estimator), {names.get(k, k): v for k, v in est.evals_result().items()}


def _local_estimator(est: Any, unfitted: Any) -> Any:
    """The cluster's booster in a plain ``XGBClassifier`` / ``XGBRegressor`` with the job's settings (a copy
    of ``unfitted``, the local estimator): a bare wrapper would predict with the defaults, ``missing=nan``
    among them, where the trees were grown with the job's ``missing`` (no callbacks, no feature names)."""
    from sklearn.base import clone

    local = clone(unfitted)
    with tempfile.TemporaryDirectory(prefix="statsbot-xgb-") as folder:
        path = Path(folder) / "model.json"
        est.save_model(path)
        local.load_model(path)
    local.get_booster().feature_names = None  # the local pipeline hands it arrays, as for a local model
    local.set_params(callbacks=None)
    return local


__all__ = ["ClusterRounds", "design_rows", "fit_boosted"]
