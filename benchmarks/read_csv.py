"""CSV loading: statsbot_nb's reader (pyarrow, only the needed columns) vs plain ``pandas.read_csv``.

Both read the same file in one run, alternately, best of N. Run:

    python benchmarks/read_csv.py [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from statsbot_nb.ml.data import read_table


def main(rows: int, repeat: int) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=rows) for i in range(8)})
    frame["city"] = rng.choice(["Paris", "Rome", "Oslo", "Lima"], size=rows)
    frame["y"] = rng.normal(size=rows)
    path = Path(tempfile.mkdtemp(prefix="statsbot-bench-")) / "table.csv"
    frame.to_csv(path, index=False)
    needed = ["x0", "x1", "city", "y"]
    timings: dict[str, list[float]] = {
        "pandas.read_csv (all columns)": [],
        "pandas.read_csv (usecols)": [],
        "statsbot_nb read_table (needed columns)": [],
    }
    for _ in range(repeat):
        for name in timings:
            started = time.perf_counter()
            if name.startswith("pandas") and "usecols" in name:
                pd.read_csv(path, usecols=needed)
            elif name.startswith("pandas"):
                pd.read_csv(path)
            else:
                read_table(path, needed)
            timings[name].append(time.perf_counter() - started)
    base = min(timings["pandas.read_csv (all columns)"])
    size_mb = path.stat().st_size / 2**20
    print(f"{rows:,} rows x {frame.shape[1]} columns, {size_mb:.0f} MB, best of {repeat}")
    for name, values in timings.items():
        print(f"{name:<42} {min(values):7.3f} s   speed-up vs pandas all columns: {base / min(values):4.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    main(args.rows, args.repeat)
