"""One ``train`` job on a Dask cluster, end to end: read, split, fit from sums, score, save here.

The job process (the runner's, as for every training job) connects a client, sends one small task per
partition and pass, and gathers sums back; only statistics and a bounded sample of held-out rows cross
the network. The passes: column types and row count, training statistics (categories, medians, means),
the fit, then the held-out metrics. The model is saved in the local store like any other, with
``trained_on`` metadata saying where and on how much.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import JobError
from ..ml import estimators, evaluate, preprocess
from ..ml.constants import Progress
from ..ml.train import MIN_ROWS, TrainedModel, TrainOptions, save_trained
from . import NORMAL_EQUATION_TYPES, where_note
from .connect import open_client, run_partitions
from .linear import fitted_estimator, metric_sums, metrics_from_sums, normal_sums, solve
from .prep import (
    SAMPLE_ROWS,
    Layout,
    column_stats,
    fitted_preprocessor,
    merge_stats,
    merge_type_counts,
    read_frame,
    type_counts,
)


def train_on_cluster(
    path: Path,
    options: TrainOptions,
    address: str,
    models_dir: Path,
    progress: Progress,
    *,
    timeout: float = 30.0,
    custom_name: str | None = None,
    notes: list[str] | None = None,
    npartitions: int | None = None,
) -> TrainedModel:
    """Train ``options`` on ``path`` with the cluster at ``address``; the model is saved in ``models_dir``.

    ``npartitions`` repartitions the table first (tests use it to show the split and the categories do
    not depend on the partitioning). Raises :class:`JobError` with a sentence for anything a person can fix
    and for a cluster that went away.
    """
    from dask import delayed

    started = time.monotonic()
    if options.model_type not in NORMAL_EQUATION_TYPES:
        raise JobError(f"{options.model_type} has no cluster training yet; linear and ridge do.")
    with open_client(address, timeout) as client:
        workers = len(client.scheduler_info().get("workers", {}))
        ddf = read_frame(path, [*options.feature_columns, options.target_column])
        if npartitions:
            ddf = ddf.repartition(npartitions=npartitions)
        parts = ddf.to_delayed()

        def report(lo: float, hi: float) -> Any:
            def step(done: int, total: int, what: str) -> None:
                progress(lo + (hi - lo) * done / total, f"{what}: partition {done} of {total}", "fitting")

            return step

        progress(2, f"Reading {path.name} on the cluster ({len(parts)} partitions)", "loading")
        counted = run_partitions(client, address, [delayed(type_counts)(p) for p in parts], report(2, 10), "Types")
        rows, not_numeric = merge_type_counts(counted)
        roles = preprocess.ColumnRoles(
            tuple(c for c in options.feature_columns if not_numeric[c] == 0),
            tuple(c for c in options.feature_columns if not_numeric[c] > 0),
        )
        task = options.task_type or estimators.REGRESSION
        plan = estimators.build_estimator(options.model_type, task, options.hyperparameters)
        if not_numeric[options.target_column] > 0:
            raise JobError(f"{options.target_column!r} holds text, so {options.model_type} cannot regress on it.")
        layout = Layout(roles, options.target_column, True, options.test_size, min(1.0, SAMPLE_ROWS / max(rows, 1)))
        stats_parts = run_partitions(
            client, address, [delayed(column_stats)(p, layout) for p in parts], report(10, 20), "Statistics"
        )
        stats = merge_stats(stats_parts, layout)
        if stats["n_train"] + stats["n_test"] < MIN_ROWS:
            raise JobError(
                f"Only {stats['n_train'] + stats['n_test']} row(s) have a target value; training needs {MIN_ROWS}."
            )
        if stats["n_test"] == 0 or stats["n_train"] < 2:
            raise JobError("There are too few rows to keep some for testing; add rows or change test_size.")
        pre = fitted_preprocessor(layout, plan.scale_numeric, stats)
        progress(20, f"Fitting {options.model_type} on {stats['n_train']:,} rows", "fitting")
        fit_started = time.monotonic()
        sums = run_partitions(
            client, address, [delayed(normal_sums)(p, layout, pre) for p in parts], report(20, 75), "Fitting"
        )
        alpha = float(plan.hyperparameters.get("alpha", 1.0)) if options.model_type == "ridge" else None
        coef, intercept = solve(sums, alpha)
        model = fitted_estimator(options.model_type, plan.estimator.get_params(), coef, intercept)
        training_time = round(time.monotonic() - fit_started, 3)
        scored = run_partitions(
            client, address, [delayed(metric_sums)(p, layout, model, pre) for p in parts], report(75, 90), "Scoring"
        )
    from sklearn.pipeline import Pipeline

    trained_on = {"where": "dask", "scheduler": address, "workers": workers, "partitions": len(parts), "rows": rows}
    result = _result(options, plan, layout, stats, Pipeline([("preprocess", pre), ("model", model)]), scored)
    result["training_time"] = training_time
    notes = [*(notes or []), *plan.notes, where_note(trained_on)]
    return save_trained(
        options, plan, result, models_dir, progress, path.name, custom_name, notes, started, {"trained_on": trained_on}
    )


def _result(
    options: TrainOptions, plan: Any, layout: Layout, stats: dict[str, Any], pipeline: Any, scored: list[dict[str, Any]]
) -> dict[str, Any]:
    """What :func:`statsbot_nb.ml.train.save_trained` saves, from the cluster's sums and samples."""
    from ..ml.train import dataset_stats

    y_sample = np.concatenate([p["y_sample"] for p in scored])
    pred_sample = np.concatenate([p["pred_sample"] for p in scored])
    X_sample = np.concatenate([p["X_sample"] for p in scored])
    pre, model = pipeline.named_steps["preprocess"], pipeline.named_steps["model"]
    sources = preprocess.output_feature_sources(pre, layout.roles)
    importances, method = evaluate.feature_importances(
        model, X_sample, y_sample, sources, options.feature_columns, "r2"
    )
    n_rows = stats["n_train"] + stats["n_test"]
    ds = dataset_stats(
        y_sample, None, stats["n_train"], stats["n_test"], len(options.feature_columns), stats["dropped"]
    )
    ds["n_rows"] = n_rows
    return {
        "pipeline": pipeline,
        "label_encoder": None,
        "labels": None,
        "metrics": metrics_from_sums(scored),
        "stratified": False,
        "split": {"test_size": options.test_size, "method": "row hash", "stratified": False},
        "importances": importances,
        "importance_method": method,
        "artefacts": evaluate.artefacts(y_sample, pred_sample, None, None),
        "preprocessing": preprocess.describe(
            layout.roles, plan.scale_numeric, stats["dropped"], options.target_column, None, options.model_type
        ),
        "dataset_stats": ds,
    }


__all__ = ["train_on_cluster"]
