"""The benchmark suite still runs: ``benchmarks/run.py --smoke`` (tiny tables, one round) prints its table
with a row for every case, and ``--upstream`` adds a reference worker given as a command. The figures
themselves are not checked here (timing targets live in the benchmark, not in tests)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"
#: Today's worker is not part of this repository; our own worker stands in for it to test the plumbing.
STAND_IN = "{python} -m statsbot_nb.cli --token {token} --ws-url {ws_url} --allow {data}"


def _run(*args: str, timeout: float = 600) -> str:
    env = {k: v for k, v in os.environ.items() if k != "STATSBOT_TOKEN"}
    out = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", *args], capture_output=True, text=True, timeout=timeout, env=env
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout


def _rows(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| case")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_smoke_run_prints_every_case_with_a_ratio_and_a_target(tmp_path: Path) -> None:
    text = _run("--upstream", STAND_IN, "--keep", str(tmp_path / "work"))
    assert re.search(r"Machine: \d+ cores", text)
    rows = _rows(text)
    cases = " / ".join(r[0] for r in rows)
    for expected in ("train logistic", "train random forest", "two logistic trainings", "list_models", "loop lag"):
        assert expected in cases, f"no {expected!r} row in:\n{text}"
    assert any("today's worker" in r[2] for r in rows), "--upstream added no comparison with the given worker"
    for row in rows:
        assert len(row) == 6 and row[4], row  # case, ours, reference, ratio, target, met
        assert row[1] != "-", f"{row[0]}: nothing measured"


def test_an_unknown_case_is_refused_with_the_choices() -> None:
    out = subprocess.run([sys.executable, str(BENCH), "--only", "nonsense"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "choose from train, small, loop" in out.stderr


@pytest.mark.extra("dask")
def test_the_dask_case_runs_and_prints_its_ratio_honestly(tmp_path: Path) -> None:
    """``--only dask`` (not in the default run): ridge and xgboost with ``--dask-local 2`` against here, on CSV
    and Parquet."""
    text = _run("--only", "dask", "--keep", str(tmp_path / "work"))
    rows = _rows(text)
    assert [r[0] for r in rows] == [
        f"train {model}, 5,000 rows {kind}, --dask-local 2 vs here"
        for model in ("ridge", "xgboost_regression")
        for kind in ("CSV", "Parquet")
    ], text
    for row in rows:
        assert row[1] != "-" and row[2].endswith("(this machine, no Dask)") and row[3].endswith("x"), row
        assert row[5] == "-", "no target: one machine shows the cost, not a speed-up"
    assert "On a real cluster" in text
