"""Reading a table on the cluster, the hash split, and a preprocessor fitted from whole-data statistics.

Three rules keep a cluster-trained model from being silently different from what the data says:

- the train/test split is by a hash of each row's content (:func:`coerce`), so the same rows are held
  out whatever the partitioning or block size;
- column roles (number or category) and the categories themselves come from one pass over the whole
  table (:func:`column_stats`), never from one partition, and the fitted one-hot encoder carries them;
- class labels are encoded once, from the labels of the whole table (:func:`label_codes`).

Every function here runs on a pandas partition (on a cluster worker) or on merged statistics (here).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import JobError
from ..ml import preprocess

_BUCKETS = float(2**32)
#: rows kept (by hash) to estimate medians and to score importances and plots here
SAMPLE_ROWS = 50_000


def read_frame(path: Path, columns: list[str], blocksize: int | str = "64MB") -> Any:
    """A lazy dask DataFrame of ``columns`` of ``path``; CSV values stay text until :func:`coerce`."""
    import dask.dataframe as dd

    if path.suffix.lower() == ".parquet":
        return dd.read_parquet(str(path), columns=columns)
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    return dd.read_csv(str(path), usecols=columns, dtype=object, sep=sep, blocksize=blocksize)


def row_hash(part: pd.DataFrame) -> np.ndarray:
    """A 64-bit hash of each row's values (not its position), identical whatever the partitioning."""
    return pd.util.hash_pandas_object(part, index=False).to_numpy(dtype="uint64")


def type_counts(part: pd.DataFrame) -> dict[str, Any]:
    """Rows, and per column the non-missing values that are not numbers (the first, whole-table pass)."""
    bad = {}
    for col in part.columns:
        values = part[col]
        if pd.api.types.is_bool_dtype(values):
            bad[col] = len(values)
        elif pd.api.types.is_numeric_dtype(values):
            bad[col] = 0
        else:
            bad[col] = int((values.notna() & pd.to_numeric(values, errors="coerce").isna()).sum())
    return {"rows": len(part), "not_numeric": bad}


def merge_type_counts(parts: list[dict[str, Any]]) -> tuple[int, dict[str, int]]:
    """Total rows and non-number counts per column over every partition."""
    total: dict[str, int] = {}
    for p in parts:
        for col, n in p["not_numeric"].items():
            total[col] = total.get(col, 0) + n
    return sum(p["rows"] for p in parts), total


@dataclass(frozen=True)
class Layout:
    """What every partition function needs: roles, target, its kind, the split and (classification) labels."""

    roles: preprocess.ColumnRoles
    target: str
    numeric_target: bool
    test_size: float
    sample_rate: float
    classes: tuple[Any, ...] | None = None
    #: classes with no training row under the hash split: their rows train (as the local split does)
    train_only: tuple[Any, ...] = ()


def coerce(part: pd.DataFrame, layout: Layout) -> tuple[pd.DataFrame, pd.Series, np.ndarray, np.ndarray]:
    """Features as the local trainer types them, the target, the test mask and the sample mask (both from
    the row hash); rows without a target are dropped first, as the local trainer does."""
    target = part[layout.target]
    if layout.numeric_target:
        target = pd.to_numeric(target, errors="coerce")
    keep = target.notna().to_numpy()
    part, target = part[keep], target[keep]
    hashes = row_hash(part)
    held_out = (hashes & np.uint64(0xFFFFFFFF)).astype("float64") / _BUCKETS < layout.test_size
    if layout.train_only:
        held_out &= ~class_values(target, layout).isin(layout.train_only).to_numpy()
    sampled = (hashes >> np.uint64(32)).astype("float64") / _BUCKETS < layout.sample_rate
    X = preprocess.coerce_features(part, layout.roles)
    return X, target, held_out, sampled


def class_values(target: pd.Series, layout: Layout) -> pd.Series:
    """The target as classes are counted: numbers for a numeric target (whole floats as integers), else text."""
    if not layout.numeric_target:
        return target.astype(str)
    if len(target) and bool((target % 1 == 0).all()):
        return target.astype("int64")
    return target


def label_codes(target: pd.Series, classes: tuple[Any, ...]) -> np.ndarray:
    """Codes 0..k-1 of ``target`` in the whole table's class order (never a partition's own)."""
    codes = pd.Index(list(classes)).get_indexer(target).astype("int64")
    if (codes < 0).any():
        raise JobError("A class label appeared that the first pass did not see; the table changed while training.")
    return codes


def column_stats(part: pd.DataFrame, layout: Layout) -> dict[str, Any]:
    """Sums over the training rows of one partition (medians from a hash sample), plus all target labels."""
    X, target, held_out, sampled = coerce(part, layout)
    train = X[~held_out]
    sample = sampled[~held_out]
    out: dict[str, Any] = {"n_train": len(train), "n_test": int(held_out.sum()), "dropped": len(part) - len(X)}
    for col in layout.roles.numeric:
        v = train[col].to_numpy(dtype="float64")
        finite = v[~np.isnan(v)]
        out[col] = {"n": len(finite), "sum": finite.sum(), "sumsq": (finite**2).sum(), "sample": v[sample]}
    for col in layout.roles.categorical:
        out[col] = {"counts": train[col].value_counts(dropna=True).to_dict(), "missing": int(train[col].isna().sum())}
    if layout.classes is None:
        labels = class_values(target, layout)
        out["__labels__"] = labels.value_counts().to_dict()
        out["__train_labels__"] = labels[~held_out].value_counts().to_dict()
    return out


def merge_stats(parts: list[dict[str, Any]], layout: Layout) -> dict[str, Any]:
    """The whole table's statistics from every partition's (sums add, counts add, samples join)."""
    merged: dict[str, Any] = {k: sum(p[k] for p in parts) for k in ("n_train", "n_test", "dropped")}
    for col in layout.roles.numeric:
        merged[col] = {
            "n": sum(p[col]["n"] for p in parts),
            "sum": sum(p[col]["sum"] for p in parts),
            "sumsq": sum(p[col]["sumsq"] for p in parts),
            "sample": np.concatenate([p[col]["sample"] for p in parts]),
        }
    for col in layout.roles.categorical:
        counts: dict[Any, int] = {}
        for p in parts:
            for value, n in p[col]["counts"].items():
                counts[value] = counts.get(value, 0) + int(n)
        merged[col] = {"counts": counts, "missing": sum(p[col]["missing"] for p in parts)}
    for key, name in (("__labels__", "labels"), ("__train_labels__", "train_labels")):
        counts = {}
        for p in parts:
            for value, n in p.get(key, {}).items():
                counts[value] = counts.get(value, 0) + int(n)
        merged[name] = counts
    return merged


def fitted_preprocessor(layout: Layout, scale: bool, stats: dict[str, Any]) -> Any:
    """The same ``ColumnTransformer`` the local trainer fits, fitted from the whole table's statistics.

    It is fitted on a tiny frame that holds every category (those the local encoder would keep twice, the
    rarer once, so ``max_categories`` groups the same ones) and its learned values are then set to the
    whole table's: the medians (from a hash sample of the training rows), the modes, means and scales.
    """
    roles = layout.roles
    columns: dict[str, list[Any]] = {}
    modes: dict[str, Any] = {}
    for col in roles.categorical:
        counts = dict(stats[col]["counts"])
        if not counts:
            raise JobError(f"The feature column {col!r} holds no values in the training rows; leave it out.")
        values = sorted(counts)
        mode = max(values, key=lambda v: (counts[v], -values.index(v)))  # sklearn: the smallest of ties
        modes[col] = mode
        counts[mode] += stats[col]["missing"]
        freq = np.array([counts[v] for v in values])
        keep = len(values)
        kept = set(values)
        if len(values) > preprocess.MAX_CATEGORIES:
            keep = preprocess.MAX_CATEGORIES - 1
            order = np.argsort(freq, kind="mergesort")  # the order scikit-learn ranks infrequent ones by
            kept = {values[i] for i in order[len(values) - keep :]}
        columns[col] = [v for v in values for _ in range(2 if v in kept else 1)]
    length = max([len(v) for v in columns.values()] + [2])
    frame = {col: (vals + [vals[0]] * (length - len(vals))) for col, vals in columns.items()}
    medians, means, variances = {}, {}, {}
    n = stats["n_train"]
    for col in roles.numeric:
        s = stats[col]
        sample = s["sample"][~np.isnan(s["sample"])]
        if s["n"] == 0 or len(sample) == 0:
            raise JobError(f"The feature column {col!r} holds no numbers in the training rows; leave it out.")
        med = float(np.median(sample))
        filled_sum = s["sum"] + (n - s["n"]) * med
        filled_sq = s["sumsq"] + (n - s["n"]) * med * med
        medians[col], means[col] = med, filled_sum / n
        variances[col] = max(filled_sq / n - means[col] ** 2, 0.0)
        frame[col] = [0.0, 1.0] * (length // 2) + [0.0] * (length % 2)
    pre = preprocess.build_preprocessor(roles, scale)
    pre.fit(pd.DataFrame(frame, columns=[*roles.numeric, *roles.categorical]))
    if roles.numeric:
        num = pre.named_transformers_["num"]
        num.named_steps["impute"].statistics_ = np.array([medians[c] for c in roles.numeric])
        if scale:
            scaler = num.named_steps["scale"]
            scaler.mean_ = np.array([means[c] for c in roles.numeric])
            scaler.var_ = np.array([variances[c] for c in roles.numeric])
            scale_ = np.sqrt(scaler.var_)
            scaler.scale_ = np.where(scale_ == 0, 1.0, scale_)
            scaler.n_samples_seen_ = n
    if roles.categorical:
        cat = pre.named_transformers_["cat"]
        cat.named_steps["impute"].statistics_ = np.array([modes[c] for c in roles.categorical], dtype=object)
    return pre


__all__ = [
    "Layout",
    "class_values",
    "coerce",
    "column_stats",
    "fitted_preprocessor",
    "label_codes",
    "merge_stats",
    "read_frame",
]
