"""``lightgbm_*`` on the cluster, only where LightGBM's Dask training is safe, and refused with a sentence elsewhere.

Why a policy: in LightGBM's data-parallel training each worker finds the histogram bins of some features
from its own rows only, and those bins are then used by all. When a worker's rows are not a fair sample
of the table the model is silently worse or wrong: a category absent from a worker's rows gives its
one-hot column a single bin (the feature is lost), a class absent from a partition breaks the objective
(LightGBM's own documentation calls both expected), and a file sorted by a column gives bins over a
slice of its range. So, before fitting, :func:`skew_reason` looks at the per-partition statistics the
cluster already gathered and refuses (a :class:`JobError` naming the column and partition) when

- a partition with training rows lacks a class of the target;
- a partition with training rows lacks a category the model encodes (categories never reach LightGBM
  as native categoricals: they are one-hot encoded like the local model, but the bins still come from
  each worker's rows);
- a numeric column's mean in a partition is more than :data:`MAX_MEAN_SHIFT` standard deviations from
  the whole table's (a file sorted or grouped by it).

``xgboost_*`` has none of these problems (its quantile sketch is merged across workers), so the
sentence points there. Progress and cancel: :class:`LightRounds` runs on every worker, publishes rounds
and stops that worker's fit when the job's task was dropped; LightGBM has no per-round agreement, so a
worker that stopped one round before another lets that one wait at most LightGBM's socket ``time_out``
(:data:`TIME_OUT_MINUTES`) before it fails too.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np

from ..errors import JobError
from .prep import Layout

#: how far (in whole-table standard deviations) a partition's mean may sit from the table's
MAX_MEAN_SHIFT = 0.5
#: LightGBM's network time-out: a worker left waiting for the others fails after this many minutes
TIME_OUT_MINUTES = 1
PUBLISH_EVERY = 0.25


def skew_reason(
    parts: list[dict[str, Any]], layout: Layout, stats: dict[str, Any], kept: dict[str, set[Any]]
) -> str | None:
    """None when every partition with training rows looks like the table, else the sentence saying why not.

    ``parts`` are the per-partition results of :func:`statsbot_nb.cluster.prep.column_stats`, ``stats``
    their merge, ``kept`` the categories the one-hot encoder keeps per categorical column.
    """
    used = [(i, p) for i, p in enumerate(parts) if p["n_train"] > 0]
    total = len(parts)
    for i, part in used:
        where = f"partition {i + 1} of {total}"
        if layout.classes is not None:
            missing = [c for c in layout.classes if not part.get("__train_labels__", {}).get(c)]
            if missing and len(used) > 1:
                return f"{where} has no training row of class {missing[0]!r} in {layout.target!r}"
        for col in layout.roles.categorical:
            absent = sorted(kept[col] - set(part[col]["counts"]), key=str)
            if absent and len(used) > 1:
                return f"{where} has no row with {col!r} = {absent[0]!r}"
        for col in layout.roles.numeric:
            whole = stats[col]
            if whole["n"] < 2 or part[col]["n"] == 0:
                continue
            mean = whole["mean"]
            std = np.sqrt(whole["m2"] / whole["n"])
            shift = abs(part[col]["mean"] - mean)
            if std > 0 and shift > MAX_MEAN_SHIFT * std and len(used) > 1:
                return f"{col!r} in {where} averages {shift / std:.2f} standard deviations away from the whole table"
    return None


def refuse(model_type: str, reason: str) -> JobError:
    """The sentence for a table LightGBM's Dask training would get wrong."""
    return JobError(
        f"{model_type} was not trained on the Dask cluster: {reason}, and LightGBM's Dask training bins each "
        "feature from one worker's rows, so the model would be silently worse. Use xgboost_* (it merges its "
        "bins across the cluster), or shuffle the file's rows and train again."
    )


class LightRounds:
    """A LightGBM callback run on each cluster worker: publishes rounds, stops when the job's task was dropped."""

    order = 30  # after LightGBM's own callbacks

    def __init__(self, topic: str, total: int) -> None:
        self.topic, self.total, self.last = topic, total, 0.0

    def __call__(self, env: Any) -> None:
        """Publish this round (throttled); raise LightGBM's early stop when the job no longer exists."""
        import lightgbm

        from .boost import task_dropped

        done = env.iteration - env.begin_iteration + 1
        now = time.monotonic()
        if now - self.last >= PUBLISH_EVERY or done == self.total:
            self.last = now
            metrics: dict[str, dict[str, float]] = {}
            for data, name, value, *_ in env.evaluation_result_list or ():
                metrics.setdefault(str(data), {})[str(name)] = float(value)
            with contextlib.suppress(ImportError, ValueError):
                from distributed import get_worker

                get_worker().log_event(self.topic, {"round": done, "total": self.total, "metrics": metrics})
        if task_dropped():
            raise lightgbm.callback.EarlyStopException(env.iteration, env.evaluation_result_list or [])


def lightgbm_estimator(params: dict[str, Any], classify: bool) -> Any:
    """LightGBM's Dask estimator with the job's settings and a bounded network time-out."""
    import lightgbm.dask as lgb_dask

    cls = lgb_dask.DaskLGBMClassifier if classify else lgb_dask.DaskLGBMRegressor
    return cls(**{**params, "time_out": TIME_OUT_MINUTES})


def local_lightgbm(est: Any, n_jobs: Any) -> Any:
    """The cluster's model as a plain ``LGBMClassifier`` / ``LGBMRegressor``."""
    local = est.to_local()
    local.set_params(n_jobs=n_jobs)
    with contextlib.suppress(AttributeError, TypeError):
        local.set_params(time_out=120)  # LightGBM's default again: the saved model runs here, not on a network
    return local


__all__ = ["LightRounds", "lightgbm_estimator", "local_lightgbm", "refuse", "skew_reason"]
