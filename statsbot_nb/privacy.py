"""Privacy levels: what a job's result may carry to the server, decided in one place.

The user picks one level for the whole worker (``--privacy``, ``connect(privacy=)``, the panel's dropdown):

- ``strict``: aggregates only. Metrics, row and class *counts*, column names, file sizes. No predicted
  value, no target label (classes are numbered ``#1``, ``#2``... in sorted label order), no quartile of
  the target, no row. ``predictions_sample`` is an empty list, which today's bot reads without failing.
- ``standard`` (the default): what the bot needs to be useful. At most :data:`MAX_PREDICTIONS` predicted
  numbers per job, at most :data:`MAX_LABELS` class labels per list (the rest are counted in one entry),
  target quartiles without the minimum and maximum (single rows' values). No rows.
- ``share``: today's sharing, which the user turned on deliberately: ``load_data`` sends a table's first
  rows, a prediction sends its first ten input rows, label lists and quartiles are complete.

Every function here is pure (dicts in, dicts out), so the handlers call it on the ``data`` they built and
the tests can check each level without a socket. Why in the handlers and not in the driver: the handler
knows what each field means; the driver sees only text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, cast, get_args

from .errors import ConfigError

PrivacyLevel = Literal["strict", "standard", "share"]
LEVELS: tuple[str, ...] = get_args(PrivacyLevel)
DEFAULT_LEVEL: PrivacyLevel = "standard"

#: Predicted numbers sent per job (strict sends none).
MAX_PREDICTIONS = 10
#: Labels named in one list at ``standard``; the rest are counted in one entry.
MAX_LABELS = 20
#: What ``predictions_meaning`` says when the predictions are withheld.
WITHHELD = "withheld: the worker's privacy level is strict"
#: Quartile keys that are one row's value (not an aggregate of many): kept only at ``share``.
_ROW_VALUED_QUARTILES = ("min", "max")
#: Prefix of the probability columns the worker writes (``proba_<label>``): their names carry labels.
PROBA_PREFIX = "proba_"


def check_level(value: object, option: str = "privacy") -> PrivacyLevel:
    """``value`` as a privacy level, or a :class:`ConfigError` naming ``option`` and the three choices."""
    if isinstance(value, str) and value.strip().lower() in LEVELS:
        return cast(PrivacyLevel, value.strip().lower())
    raise ConfigError(f"{option} must be one of {', '.join(LEVELS)}; not {value!r}.")


def resolve_level(privacy: object | None, share_data: bool = False) -> PrivacyLevel:
    """The level for a ``privacy`` choice and the older ``share_data`` switch (``True`` means ``share``).

    ``privacy=None`` means "not chosen": ``share`` when ``share_data`` is on, else the default. Asking for
    both ``share_data=True`` and a level other than ``share`` is a contradiction, refused in a sentence.
    """
    if privacy is None:
        return "share" if share_data else DEFAULT_LEVEL
    level = check_level(privacy)
    if share_data and level != "share":
        raise ConfigError(
            f"share_data=True means privacy 'share', but privacy {level!r} was also asked for; choose one."
        )
    return level


def describe(level: str) -> str:
    """One sentence a person reads next to the switch."""
    return {
        "strict": "strict: only metrics, counts and column names leave; no predictions, labels or rows",
        "standard": "standard: metrics, at most 10 predictions per job and at most 20 labels; no rows",
        "share": "share: also table rows (load_data, prediction samples) and every label",
    }.get(level, level)


# -- train -----------------------------------------------------------------------------------------------


def shape_dataset_stats(stats: Mapping[str, Any], level: str) -> dict[str, Any]:
    """``dataset_stats`` of a train result as ``level`` allows (see the module's table)."""
    out = {k: v for k, v in stats.items() if k not in ("class_distribution", "quartiles")}
    dist = stats.get("class_distribution")
    if isinstance(dist, Mapping):
        out["class_distribution"] = shape_class_distribution(dist, level)
    quartiles = stats.get("quartiles")
    if isinstance(quartiles, Mapping) and level != "strict":
        keep = quartiles if level == "share" else {k: v for k, v in quartiles.items() if k not in _ROW_VALUED_QUARTILES}
        out["quartiles"] = dict(keep)
    return out


def shape_class_distribution(dist: Mapping[str, Any], level: str) -> dict[str, Any]:
    """``{label: {count, pct}}`` for the bot, with labels numbered (strict) or capped (standard).

    The bot formats each value's ``count`` and ``pct`` and sorts the keys, so every entry keeps that
    shape: strict keys are ``#01``, ``#02``... (zero-padded, so they sort as the labels did); at standard
    the :data:`MAX_LABELS` largest classes keep their labels and one ``(N other classes)`` entry sums the
    rest.
    """
    items = list(dist.items())
    if level == "strict":
        width = len(str(len(items)))
        return {f"#{i:0{width}d}": dict(value) for i, (_, value) in enumerate(items, 1)}
    if level == "share" or len(items) <= MAX_LABELS:
        return {k: dict(v) for k, v in items}
    ranked = sorted(items, key=lambda kv: -_count(kv[1]))
    kept = {k: dict(v) for k, v in ranked[:MAX_LABELS]}
    rest = ranked[MAX_LABELS:]
    kept[f"({len(rest)} other classes)"] = {
        "count": sum(_count(v) for _, v in rest),
        "pct": round(sum(_pct(v) for _, v in rest), 1),
    }
    return kept


def _count(value: Any) -> int:
    return int(value.get("count", 0)) if isinstance(value, Mapping) else 0


def _pct(value: Any) -> float:
    return float(value.get("pct", 0.0)) if isinstance(value, Mapping) else 0.0


# -- predict ---------------------------------------------------------------------------------------------


def shape_predictions(numbers: list[float], meaning: str, level: str) -> tuple[list[float], str]:
    """The predicted numbers and their meaning as ``level`` allows: none at strict, at most ten otherwise."""
    if level == "strict":
        return [], WITHHELD
    return list(numbers[:MAX_PREDICTIONS]), meaning


def shares_rows(level: str) -> bool:
    """True when table rows may leave (``load_data``, a prediction's ``dataframe_sample``)."""
    return level == "share"


# -- column names ----------------------------------------------------------------------------------------


def shape_columns(columns: Iterable[Any], level: str) -> list[str]:
    """Column names as ``level`` allows: at strict the worker's own ``proba_<label>`` names are numbered.

    Column names are the user's schema and are sent at every level, but a predictions file the worker
    wrote has one ``proba_<label>`` column per class, and those names are the target's values. At strict
    they become ``proba_#1``, ``proba_#2``...; at standard the callers' own caps on column lists (at most
    20 or 50 names) bound them.
    """
    names = [str(c) for c in columns]
    if level != "strict":
        return names
    out: list[str] = []
    n = 0
    for name in names:
        if name.startswith(PROBA_PREFIX):
            n += 1
            out.append(f"{PROBA_PREFIX}#{n}")
        else:
            out.append(name)
    return out


__all__ = [
    "DEFAULT_LEVEL",
    "LEVELS",
    "MAX_LABELS",
    "MAX_PREDICTIONS",
    "PrivacyLevel",
    "check_level",
    "describe",
    "resolve_level",
    "shape_class_distribution",
    "shape_columns",
    "shape_dataset_stats",
    "shape_predictions",
    "shares_rows",
]
