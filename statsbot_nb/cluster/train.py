"""One ``train`` job on a Dask cluster, end to end: read, split, fit from sums, score, save here.

The job process (the runner's, as for every training job) connects a client, sends one small task per
partition and pass, and gathers sums back; only statistics and a bounded sample of held-out rows cross
the network. The passes: column types and row count, training statistics (categories, medians, means),
the fit, then the held-out metrics. The model is saved in the local store like any other, with
``trained_on`` metadata saying where and on how much.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import JobError
from ..ml import estimators, evaluate, preprocess
from ..ml.constants import Progress
from ..ml.curves import learning_curve
from ..ml.train import MIN_ROWS, TrainedModel, TrainOptions, save_trained
from . import NORMAL_EQUATION_TYPES, where_note, why_not_on_cluster
from .connect import open_client, run_partitions
from .linear import fitted_estimator, metric_sums, metrics_from_sums, normal_sums, solve
from .prep import (
    SAMPLE_ROWS,
    Columns,
    Layout,
    column_stats,
    fitted_preprocessor,
    merge_stats,
    pattern_reason,
)
from .score import class_metrics, class_sums
from .source import first_pass, unchanged
from .sums import check_finite, target_quartiles


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
    boosted = options.model_type.startswith(("xgboost_", "lightgbm_"))
    if options.model_type not in NORMAL_EQUATION_TYPES and not boosted:
        raise JobError(f"{options.model_type} has no cluster training yet; linear, ridge, xgboost_* and lightgbm_* do.")
    reason = pattern_reason(path)
    if reason:
        raise JobError(reason)
    with open_client(address, timeout) as client, unchanged(path):
        workers = len(client.scheduler_info().get("workers", {}))

        def report(lo: float, hi: float) -> Any:
            def step(done: int, total: int, what: str) -> None:
                progress(lo + (hi - lo) * done / total, f"{what}: partition {done} of {total}", "fitting")

            return step

        columns = [*options.feature_columns, options.target_column]
        target = options.target_column
        parts, starts, kinds = first_pass(client, address, path, columns, target, npartitions, report(2, 10), progress)
        rows = kinds.rows
        task = options.task_type or estimators.task_from_model_type(options.model_type) or estimators.REGRESSION
        plan = estimators.build_estimator(options.model_type, task, options.hyperparameters)
        reason = why_not_on_cluster(options.model_type, path, plan.estimator.get_params())
        if reason:
            raise JobError(f"{options.model_type} was not trained on the Dask cluster: {reason}")
        classify = plan.task_type == estimators.CLASSIFICATION
        layout = _layout(options, kinds, classify)

        def statistics(layout: Layout, lo: float, hi: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
            tasks = [delayed(column_stats)(p, layout, start) for p, start in zip(parts, starts, strict=True)]
            found = run_partitions(client, address, tasks, report(lo, hi), "Statistics")
            return found, merge_stats(found, layout)

        stats_parts, stats = statistics(layout, 10, 16)
        if stats["n_train"] + stats["n_test"] < MIN_ROWS:
            raise JobError(
                f"Only {stats['n_train'] + stats['n_test']} row(s) of {path.name} have a value in "
                f"{options.target_column!r}; training needs at least {MIN_ROWS}."
            )
        check_finite(stats, layout, regression=not classify, scaled=plan.scale_numeric)
        if classify:
            layout = with_classes(layout, stats, options.target_column)
            if layout.train_only:  # those classes' rows move into training: count again with them there
                labels = stats["labels"]
                stats_parts, stats = statistics(layout, 16, 20)
                stats["labels"] = labels
        if stats["n_test"] == 0 or stats["n_train"] < 2:
            raise JobError("There are too few rows to keep some for testing; add rows or change test_size.")
        pre = fitted_preprocessor(layout, plan.scale_numeric, stats)
        progress(20, f"Fitting {options.model_type} on {stats['n_train']:,} rows", "fitting")
        fit_started = time.monotonic()
        history: dict[str, Any] | None = None
        if options.model_type.startswith("lightgbm_"):
            from .lgbm import refuse, skew_reason

            reason = skew_reason(stats_parts, layout, stats, kept_categories(pre, layout))
            if reason:
                raise refuse(options.model_type, reason)
        if boosted:
            from .boost import fit_boosted

            def rounds(fraction: float, message: str) -> None:
                progress(20 + 55 * max(0.0, min(1.0, fraction)), message, "fitting")

            counts = ([p["n_train"] for p in stats_parts], [p["n_test"] for p in stats_parts])
            model, history = fit_boosted(client, address, parts, starts, layout, pre, plan, rounds, timeout, counts)
        else:
            tasks = [delayed(normal_sums)(p, layout, pre, start) for p, start in zip(parts, starts, strict=True)]
            sums = run_partitions(client, address, tasks, report(20, 75), "Fitting")
            params = plan.estimator.get_params()
            alpha = float(params["alpha"]) if options.model_type == "ridge" else None
            coef, intercept = solve(sums, alpha, bool(params.get("fit_intercept", True)))
            model = fitted_estimator(options.model_type, plan.estimator.get_params(), coef, intercept)
        training_time = round(time.monotonic() - fit_started, 3)
        scorer = class_sums if classify else metric_sums
        tasks = [delayed(scorer)(p, layout, model, pre, start) for p, start in zip(parts, starts, strict=True)]
        scored = run_partitions(client, address, tasks, report(75, 90), "Scoring")
    from sklearn.pipeline import Pipeline

    trained_on = {"where": "dask", "scheduler": address, "workers": workers, "partitions": len(parts), "rows": rows}
    result = _result(options, plan, layout, stats, Pipeline([("preprocess", pre), ("model", model)]), scored)
    result["training_time"] = training_time
    notes = [*(notes or []), *plan.notes, where_note(trained_on)]
    if classify:
        notes.append("The held-out rows are chosen by a hash of each row's number, so the split is not stratified.")
    extra: dict[str, Any] = {"trained_on": trained_on}
    curve = learning_curve(history) if history else None
    if curve:
        extra["learning_curve"] = curve
    return save_trained(options, plan, result, models_dir, progress, path.name, custom_name, notes, started, extra)


def _layout(options: TrainOptions, kinds: Columns, classify: bool) -> Layout:
    """Column roles (a number column holds only numbers in the whole table), the boolean columns, the
    target's kind, and the sample rates: rows for plots, each numeric column's own values for its median."""
    features, target = options.feature_columns, options.target_column
    numeric = tuple(c for c in features if kinds.numeric(c) and not kinds.boolean(c))
    roles = preprocess.ColumnRoles(numeric, tuple(c for c in features if c not in numeric))
    numeric_target = kinds.numeric(target) and not kinds.boolean(target)
    if not classify and not numeric_target:
        raise JobError(f"{target!r} holds text, so {options.model_type} cannot regress on it.")
    booleans = tuple(c for c in [*features, target] if kinds.boolean(c))
    rates = tuple(min(1.0, SAMPLE_ROWS / max(kinds.numbers[c], 1)) for c in numeric)
    rate = min(1.0, SAMPLE_ROWS / max(kinds.rows, 1))
    return Layout(roles, target, numeric_target, options.test_size, rate, booleans=booleans, sample_rates=rates)


def kept_categories(pre: Any, layout: Layout) -> dict[str, set[Any]]:
    """The categories the fitted one-hot encoder gives a column of their own, per categorical column."""
    if not layout.roles.categorical:
        return {}
    onehot = pre.named_transformers_["cat"].named_steps["onehot"]
    infrequent = getattr(onehot, "infrequent_categories_", None) or [None] * len(onehot.categories_)
    return {
        col: set(cats) - set(rare if rare is not None else ())
        for col, cats, rare in zip(layout.roles.categorical, onehot.categories_, infrequent, strict=True)
    }


def with_classes(layout: Layout, stats: dict[str, Any], target: str) -> Layout:
    """``layout`` with the whole table's classes (sorted, as a ``LabelEncoder`` orders them) and those that
    have no training row under the hash split (their rows train, as the local split moves them)."""
    labels = stats["labels"]
    if len(labels) < 2:
        only = next(iter(labels), None)
        raise JobError(f"The target column {target!r} has only one class ({only!r}); a classifier needs at least two.")
    if len(labels) > preprocess.MAX_CLASSES:
        raise JobError(
            f"The target column {target!r} has {len(labels)} different values, too many classes for "
            f"classification (at most {preprocess.MAX_CLASSES}); choose regression for a numeric target."
        )
    classes = tuple(sorted(labels))
    train_only = tuple(c for c in classes if not stats["train_labels"].get(c))
    return replace(layout, classes=classes, train_only=train_only)


def _result(
    options: TrainOptions, plan: Any, layout: Layout, stats: dict[str, Any], pipeline: Any, scored: list[dict[str, Any]]
) -> dict[str, Any]:
    """What :func:`statsbot_nb.ml.train.save_trained` saves, from the cluster's sums and samples."""
    from ..ml.train import dataset_stats

    y_sample = np.concatenate([p["y_sample"] for p in scored])
    pred_sample = np.concatenate([p["pred_sample"] for p in scored])
    X_sample = np.concatenate([p["X_sample"] for p in scored])
    proba = (
        np.concatenate([p["proba_sample"] for p in scored])
        if scored and scored[0].get("proba_sample") is not None
        else None
    )
    pre, model = pipeline.named_steps["preprocess"], pipeline.named_steps["model"]
    sources = preprocess.output_feature_sources(pre, layout.roles)
    classify = layout.classes is not None
    importances, method = evaluate.feature_importances(
        model, X_sample, y_sample, sources, options.feature_columns, "accuracy" if classify else "r2"
    )
    n_rows = stats["n_train"] + stats["n_test"]
    encoder, labels = None, None
    if classify:
        from sklearn.preprocessing import LabelEncoder

        encoder = LabelEncoder()
        boolean = layout.target in layout.booleans
        encoder.classes_ = np.array(
            layout.classes, dtype=bool if boolean else None if layout.numeric_target else object
        )
        labels = preprocess.class_labels(encoder)
        metrics = class_metrics(scored, len(labels))
    else:
        metrics = metrics_from_sums(scored)
    ds = dataset_stats(
        y_sample, labels, stats["n_train"], stats["n_test"], len(options.feature_columns), stats["dropped"]
    )
    ds["n_rows"] = n_rows
    if not classify:  # the whole table's target, not the held-out sample's
        ds.pop("quartiles", None)
        quartiles = target_quartiles(stats)
        if quartiles:
            ds["quartiles"] = quartiles
    if classify:  # the whole table's class counts, not the sample's
        counts = stats["labels"]
        ds["class_distribution"] = {
            str(c): {"count": int(counts[c]), "pct": round(100.0 * counts[c] / n_rows, 1)} for c in layout.classes or ()
        }
    return {
        "pipeline": pipeline,
        "label_encoder": encoder,
        "labels": labels,
        "metrics": metrics,
        "stratified": False,
        "split": {"test_size": options.test_size, "method": "row hash", "stratified": False},
        "importances": importances,
        "importance_method": method,
        "artefacts": evaluate.artefacts(y_sample, pred_sample, proba, labels),
        "preprocessing": preprocess.describe(
            layout.roles, plan.scale_numeric, stats["dropped"], options.target_column, labels, options.model_type
        ),
        "dataset_stats": ds,
    }


__all__ = ["train_on_cluster"]
