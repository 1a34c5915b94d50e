"""The plain script a data scientist would write, timed from reading the table to the pickled model: the
reference our ``train`` job is measured against (``benchmarks/cases_train.py``).

It does the same work the worker's result carries: read the CSV, stratified 80/20 split with a fixed
seed, fit (scaled logistic regression, or a random forest), predict the held-out rows, the metrics the bot
shows, and pickle the model. Prints ``{"seconds": ..., "peak_mb": ...}`` (peak resident memory of this
process, imports included, as for the worker's job process).

    python benchmarks/plain_train.py TABLE.csv logistic|random_forest [N_ESTIMATORS] [N_JOBS]
"""

from __future__ import annotations

import json
import pickle
import resource
import sys
import tempfile
import time

import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def main(path: str, model_type: str, n_estimators: int = 10, n_jobs: int = -1) -> dict[str, float]:
    """Train once; seconds taken and peak memory."""
    started = time.perf_counter()
    frame = pd.read_csv(path)
    X, y = frame.drop(columns="target"), frame["target"]
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42, stratify=y)
    if model_type == "logistic":
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    else:
        model = RandomForestClassifier(n_estimators=n_estimators, n_jobs=n_jobs, random_state=42)
    model.fit(X_train, y_train)
    pred = model.predict(X_test)
    proba = model.predict_proba(X_test)[:, 1]
    metrics = {
        "accuracy": accuracy_score(y_test, pred),
        "precision": precision_score(y_test, pred),
        "recall": recall_score(y_test, pred),
        "f1": f1_score(y_test, pred),
        "roc_auc": roc_auc_score(y_test, proba),
        "auc_pr": average_precision_score(y_test, proba),
        "brier_score": brier_score_loss(y_test, proba),
        "log_loss": log_loss(y_test, proba),
    }
    with tempfile.NamedTemporaryFile(suffix=".pkl") as fh:
        pickle.dump(model, fh)
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": elapsed, "peak_mb": peak, "accuracy": metrics["accuracy"]}


if __name__ == "__main__":
    args = sys.argv[1:]
    print(json.dumps(main(args[0], args[1], *(int(a) for a in args[2:]))))
