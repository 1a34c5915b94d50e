"""The bottom layer's one-home helpers: strict JSON, atomic writes, task names/seeds, the headline metric."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from statsbot_nb import atomic
from statsbot_nb.ml import constants, headline
from statsbot_nb.strictjson import to_strict_json


def test_strict_json_cells_and_values() -> None:
    values = [
        float("nan"),
        np.float64("inf"),
        np.int64(3),
        np.bool_(True),
        pd.NaT,
        pd.NA,
        pd.Timestamp("2024-01-02 03:04:05"),
        pd.Timedelta(days=1),
        dt.timedelta(seconds=5),
        decimal.Decimal("1.5"),
        b"caf\xc3\xa9",
        np.array([1.0, np.nan]),
        {1: (2, 3)},
        {"b", "a"},
        Path("/x/y"),
    ]
    out = to_strict_json(values)
    assert out == [
        None,
        None,
        3,
        True,
        None,
        None,
        "2024-01-02T03:04:05",
        "1 days 00:00:00",
        "0:00:05",
        1.5,
        "café",
        [1.0, None],
        {"1": [2, 3]},
        ["a", "b"],
        "/x/y",
    ]
    json.dumps(out, allow_nan=False)


def test_strict_json_unknown_objects() -> None:
    class Thing:
        def __repr__(self) -> str:
            return "Thing()"

        def __str__(self) -> str:
            return "a thing"

    assert to_strict_json(Thing()) == "a thing"
    assert to_strict_json({"k": Thing()}, unknown=repr) == {"k": "Thing()"}


def test_atomic_write_bytes_modes_and_no_leftovers(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    atomic.write_bytes(target, b"one", mode=0o600)
    assert target.read_bytes() == b"one"
    assert target.stat().st_mode & 0o777 == 0o600
    atomic.write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert target.stat().st_mode & 0o777 == 0o600  # an overwrite keeps the permissions
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_atomic_commit_never_replaces_without_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("theirs")
    with pytest.raises(FileExistsError):
        atomic.write_bytes(target, b"ours", overwrite=False)
    assert target.read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_atomic_failed_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        atomic.write_bytes(tmp_path / "missing-folder" / "x.json", b"{}")
    assert list(tmp_path.iterdir()) == []
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))


def test_one_seed_and_task_names() -> None:
    from statsbot_nb.ml import estimators, plots, train

    assert constants.TASKS == ("regression", "classification")
    assert estimators.SEED == train.SEED == constants.SEED == 42
    assert estimators.REGRESSION is constants.REGRESSION and plots.CLASSIFICATION is constants.CLASSIFICATION
    assert constants.PLOT_SAMPLE_SEED == 0


def test_headline_text() -> None:
    reg = {"task_type": "regression", "metrics": {"r2": 0.91234}}
    assert headline.headline_text(reg) == "r2=0.912"
    assert headline.headline_text(reg, sep=" ", labelled=True) == "R² 0.912"
    assert headline.headline_text({"task_type": "classification", "metrics": {}}) == ""
    assert headline.headline_metric({"metrics": {"accuracy": 0.5}}) == ("accuracy", 0.5)
