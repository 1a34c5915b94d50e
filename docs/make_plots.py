"""Regenerate the plot gallery in ``docs/plots/``: every plot kind of a regression and a classification model.

The models are trained by the real ``train`` job on scikit-learn's bundled datasets (nothing is
downloaded) in a temporary StatsBot home, then drawn through the notebook API (``statsbot_nb.local``),
exactly as a user would see them::

    python docs/make_plots.py            # writes docs/plots/*.png (dpi 100)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pandas as pd

from statsbot_nb import local
from statsbot_nb.context import JobContext, JobSettings
from statsbot_nb.handlers.train import train
from statsbot_nb.ml.plots import comparison_plot

OUT = Path(__file__).resolve().parent / "plots"
PNG_METADATA = {"Software": None}  # no library versions in the files, so regenerating changes only pixels


def _tables(folder: Path) -> dict[str, tuple[Path, str, list[str]]]:
    """CSV files of the bundled datasets: name -> (path, target column, feature columns)."""
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits

    diabetes = load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": "progression"})
    cancer = load_breast_cancer(as_frame=True)
    tumours = cancer.frame.drop(columns="target").assign(
        diagnosis=cancer.target.map(dict(enumerate(cancer.target_names)))
    )
    digits = load_digits(as_frame=True).frame.assign(digit=lambda f: f["target"].astype(str)).drop(columns="target")
    out = {}
    for name, frame, target in [
        ("diabetes", diabetes, "progression"),
        ("cancer", tumours, "diagnosis"),
        ("digits", digits, "digit"),
    ]:
        path = folder / f"{name}.csv"
        frame.to_csv(path, index=False)
        out[name] = (path, target, [c for c in frame.columns if c != target])
    return out


def _train(ctx: JobContext, table: tuple[Path, str, list[str]], model_type: str, task: str, name: str) -> str:
    path, target, features = table
    params = {
        "file_path": str(path),
        "target_column": target,
        "feature_columns": features,
        "model_type": model_type,
        "task_type": task,
        "custom_name": name,
    }
    return str(train(params, ctx)["model_id"])


def main(out: Path = OUT) -> list[Path]:
    """Train the gallery's models, write one PNG per plot kind into ``out`` and return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="statsbot-docs-") as tmp:
        data, home = Path(tmp) / "data", Path(tmp) / "statsbot"
        data.mkdir()
        ctx = JobContext(JobSettings(home=home, allowed_dirs=(data,), cwd=data))
        tables = _tables(data)
        gallery = {
            "regression": _train(
                ctx, tables["diabetes"], "gradient_boosting", "regression", "Diabetes progression (gradient boosting)"
            ),
            "classification": _train(
                ctx, tables["cancer"], "random_forest", "classification", "Breast tumours (random forest)"
            ),
            "multiclass": _train(
                ctx, tables["digits"], "naive_bayes", "classification", "Handwritten digits (naive Bayes)"
            ),
        }
        for prefix, model_id in gallery.items():
            model = local.model(model_id, home=home)
            kinds = [k for k, why in model.plot_kinds.items() if why is None]
            if prefix == "multiclass":  # one-vs-rest curves and a 10 x 10 matrix; the rest repeats the binary
                kinds = [k for k in kinds if k in ("confusion_matrix", "roc")]
            for kind in kinds:
                path = out / f"{prefix}_{kind}.png"
                model.plot(kind).savefig(path, dpi=100, metadata=PNG_METADATA)
                written.append(path)
        for model_type in ("linear", "ridge", "random_forest", "extra_trees"):
            _train(
                ctx,
                tables["diabetes"],
                model_type,
                "regression",
                f"Diabetes progression ({model_type.replace('_', ' ')})",
            )
        rows = [r for r in local.models(home).to_dict("records") if r["task_type"] == "regression"]
        path = out / "comparison_r2.png"
        comparison_plot([{**r, "r2": r["score"]} for r in rows if pd.notna(r["score"])], "r2").savefig(
            path, dpi=100, metadata=PNG_METADATA
        )
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT):
        print(f"{written_path}  {written_path.stat().st_size / 1024:.0f} KB")
