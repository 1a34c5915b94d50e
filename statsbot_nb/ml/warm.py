"""Modules every training or prediction job needs, imported once in the job processes' forkserver.

Why: the forkserver imported ``sklearn`` alone, whose submodules load lazily, so every job process paid
for importing the estimators, metrics and preprocessing it used: 0.3-0.9 s of a 300-row training on this
2-core machine, far more than the work itself. Imported here once, each job process inherits them from the
fork. Measured on Linux: these add 25 MB to the forkserver's resident memory (shared with the job
processes, not copied). CatBoost (1.3 s, 55 MB) and TensorFlow (seconds, hundreds of MB) are left to the
jobs that use them. A library that is not installed is skipped.
"""

from __future__ import annotations

import importlib

MODULES = (
    "sklearn.compose",
    "sklearn.ensemble",
    "sklearn.impute",
    "sklearn.inspection",
    "sklearn.linear_model",
    "sklearn.metrics",
    "sklearn.model_selection",
    "sklearn.naive_bayes",
    "sklearn.neighbors",
    "sklearn.neural_network",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "sklearn.svm",
    "sklearn.tree",
    "statsbot_nb.ml.train",
    "statsbot_nb.ml.predict",
    "xgboost",
    "lightgbm",
)


def preload() -> list[str]:
    """Import :data:`MODULES`; the names that could not be imported (an extra not installed)."""
    missing = []
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # not installed, or broken: must not stop the forkserver from starting
            missing.append(name)
    return missing


def exercise() -> None:
    """Fit, score and pickle a tiny model once, so the imports libraries make lazily on first use (pandas
    interop through narwhals, metric helpers, pickling) are done before any job forks."""
    import pickle

    import numpy as np
    import pandas as pd

    from . import evaluate, preprocess

    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0, np.nan, 5.0], "b": ["x", "y", "x", "y", "x", None]})
    y = np.array([0, 1, 0, 1, 0, 1])
    roles = preprocess.split_roles(frame, ["a", "b"])
    pre = preprocess.build_preprocessor(roles, scale_numeric=True)
    with preprocess.fast_median_imputation():
        Xt = pre.fit_transform(preprocess.coerce_features(frame, roles))
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(Xt, y)
    proba = evaluate.predict_proba_or_none(model, Xt)
    evaluate.classification_metrics(y, model.predict(Xt), proba, 2)
    evaluate.regression_metrics(y.astype(float), proba[:, 1] if proba is not None else y.astype(float))
    pickle.dumps(model)


preload()
try:
    exercise()
except Exception:  # a warm-up only: a failure here must never stop job processes from starting
    pass
