"""``statsbot-worker demo``: the reference server and a worker in one process, on loopback, running jobs.

Everything stays on this machine: the server issues a token, the worker connects with it, and the
"bot" side submits jobs the way today's StatsBot server would, printing what comes back.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .context import JobSettings
from .server import JobHandle, JobResult, JobServer


def build_parser() -> argparse.ArgumentParser:
    """Options of ``statsbot-worker demo``."""
    parser = argparse.ArgumentParser(
        prog="statsbot-worker demo",
        description="Run a reference server and a worker on loopback and send them a few jobs.",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="folder for the demo's data, models and predictions (default: a new "
        "temporary folder, kept and printed at the end)",
    )
    return parser


async def run_demo(folder: Path, out: Callable[[str], None]) -> int:
    """Run the demo in ``folder``; returns 0 when every job behaved as expected."""
    from .worker import Worker

    home = folder / "statsbot-home"
    settings = JobSettings(home=home, allowed_dirs=(folder,), cwd=folder)
    ok = True
    async with JobServer() as server:
        out(f"Reference server listening on {server.url}")
        worker = Worker(server.issue_token(), server.url, settings=settings, machine_id="demo-machine")
        worker.events.subscribe(lambda e: out(f"  worker: {e.message}") if e.kind == "state" else None)
        worker.start()
        await worker.wait_connected(timeout=30)

        def progress(handle: JobHandle, pct: float, message: str) -> None:
            out(f"  bot sees progress {handle.action}: {pct:3.0f}% {message}")

        async def job(action: str, params: dict[str, Any] | None = None) -> JobResult:
            out(f"\nbot -> worker: {action} {params or ''}".rstrip())
            result = await server.run_job(action, params, timeout=600, on_progress=progress)
            if result.success:
                out(f"worker -> bot: success {_short(result.data)}")
            else:
                out(f"worker -> bot: failed: {result.error}")
            return result

        train_csv, new_csv = _write_datasets(folder)
        out(f"\nWrote the wine data set that ships with scikit-learn to {train_csv}")
        trained = await job(
            "train",
            {
                "file_path": str(train_csv),
                "target_column": "cultivar",
                "feature_columns": WINE_FEATURES,
                "model_type": "random_forest",
                "task_type": "classification",
                "hyperparameters": None,
                "test_size": 0.25,
                "custom_name": "Wine cultivars (demo)",
            },
        )
        ok &= trained.success
        if trained.success and trained.data:
            model_id = trained.data["model_id"]
            metrics = trained.data["metrics"]
            out("  metrics: " + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items() if isinstance(v, float)))
            predicted = await job(
                "predict", {"model_id": model_id, "file_path": str(new_csv), "feature_columns": WINE_FEATURES}
            )
            ok &= predicted.success
            out(f"\nModel saved in {home / 'models' / model_id}")
            if predicted.success and predicted.data:
                out(f"Predictions written to {predicted.data['output_file']}")
        ok &= (await job("list_models")).success
        refused = await job("file_info", {"file_path": "/etc/passwd"})  # outside the allowed folders
        ok &= not refused.success
        ok &= not (await job("make_coffee")).success  # an unknown action is a failed result, not a crash
        await worker.stop()
    out(f"\nDemo {'finished' if ok else 'FAILED'}: everything ran on this machine, in {folder}")
    return 0 if ok else 1


WINE_FEATURES = ["alcohol", "malic_acid", "ash", "color_intensity", "hue", "proline", "flavanoids"]


def _write_datasets(folder: Path) -> tuple[Path, Path]:
    """The wine data set (bundled with scikit-learn: no download) as CSV, with text class labels."""
    from sklearn.datasets import load_wine

    wine = load_wine(as_frame=True)
    frame = wine.frame[WINE_FEATURES].copy()
    frame["cultivar"] = [str(wine.target_names[i]) for i in wine.target]
    train_csv, new_csv = folder / "wine.csv", folder / "wine_new.csv"
    frame.to_csv(train_csv, index=False)
    frame.drop(columns=["cultivar"]).sample(20, random_state=0).to_csv(new_csv, index=False)
    return train_csv, new_csv


def _short(data: dict[str, Any] | None, limit: int = 300) -> str:
    text = repr(data)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> int:
    """Entry point of ``statsbot-worker demo``."""
    args = build_parser().parse_args(argv)
    folder = args.dir or Path(tempfile.mkdtemp(prefix="statsbot-demo-"))
    folder = folder.expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    out(f"Demo folder: {folder}")
    try:
        return asyncio.run(run_demo(folder, out))
    except KeyboardInterrupt:
        out("Stopped.")
        return 130
