"""statsbot_nb.ml.store (saves, checksum-verified loads, ids) and the store's handlers (handlers.models)."""

from __future__ import annotations

import json
import pickle
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.preprocessing import LabelEncoder

from statsbot_nb.context import JobContext, JobSettings
from statsbot_nb.errors import JobError
from statsbot_nb.handlers import models as model_jobs
from statsbot_nb.ml import store

NOW = datetime(2026, 3, 1, 12, 30, 45)
BAD_IDS = ["../x", "/etc", "a/b", "..", ".hidden", "", None, 12, "x" * 200]


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> JobContext:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    data = tmp_path / "data"
    data.mkdir()
    return JobContext(JobSettings(home=home / ".statsbot", allowed_dirs=(data,), cwd=data))


def fitted() -> LinearRegression:
    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    return LinearRegression().fit(X, [1.0, 3.0, 5.0, 7.0])


def save(models: Path, model_type: str = "linear", **meta: Any) -> str:
    model_id = store.new_model_id(models, model_type, "regression", NOW)
    metadata = {
        "model_type": model_type,
        "task_type": "regression",
        "target_column": "y",
        "feature_columns": ["a", "b"],
        "metrics": {"r2": 1.0},
        "custom_name": None,
        "display_name": "Linear",
        "created_at": NOW.isoformat(),
        **meta,
    }
    store.save_model(
        models,
        model_id,
        fitted(),
        metadata,
        artefacts={"y_true": np.arange(3.0), "y_pred": np.arange(3.0)},
        encoders={"y": LabelEncoder().fit(["a", "b"])},
    )
    return model_id


class Unpicklable:
    """Simulates a model that fails half-way through saving."""

    def __reduce__(self) -> Any:
        raise RuntimeError("boom while pickling")


def test_ids_are_unique_within_one_second(tmp_path: Path) -> None:
    models = tmp_path / "models"
    ids = [store.new_model_id(models, "random_forest", "classification", NOW) for _ in range(5)]
    assert ids[0] == "model_random_forest_classification_20260301_123045"
    assert len(set(ids)) == 5
    assert all(i.startswith("model_random_forest_classification_20260301_123045") for i in ids)
    assert all((models / i).is_dir() for i in ids)
    assert store.list_models(models) == []  # reservations are not models


def test_save_and_load_round_trip(ctx: JobContext) -> None:
    models = ctx.settings.models_dir
    model_id = save(models)
    model, encoders, meta = store.load_model(models, model_id)
    assert model.predict(pd.DataFrame({"a": [4.0], "b": [0.0]}))[0] == pytest.approx(9.0)
    assert list(encoders["y"].classes_) == ["a", "b"]
    assert meta["model_id"] == model_id and meta["format_version"] == store.FORMAT_VERSION
    assert len(meta["model_sha256"]) == 64 and len(meta["encoders_sha256"]) == 64
    assert set(meta["files"]) == {"model.pkl", "encoders.pkl", "artefacts.npz"}
    assert list(store.load_artefacts(models, model_id)["y_true"]) == [0.0, 1.0, 2.0]
    listed = model_jobs.list_models({}, ctx)["models"]
    assert [m["model_id"] for m in listed] == [model_id]
    assert not [p for p in models.iterdir() if p.name.startswith(".")]


def test_tampered_model_is_refused_until_trusted(ctx: JobContext, tmp_path: Path) -> None:
    models = ctx.settings.models_dir
    model_id = save(models)
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Payload(str(marker)))
    (models / model_id / "model.pkl").write_bytes(payload)
    with pytest.raises(JobError, match=rf"checksum mismatch.*statsbot-worker trust-model {model_id}"):
        store.load_model(models, model_id)
    assert not marker.exists()  # nothing was unpickled
    (models / model_id / "model.pkl").write_bytes(pickle.dumps(fitted()))
    store.trust_model(models, model_id)
    model, _, _ = store.load_model(models, model_id)
    assert hasattr(model, "predict")


class _Payload:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (open, (self.path, "w"))


def test_tampered_encoders_are_refused(ctx: JobContext) -> None:
    models = ctx.settings.models_dir
    model_id = save(models)
    (models / model_id / "encoders.pkl").write_bytes(pickle.dumps({"y": "other"}))
    with pytest.raises(JobError, match=r"encoders.pkl of model .*checksum mismatch"):
        store.load_model(models, model_id)


def test_model_from_an_older_worker_needs_trust(ctx: JobContext) -> None:
    models = ctx.settings.models_dir
    folder = models / "model_linear_regression_20250101_101010"
    folder.mkdir(parents=True)
    (folder / "model.pkl").write_bytes(pickle.dumps(fitted()))
    (folder / "metadata.json").write_text(
        json.dumps(
            {
                "model_id": folder.name,
                "model_type": "linear",
                "task_type": "regression",
                "target_column": "y",
                "feature_columns": ["a", "b"],
                "metrics": {},
                "created_at": "2025-01-01T10:10:10",
                "custom_name": None,
                "display_name": "Old",
            }
        )
    )
    with pytest.raises(JobError) as err:
        store.load_model(models, folder.name)
    assert "without a checksum" in str(err.value)
    assert f"statsbot-worker trust-model {folder.name}" in str(err.value)
    assert store.list_models(models)[0]["model_id"] == folder.name  # still listed
    store.trust_model(models, folder.name)
    model, encoders, _ = store.load_model(models, folder.name)
    assert encoders == {} and hasattr(model, "predict")


def test_crash_mid_save_leaves_no_model(ctx: JobContext) -> None:
    models = ctx.settings.models_dir
    model_id = store.new_model_id(models, "linear", "regression", NOW)
    with pytest.raises(JobError, match=r"could not be saved .* nothing was written"):
        store.save_model(models, model_id, Unpicklable(), {"model_type": "linear"})
    assert store.list_models(models) == []
    assert list(models.iterdir()) == []  # no temp folder, no empty reservation
    with pytest.raises(JobError, match=r"There is no model"):
        store.load_model(models, model_id)


def test_crash_after_model_file_leaves_no_model(ctx: JobContext) -> None:
    models = ctx.settings.models_dir
    model_id = store.new_model_id(models, "linear", "regression", NOW)
    with pytest.raises(JobError):
        store.save_model(models, model_id, fitted(), {"model_type": "linear"}, encoders={"y": Unpicklable()})
    assert list(models.iterdir()) == []


def test_a_dead_workers_temp_folder_is_never_listed_or_loaded(ctx: JobContext) -> None:
    models = ctx.settings.models_dir
    model_id = save(models)
    half = models / f".tmp-{model_id}-dead"
    half.mkdir()
    (half / "metadata.json").write_text(json.dumps({"model_id": "x"}))
    assert [m["model_id"] for m in store.list_models(models)] == [model_id]
    with pytest.raises(JobError, match=r"not a valid model id"):
        store.load_model(models, half.name)


@pytest.mark.parametrize("bad_id", BAD_IDS)
def test_bad_ids_are_refused_everywhere(ctx: JobContext, tmp_path: Path, bad_id: object) -> None:
    models = ctx.settings.models_dir
    save(models)
    victim = tmp_path / "x"
    victim.mkdir()
    (victim / "metadata.json").write_text("{}")
    with pytest.raises(JobError):
        model_jobs.delete_model({"model_id": bad_id}, ctx)
    with pytest.raises(JobError):
        model_jobs.set_model_name({"model_id": bad_id, "custom_name": "new"}, ctx)
    with pytest.raises(JobError):
        store.load_model(models, bad_id)
    assert victim.is_dir() and (victim / "metadata.json").read_text() == "{}"
    assert len(store.list_models(models)) == 1


def test_symlinked_model_folder_pointing_outside_is_refused(ctx: JobContext, tmp_path: Path) -> None:
    models = ctx.settings.models_dir
    model_id = save(models)
    outside = tmp_path / "outside"
    (models / model_id).rename(outside)
    (models / "evil").symlink_to(outside, target_is_directory=True)
    with pytest.raises(JobError, match=r"inside the model store"):
        store.load_model(models, "evil")
    with pytest.raises(JobError, match=r"inside the model store"):
        model_jobs.delete_model({"model_id": "evil"}, ctx)
    assert outside.is_dir()


def test_delete_model(ctx: JobContext) -> None:
    models = ctx.settings.models_dir
    model_id = save(models)
    assert model_jobs.delete_model({"model_id": model_id}, ctx) == {"deleted": model_id}
    assert list(models.iterdir()) == []
    with pytest.raises(JobError, match=f"There is no model {model_id}"):
        model_jobs.delete_model({"model_id": model_id}, ctx)


def test_set_model_name(ctx: JobContext) -> None:
    models = ctx.settings.models_dir
    model_id = save(models)
    result = model_jobs.set_model_name({"model_id": model_id, "custom_name": "  House prices  "}, ctx)
    assert result == {"model_id": model_id, "custom_name": "House prices"}
    meta = store.read_metadata(models / model_id)
    assert meta is not None
    assert meta["custom_name"] == meta["display_name"] == "House prices"
    assert store.list_models(models)[0]["display_name"] == "House prices"
    store.load_model(models, model_id)  # checksums unaffected by the rename
    assert [p.name for p in (models / model_id).iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("", "non-empty"),
        ("   ", "non-empty"),
        (None, "non-empty"),
        (5, "non-empty"),
        ("x" * 101, "101 characters"),
        ("two\nlines", "control characters"),
    ],
)
def test_set_model_name_validates(ctx: JobContext, name: object, pattern: str) -> None:
    models = ctx.settings.models_dir
    model_id = save(models)
    with pytest.raises(JobError, match=pattern):
        model_jobs.set_model_name({"model_id": model_id, "custom_name": name}, ctx)
    meta = store.read_metadata(models / model_id)
    assert meta is not None and meta["display_name"] == "Linear"


def test_set_model_name_on_unknown_model(ctx: JobContext) -> None:
    with pytest.raises(JobError, match=r"There is no model model_nope"):
        model_jobs.set_model_name({"model_id": "model_nope", "custom_name": "x"}, ctx)


def test_metadata_is_strict_json(ctx: JobContext) -> None:
    models = ctx.settings.models_dir
    model_id = save(models, metrics={"r2": float("nan"), "mse": np.float64(2.5)}, n=np.int64(3))
    text = (models / model_id / "metadata.json").read_text()
    meta = json.loads(text)
    assert meta["metrics"] == {"r2": None, "mse": 2.5} and meta["n"] == 3
    assert "NaN" not in text


def test_list_models_orders_by_real_time_not_text(tmp_path: Path) -> None:
    """Newest first even within one second, across time zones, with zone-less and missing times last-ish."""
    store_dir = tmp_path / "models"
    stamps = {
        "model_a": "2026-11-28T18:16:37.900+00:00",
        "model_b": "2026-11-28T18:16:37.100+00:00",
        "model_c": "2026-11-28T19:16:37.500+02:00",  # 17:16:37.5 UTC: oldest of the zoned ones
        "model_d": None,
    }
    for model_id, created in stamps.items():
        folder = store_dir / model_id
        folder.mkdir(parents=True)
        (folder / "metadata.json").write_text(json.dumps({"model_id": model_id, "created_at": created}))
    assert [m["model_id"] for m in store.list_models(store_dir)] == ["model_a", "model_b", "model_c", "model_d"]


def test_metadata_symlink_and_fifo_are_refused_promptly(ctx: JobContext, tmp_path: Path) -> None:
    """A ``metadata.json`` that is a symlink (to a forged file with matching checksums) or a FIFO is never
    read: the model is skipped, not loaded, and ``list_models`` answers at once instead of hanging."""
    import os
    import threading

    models = ctx.settings.models_dir
    good = save(models)
    linked = save(models)
    forged = tmp_path / "forged.json"
    meta = json.loads((models / linked / "metadata.json").read_text())
    forged.write_text(json.dumps(meta))
    (models / linked / "metadata.json").unlink()
    (models / linked / "metadata.json").symlink_to(forged)
    fifo = save(models)
    (models / fifo / "metadata.json").unlink()
    os.mkfifo(models / fifo / "metadata.json")
    (models / good / "artefacts.npz").unlink(missing_ok=True)
    (models / good / "artefacts.npz").symlink_to(forged)  # a linked artefacts file is ignored, not read

    listed: list[list[str]] = []
    thread = threading.Thread(target=lambda: listed.append([m["model_id"] for m in store.list_models(models)]))
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "list_models hung on a FIFO named metadata.json"
    assert listed == [[good]]
    for model_id in (linked, fifo):
        with pytest.raises(JobError, match=r"no readable metadata\.json"):
            store.load_model(models, model_id)
    assert store.load_artefacts(models, good) == {}
    # a symlinked model folder (even one pointing inside the store) is never used
    (models / "alias").symlink_to(models / good, target_is_directory=True)
    with pytest.raises(JobError, match="symlink"):
        store.load_model(models, "alias")
    assert "alias" not in [m["model_id"] for m in store.list_models(models)]
