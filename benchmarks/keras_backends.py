"""``keras_*`` training on each Keras backend, side by side: time, peak memory and the metrics (not run by CI).

    python3 benchmarks/keras_backends.py                        # jax vs tensorflow, 5 rounds
    python3 benchmarks/keras_backends.py --backends jax,torch --rounds 5

Needs Keras and every backend named installed in this interpreter. Each training is the worker's real
``train`` job (``statsbot_nb.handlers.train.train``) in a fresh process with ``KERAS_BACKEND`` set, as a
job process runs it: the bot's own ``keras_*`` requests (the architecture of ``keras_templates.get_template``,
the flow's epochs, batch size and validation split; the bot's 300-row flow fits only 20% of the rows, as
the bot asks) on the same tables. Backends alternate within each round; times are medians. "process" is
the whole job process (start, imports, training, saving); "import" is importing Keras on that backend;
"train" is the job's own ``training_time``; "peak memory" the job process's peak resident memory.

Round ``i`` uses ``random_state = i`` for every backend, so the metrics (the job's, on its held-out rows)
are a mean over as many seeds as rounds, with their range: the backends draw different initial weights
from the same seed, so one seed alone compares luck, not backends.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: name -> (model type, target column, rows, epochs, batch size): the bot's flow (F5) on a small table,
#: its other templates, and a larger table.
CASES = {
    "binary 300 rows": ("keras_binary_classification", "label", 300, 50, 16),
    "multiclass 300 rows": ("keras_multiclass_classification", "grade", 300, 50, 16),
    "regression 300 rows": ("keras_regression", "y", 300, 50, 16),
    "binary 20k rows": ("keras_binary_classification", "label", 20_000, 20, 32),
}
FEATURES = ["x1", "x2", "x3", "x4", "city"]
VALIDATION_SPLIT = 0.2


def table(n: int, seed: int = 0) -> pd.DataFrame:
    """Learnable but noisy targets: ``label`` (2 classes), ``grade`` (3), ``y`` (a number)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    city = rng.choice(["paris", "rome", "oslo"], size=n)
    score = 2 * x[:, 0] + x[:, 1] - 0.5 * x[:, 2] * x[:, 3] + rng.normal(scale=0.7, size=n)
    return pd.DataFrame(
        {
            **{f"x{i + 1}": x[:, i] for i in range(4)},
            "city": city,
            "y": x[:, 0] + 0.5 * x[:, 1] ** 2 + np.where(city == "rome", 0.5, 0.0) + rng.normal(scale=0.3, size=n),
            "label": np.where(score > 0, "yes", "no"),
            "grade": np.select([score < -1, score < 1], ["low", "mid"], "high"),
        }
    )


def bot_request(path: Path, model_type: str, target: str, epochs: int, batch_size: int) -> dict[str, Any]:
    """What the bot sends for its Keras flow (ml_training_local_path.py, keras_templates.get_template)."""
    units, activation, loss, metrics = {
        "keras_binary_classification": (1, "sigmoid", "binary_crossentropy", ["accuracy"]),
        "keras_multiclass_classification": (2, "softmax", "categorical_crossentropy", ["accuracy"]),
        "keras_regression": (1, "linear", "mse", ["mae"]),
    }[model_type]
    init = "glorot_uniform"
    architecture = {
        "layers": [
            {"type": "Dense", "units": len(FEATURES), "activation": "relu", "kernel_initializer": init},
            {"type": "Dense", "units": units, "activation": activation, "kernel_initializer": init},
        ],
        "compile": {"loss": loss, "optimizer": "adam", "metrics": metrics},
    }
    hyper = {
        "epochs": epochs,
        "batch_size": batch_size,
        "kernel_initializer": init,
        "verbose": 1,
        "validation_split": VALIDATION_SPLIT,
        "architecture": architecture,
        "n_features": len(FEATURES),
    }
    return {
        "file_path": str(path),
        "task_type": "neural_network",
        "model_type": model_type,
        "target_column": target,
        "feature_columns": FEATURES,
        "hyperparameters": hyper,
        "test_size": 1.0 - VALIDATION_SPLIT,
        "custom_name": None,
    }


def child(request_file: str, home: str) -> None:
    """In the job process: import Keras (timed), run the train job, print what it cost and scored."""
    import resource

    from statsbot_nb.context import JobContext, JobSettings
    from statsbot_nb.handlers.train import train
    from statsbot_nb.ml.kerasbackend import import_keras

    request = json.loads(Path(request_file).read_text())
    started = time.perf_counter()
    keras = import_keras()
    imported = time.perf_counter() - started
    data = Path(request["file_path"]).parent
    settings = JobSettings(home=Path(home), allowed_dirs=(data,), cwd=data)
    result = train(request, JobContext(settings))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {
        "backend": keras.backend.backend(),
        "import": imported,
        "train": result["training_time"],
        "peak_mb": peak_mb,
        "metrics": result["metrics"],
    }
    print(json.dumps(out))


def run_once(backend: str, request_file: Path, home: Path) -> dict[str, Any]:
    env = {**os.environ, "KERAS_BACKEND": backend}
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(request_file), str(home)],
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{backend} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out["backend"] != backend:
        raise SystemExit(f"asked for {backend} but Keras ran on {out['backend']}")
    out["process"] = elapsed
    return out


def headline(runs: list[dict[str, float]]) -> str:
    """``accuracy 0.912 (0.90-0.93), ...``: the mean of each headline metric over the seeds, and its range."""
    keys = ("accuracy", "roc_auc") if "accuracy" in runs[0] else ("r2", "rmse")
    parts = []
    for key in keys:
        values = [float(m[key]) for m in runs]
        parts.append(f"{key} {statistics.mean(values):.3f} ({min(values):.2f}-{max(values):.2f})")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="jax,tensorflow", help="comma-separated (default: jax,tensorflow)")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (after one warm-up), one seed each")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    lines = [
        "| case | backend | process | import | train | peak memory | metrics on held-out rows: mean (range) |",
        "|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="statsbot-keras-") as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        for case, (model_type, target, rows, epochs, batch) in CASES.items():
            path = root / "data" / f"table{rows}.csv"
            if not path.exists():
                table(rows).to_csv(path, index=False)
            request = root / f"{model_type}-{rows}.json"
            samples: dict[str, list[dict[str, Any]]] = {b: [] for b in backends}
            for i in range(1 + args.rounds):
                job = bot_request(path, model_type, target, epochs, batch)
                job["hyperparameters"]["random_state"] = i
                request.write_text(json.dumps(job))
                for backend in backends:
                    out = run_once(backend, request, root / "home" / backend)
                    if i:
                        samples[backend].append(out)
                print(f"{case}: round {i + 1}/{1 + args.rounds}", file=sys.stderr, flush=True)
            for backend, runs in samples.items():

                def med(key: str, runs: list[dict[str, Any]] = runs) -> float:
                    return statistics.median(float(r[key]) for r in runs)

                lines.append(
                    f"| {case} | {backend} | {med('process'):.2f} s | {med('import'):.2f} s | {med('train'):.2f} s "
                    f"| {med('peak_mb'):.0f} MB | {headline([r['metrics'] for r in runs])} |"
                )
    print(
        f"\n{os.cpu_count()} cores, Python {sys.version.split()[0]}; times: medians of {args.rounds} alternating "
        f"rounds; metrics: mean (range) over random_state 1-{args.rounds}.\n"
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
