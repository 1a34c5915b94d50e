"""Reading a table on the cluster, the hash split, and a preprocessor fitted from whole-data statistics.

Three rules keep a cluster-trained model from being silently different from what the data says:

- the train/test split is by a hash of each row's position in the file (:func:`coerce`, given the
  partition's first row number), so the same rows are held out whatever the partitioning or block size,
  and copies of one row are split like any rows (a hash of the content put every copy on one side: a
  table of few distinct rows held out far more than ``test_size``, and whole combinations never trained);
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
from .sums import merge_moments, moments

_BUCKETS = float(2**32)
#: rows kept (by hash) to estimate medians and to score importances and plots here
SAMPLE_ROWS = 50_000
#: bytes of a CSV each partition reads (dask splits the file at line breaks)
BLOCKSIZE: int | str = "64MB"
#: the text pandas reads as booleans (its ``true_values`` / ``false_values``), as prediction will read it
BOOL_TEXT = {"True": True, "TRUE": True, "true": True, "False": False, "FALSE": False, "false": False}


def pattern_reason(path: Path) -> str | None:
    """Why Dask would not read exactly ``path`` (it globs a name with ``*``, chains file systems at ``::``)."""
    if "*" in str(path) or "::" in str(path):
        return (
            f"Dask reads a file name with '*' or '::' as a pattern of file names, so it would not read exactly "
            f"{path.name}; rename the file to train it on the cluster."
        )
    return None


def read_frame(
    path: Path, columns: list[str], blocksize: int | str | None = None, encoding: str = "utf-8", every: bool = False
) -> Any:
    """A lazy dask DataFrame of ``columns`` of ``path``; CSV values stay text until :func:`coerce`.

    ``every`` parses every column of a CSV (as text, which costs memory for a wide table): pandas
    reading only some columns silently cuts a row with more fields than the header (a comma that should
    have been quoted shifts its values), where reading them all refuses it, as the local reader does.
    """
    import dask.dataframe as dd

    reason = pattern_reason(path)
    if reason:
        raise JobError(reason)
    if path.suffix.lower() == ".parquet":
        return dd.read_parquet(str(path), columns=columns)
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    usecols = None if every else columns  # every column as text too: inferred types can differ between blocks
    return dd.read_csv(
        str(path), usecols=usecols, dtype=object, sep=sep, blocksize=blocksize or BLOCKSIZE, encoding=encoding
    )


def row_hash(start: int, n: int) -> np.ndarray:
    """A 64-bit hash of the row numbers ``start`` .. ``start + n - 1`` of the file (splitmix64's finaliser):
    each row's, whatever partition it is in."""
    z = np.arange(start, start + n, dtype="uint64") + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def blank_as_missing(values: pd.Series) -> pd.Series:
    """A text column with its blank cells (only spaces) missing: the local trainer drops such targets."""
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return values
    return values.mask(values.astype(str).str.strip().eq("") & values.notna())


def type_counts(part: pd.DataFrame, target: str | None = None, columns: list[str] | None = None) -> dict[str, Any]:
    """Rows, and per column (of ``columns``, default all) the values present, those that are numbers and
    those that are booleans (true/false text as pandas reads it, or bools): the first, whole-table pass.
    Blank targets are missing."""
    counts: dict[str, dict[str, int]] = {"present": {}, "numbers": {}, "booleans": {}}
    for col in columns or part.columns:
        values = blank_as_missing(part[col]) if col == target else part[col]
        present = int(values.notna().sum())
        if pd.api.types.is_bool_dtype(values):
            numbers, booleans = 0, present
        elif pd.api.types.is_numeric_dtype(values):
            numbers, booleans = present, 0
        else:
            numbers = int(pd.to_numeric(values, errors="coerce").notna().sum())
            bools = pd.api.types.infer_dtype(values, skipna=True) == "boolean"  # Parquet's bools with gaps
            booleans = present if bools else int(values.isin(list(BOOL_TEXT)).sum())
        counts["present"][col], counts["numbers"][col], counts["booleans"][col] = present, numbers, booleans
    return {"rows": len(part), **counts}


@dataclass(frozen=True)
class Columns:
    """The first pass over the whole table: rows, and per column which kind every value present is."""

    rows: int
    present: dict[str, int]
    numbers: dict[str, int]
    booleans: dict[str, int]

    def numeric(self, col: str) -> bool:
        """Every value present is a number (a column of nothing but missing values too, as pandas reads it)."""
        return self.numbers[col] == self.present[col]

    def boolean(self, col: str) -> bool:
        """Every value present is a boolean: pandas reads the column as bools, prediction will too."""
        return 0 < self.booleans[col] == self.present[col]


def merge_type_counts(parts: list[dict[str, Any]]) -> Columns:
    """The counts of every partition, added."""
    total: dict[str, dict[str, int]] = {"present": {}, "numbers": {}, "booleans": {}}
    for p in parts:
        for key, counts in total.items():
            for col, n in p[key].items():
                counts[col] = counts.get(col, 0) + n
    return Columns(sum(p["rows"] for p in parts), total["present"], total["numbers"], total["booleans"])


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
    #: columns pandas reads as booleans (true/false text): their values become bools, as when predicting
    booleans: tuple[str, ...] = ()
    #: per numeric feature, the share of its values sampled for its median (``sample_rate`` when empty)
    sample_rates: tuple[float, ...] = ()


def as_bools(values: pd.Series) -> pd.Series:
    """True/false text as pandas reads it (missing values stay missing, bools stay bools)."""
    if pd.api.types.is_bool_dtype(values):
        return values
    return values.map(lambda v: BOOL_TEXT.get(v, v) if isinstance(v, str) else v)


def coerce(
    part: pd.DataFrame, layout: Layout, start: int = 0
) -> tuple[pd.DataFrame, pd.Series, np.ndarray, np.ndarray]:
    """Features as the local trainer types them, the target, the test mask and the sample mask (both from
    the hash of each row's number in the file; ``start`` is the partition's first); rows without a target
    are dropped first, as the local trainer does."""
    X, target, held_out, draw = split(part, layout, start)
    return X, target, held_out, draw < layout.sample_rate


def split(part: pd.DataFrame, layout: Layout, start: int = 0) -> tuple[pd.DataFrame, pd.Series, np.ndarray, np.ndarray]:
    """:func:`coerce`, with each row's uniform draw in [0, 1) (from its hash) in place of the sample mask."""
    target = blank_as_missing(part[layout.target])
    if layout.numeric_target:
        target = pd.to_numeric(target, errors="coerce")
    keep = target.notna().to_numpy()
    part, target = part[keep], target[keep]
    hashes = row_hash(start, len(keep))[keep]
    held_out = (hashes & np.uint64(0xFFFFFFFF)).astype("float64") / _BUCKETS < layout.test_size
    if layout.booleans:
        part = part.assign(**{c: as_bools(part[c]) for c in layout.booleans if c in part.columns})
        if layout.target in layout.booleans:
            target = part[layout.target]
    if layout.train_only:
        held_out &= ~class_values(target, layout).isin(layout.train_only).to_numpy()
    draw = (hashes >> np.uint64(32)).astype("float64") / _BUCKETS
    X = preprocess.coerce_features(part, layout.roles)
    return X, target, held_out, draw


def transform(pre: Any, X: pd.DataFrame) -> np.ndarray:
    """``pre.transform(X)`` as floats; a partition with no such rows gives no rows (scikit-learn refuses)."""
    if not len(X):
        return np.zeros((0, len(pre.get_feature_names_out())), dtype="float64")
    return np.asarray(pre.transform(X), dtype="float64")


def class_values(target: pd.Series, layout: Layout) -> pd.Series:
    """The target as classes are counted: numbers for a numeric target (whole floats as integers), bools
    for true/false text, else text."""
    if layout.target in layout.booleans:
        return target.astype(bool)
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


def column_stats(part: pd.DataFrame, layout: Layout, start: int = 0) -> dict[str, Any]:
    """Moments over the training rows of one partition (medians from a hash sample of each column's values),
    infinite values over all its rows, the target's moments and sample (numeric), all target labels."""
    X, target, held_out, draw = split(part, layout, start)
    train = X[~held_out]
    train_draw = draw[~held_out]
    rates = layout.sample_rates or (layout.sample_rate,) * len(layout.roles.numeric)
    out: dict[str, Any] = {"n_train": len(train), "n_test": int(held_out.sum()), "dropped": len(part) - len(X)}
    for col, rate in zip(layout.roles.numeric, rates, strict=True):
        v = train[col].to_numpy(dtype="float64")
        n, mean, m2 = moments(v[np.isfinite(v)])
        infinite = int(np.isinf(X[col].to_numpy(dtype="float64")).sum())
        out[col] = {"n": n, "mean": mean, "m2": m2, "inf": infinite, "sample": v[train_draw < rate]}
    for col in layout.roles.categorical:
        out[col] = {"counts": train[col].value_counts(dropna=True).to_dict(), "missing": int(train[col].isna().sum())}
    if layout.numeric_target:
        y = target.to_numpy(dtype="float64")
        finite = y[np.isfinite(y)]
        out["__target__"] = {
            "moments": moments(finite),
            "inf": len(y) - len(finite),
            "min": float(finite.min()) if len(finite) else np.inf,
            "max": float(finite.max()) if len(finite) else -np.inf,
            "sample": y[draw < layout.sample_rate],
        }
    if layout.classes is None:
        labels = class_values(target, layout)
        out["__labels__"] = labels.value_counts().to_dict()
        out["__train_labels__"] = labels[~held_out].value_counts().to_dict()
    return out


def merge_stats(parts: list[dict[str, Any]], layout: Layout) -> dict[str, Any]:
    """The whole table's statistics from every partition's (moments merge, counts add, samples join)."""
    merged: dict[str, Any] = {k: sum(p[k] for p in parts) for k in ("n_train", "n_test", "dropped")}
    for col in layout.roles.numeric:
        n, mean, m2 = merge_moments([(p[col]["n"], p[col]["mean"], p[col]["m2"]) for p in parts])
        merged[col] = {
            "n": n,
            "mean": mean,
            "m2": m2,
            "inf": sum(p[col]["inf"] for p in parts),
            "sample": np.concatenate([p[col]["sample"] for p in parts]),
        }
    for col in layout.roles.categorical:
        counts: dict[Any, int] = {}
        for p in parts:
            for value, n in p[col]["counts"].items():
                counts[value] = counts.get(value, 0) + int(n)
        merged[col] = {"counts": counts, "missing": sum(p[col]["missing"] for p in parts)}
    if layout.numeric_target:
        targets = [p["__target__"] for p in parts]
        merged["target"] = {
            "moments": merge_moments([t["moments"] for t in targets]),
            "inf": sum(t["inf"] for t in targets),
            "min": min(t["min"] for t in targets),
            "max": max(t["max"] for t in targets),
            "sample": np.concatenate([t["sample"] for t in targets]),
        }
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
    # padded with the mode, which is kept already: a rarer value repeated would become frequent
    frame = {col: (vals + [modes[col]] * (length - len(vals))) for col, vals in columns.items()}
    medians, means, variances = {}, {}, {}
    n = stats["n_train"]
    for col in roles.numeric:
        s = stats[col]
        sample = s["sample"][~np.isnan(s["sample"])]
        if s["n"] == 0 or len(sample) == 0:
            raise JobError(f"The feature column {col!r} holds no numbers in the training rows; leave it out.")
        med = float(np.median(sample))
        _, mean, m2 = merge_moments([(s["n"], s["mean"], s["m2"]), (n - s["n"], med, 0.0)])  # missing -> median
        medians[col], means[col], variances[col] = med, mean, m2 / n
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
    "BLOCKSIZE",
    "Columns",
    "Layout",
    "class_values",
    "coerce",
    "column_stats",
    "fitted_preprocessor",
    "label_codes",
    "merge_stats",
    "pattern_reason",
    "read_frame",
    "split",
    "transform",
]
