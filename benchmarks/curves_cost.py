"""What recording a learning curve costs a fit, measured side by side in one run: each model type that learns
in rounds fitted on the same table with the curve recorded (the training and held-out rows scored after every
round, each a seeded sample of at most 5,000 rows, as a train job does) and without, then scored on the held-out
rows as a train job does. Each fit runs in a fresh process, as a job does (so first-call costs such as JAX's
compilations count), one thread per library (``n_jobs=1``: a steadier ratio on a busy machine), alternating
with and without; the table gives medians of the process's CPU seconds and of the wall time. Also what the
panel's chart costs to build.

    python benchmarks/curves_cost.py [--rows 200000] [--rounds 3] [--only xgboost,lightgbm]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
import warnings
from typing import Any

import numpy as np

from statsbot_nb.ml import estimators
from statsbot_nb.ml.curves import CurveRecorder, LiveCurve
from statsbot_nb.ml.fitting import fit_with_progress, sample_rows
from statsbot_nb.ui.curvechart import curve_svg

#: model type -> hyperparameters (round counts kept moderate so a round of the whole table takes minutes)
CASES: dict[str, dict[str, Any]] = {
    "xgboost_binary_classification": {"n_estimators": 100, "n_jobs": 1},
    "lightgbm_binary_classification": {"n_estimators": 100, "n_jobs": 1},
    "catboost_binary_classification": {"iterations": 200, "thread_count": 1},
    "gradient_boosting": {"n_estimators": 40},
    "mlp_classification": {"max_iter": 8},
    "keras_binary_classification": {"epochs": 3, "batch_size": 256},
}


def table(rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A 10-feature binary table split 80/20 like a train job's; the held-out part as the curve gets it."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, 10)).astype("float64")
    y = (X[:, 0] + 0.5 * X[:, 1] ** 2 - X[:, 2] * X[:, 3] + rng.normal(size=rows) > 0.5).astype("int64")
    cut = int(rows * 0.8)
    held = cut + (sample_rows(rows - cut) if rows - cut > 5000 else np.arange(rows - cut))
    return X[:cut], y[:cut], X[held], y[held]


def fit_once(model_type: str, hyper: dict[str, Any], data: tuple[np.ndarray, ...], record: bool) -> tuple[float, float]:
    X, y, X_held, y_held = data
    plan = estimators.build_estimator(model_type, "classification", hyper)
    recorder = CurveRecorder()
    cpu, wall = time.process_time(), time.perf_counter()
    model = fit_with_progress(
        plan,
        X,
        y,
        lambda *a: None,
        validation=(X_held, y_held) if record else None,
        recorder=recorder if record else None,
    )
    model.predict_proba(X_held)  # then scored on the held-out rows, as a train job does (Keras compiles predict)
    return time.process_time() - cpu, time.perf_counter() - wall


def chart_cost() -> tuple[float, int]:
    """Microseconds of CPU to build the panel's chart of a 2,000-round curve, and its HTML's size."""
    live = LiveCurve()
    for start in range(1, 2001, 50):
        rounds = list(range(start, start + 50))
        live.add(
            {
                "rounds": rounds,
                "total": 3000,
                "training": {"logloss": [1 / math.sqrt(r) for r in rounds]},
                "validation": {"logloss": [1 / math.sqrt(r) + r / 4000 for r in rounds]},
            }
        )
    started = time.process_time()
    for _ in range(1000):
        svg = curve_svg(live)
    return (time.process_time() - started) * 1000, len(svg)


def one(model_type: str, rows: int, record: bool) -> None:
    """The child: one fit (and scoring) in this fresh process; prints its CPU and wall seconds as JSON."""
    warnings.filterwarnings("ignore")
    data = table(rows)
    cpu, wall = fit_once(model_type, CASES[model_type], data, record)
    print("TIMES", json.dumps([cpu, wall]))


def in_child(model_type: str, rows: int, record: bool) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--one", model_type, "--rows", str(rows), *(["--record"] if record else [])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("TIMES "))
    cpu, wall = json.loads(line.removeprefix("TIMES "))
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3, help="fits with and without the curve per model type")
    parser.add_argument("--only", default="", help="comma-separated prefixes of the model types to measure")
    parser.add_argument("--one", default="", help=argparse.SUPPRESS)
    parser.add_argument("--record", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.one, args.rows, args.record)
        return
    held = min(5000, args.rows - int(args.rows * 0.8))
    print(f"{args.rows:,} rows x 10 features; {held:,} held-out rows scored per round; {args.rounds} fits each\n")
    print("| model | settings | CPU s without | CPU s with curve | ratio | wall s without | wall s with | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    wanted = [p for p in args.only.split(",") if p]
    for model_type, hyper in CASES.items():
        if wanted and not model_type.startswith(tuple(wanted)):
            continue
        try:
            estimators.build_estimator(model_type, "classification", hyper)
        except Exception as exc:  # an optional library that is not installed
            print(f"| {model_type} | skipped: {exc} |")
            continue
        times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for i in range(args.rounds):
            for record in (i % 2 == 0, i % 2 != 0):
                times[record].append(in_child(model_type, args.rows, record))
        cpu = {k: statistics.median(t[0] for t in v) for k, v in times.items()}
        wall = {k: statistics.median(t[1] for t in v) for k, v in times.items()}
        print(
            f"| {model_type} | {json.dumps(hyper)} | {cpu[False]:.2f} | {cpu[True]:.2f} | {cpu[True] / cpu[False]:.3f} "
            f"| {wall[False]:.2f} | {wall[True]:.2f} | {wall[True] / wall[False]:.3f} |",
            flush=True,
        )
    micros, size = chart_cost()
    print(f"\nPanel chart of a 2,000-round curve: {micros:.0f} µs of CPU per drawing, {size:,} characters of HTML")


if __name__ == "__main__":
    main()
