"""Training on a Dask cluster (issue 14): which jobs can, and the switch that turns it on.

Off by default: on one machine Dask adds 15-40 % and gives no speed-up, so it is for tables past one
machine. When a job's settings name a scheduler (:attr:`statsbot_nb.context.JobSettings.dask_scheduler`),
the ``train`` handler asks :func:`why_not_on_cluster`; a job that can run there does (read by the
cluster's workers, fitted from sums gathered back here), the rest run here as today with a note saying
why. Either way the model is saved in the local store as an ordinary scikit-learn pipeline.

Modules: :mod:`.connect` (the client, timeouts, the path rule), :mod:`.prep` (reading, the hash split,
whole-data statistics, the fitted preprocessor), :mod:`.source` (the first pass, encodings, files that
cannot be split or that change), :mod:`.sums` (centred moments), :mod:`.linear` (normal equations, metrics from sums),
:mod:`.boost` (``xgboost.dask`` and ``lightgbm.dask``), :mod:`.lgbm` (when LightGBM's Dask training is
safe), :mod:`.score` (classification metrics from sums), :mod:`.train` (one job, end to end).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: model types fitted on the cluster from sums (one pass, normal equations)
NORMAL_EQUATION_TYPES = ("linear", "ridge")
#: extensions the cluster's workers read (Excel and JSON tables are read here)
CLUSTER_FORMATS = (".csv", ".tsv", ".parquet")

_SKLEARN_ENSEMBLES = ("random_forest", "extra_trees", "gradient_boosting", "decision_tree")


def why_not_on_cluster(model_type: str, path: Path, hyperparameters: Mapping[str, Any] | None = None) -> str | None:
    """None when this job can train on the cluster, else the sentence saying why it runs here instead."""
    if path.suffix.lower() not in CLUSTER_FORMATS:
        return f"the cluster reads CSV, TSV and Parquet files, and {path.name} is not one."
    if "*" in str(path) or "::" in str(path):  # see prep.pattern_reason (prep imports pandas; this must not)
        return f"Dask reads a file name with '*' or '::' as a pattern, so it would not read exactly {path.name}."
    if model_type in NORMAL_EQUATION_TYPES:
        if (hyperparameters or {}).get("positive"):
            return f"{model_type} with positive=True has no cluster training (the sums give no sign constraint)."
        return None
    if model_type.startswith(("xgboost_", "lightgbm_")):
        return None  # lightgbm_* is refused later, with a sentence, where its partitions are skewed
    if model_type in _SKLEARN_ENSEMBLES:
        return f"scikit-learn's {model_type} does not train on a Dask cluster; xgboost_* does, with boosted trees."
    return f"{model_type} has no cluster training yet; linear, ridge, xgboost_* and lightgbm_* do."


def where_note(trained_on: dict[str, object]) -> str:
    """The line the job's result and log carry: where the model was trained."""
    return (
        f"Trained on the Dask cluster at {trained_on['scheduler']} ({trained_on['workers']} worker(s), "
        f"{trained_on['partitions']} partition(s), {trained_on['rows']:,} rows)."
    )


__all__ = ["CLUSTER_FORMATS", "NORMAL_EQUATION_TYPES", "where_note", "why_not_on_cluster"]
