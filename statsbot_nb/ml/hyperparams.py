"""The hyperparameter names a library may be given: what the worker manages itself, and the native names.

``MANAGED`` lists options no job may set (the worker's own progress machinery, and options that make a
library read or write files). XGBoost, LightGBM and CatBoost take their own parameter names and aliases
next to their scikit-learn wrapper names (the bot sends ``bagging_fraction``, ``eta``,
``num_iterations``...): :func:`native_names` reads each library's alias table where it exposes one and
:func:`to_canonical` maps every spelling to one keyword, the way the library itself does.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import JobError

# Parameters the worker manages itself (progress reporting grows models step by step).
MANAGED = {
    "warm_start": "the worker uses it to report progress while the model grows",
    "callbacks": "the worker installs its own progress callback",
    "early_stopping_rounds": "it needs a validation set, which this worker does not pass to the library",
}
# Parameters that would make a library read or write files of its own choosing.
MANAGED.update(
    dict.fromkeys(
        (
            "train_dir",
            "allow_writing_files",
            "save_snapshot",
            "snapshot_file",
            "snapshot_interval",
            "memory",
            "input_model",
            "output_model",
            "output_borders",
            "input_borders",
            "output_result",
            "init_score_file",
            "forcedsplits_filename",
            "forcedbins_filename",
            "convert_model",
            "data",
            "valid",
            "log_file",
        ),
        "it makes the library read or write files, which jobs may not do",
    )
)


# Native parameter names of the boosting libraries. The bot sends each library's own names
# (``bagging_fraction``, ``eta``, ``num_iterations``...), which the libraries accept next to their
# scikit-learn wrapper names; every spelling is mapped to one canonical keyword (the wrapper's name when
# it has one), so our defaults are replaced rather than duplicated and progress reads the real round count.
NATIVE_LIBRARIES = ("xgboost", "lightgbm", "catboost")
_FILES = MANAGED["data"]
# LightGBM options (besides those in MANAGED) that read or write files or join a training cluster.
_LIGHTGBM_REFUSED = {
    **dict.fromkeys(("config", "parser_config_file", "machine_list_filename", "save_binary", "snapshot_freq"), _FILES),
    **dict.fromkeys(
        ("machines", "num_machines", "local_listen_port"),
        "it makes the library open network connections to other computers, which jobs may not do",
    ),
    "task": "it makes the library do something other than train (predict, convert or save files)",
}
# Used only if lightgbm stops exposing its alias table: the groups behind its scikit-learn names.
_LIGHTGBM_FALLBACK: dict[str, tuple[str, ...]] = {
    "num_iterations": (
        "n_estimators",
        "num_iteration",
        "n_iter",
        "num_tree",
        "num_trees",
        "num_round",
        "num_rounds",
        "nrounds",
        "num_boost_round",
        "max_iter",
    ),
    "learning_rate": ("shrinkage_rate", "eta"),
    "num_leaves": ("num_leaf", "max_leaves", "max_leaf", "max_leaf_nodes"),
    "boosting": ("boosting_type", "boost"),
    "bagging_fraction": ("subsample", "sub_row", "bagging"),
    "bagging_freq": ("subsample_freq",),
    "feature_fraction": ("colsample_bytree", "sub_feature"),
    "lambda_l1": ("reg_alpha", "l1_regularization"),
    "lambda_l2": ("reg_lambda", "lambda", "l2_regularization"),
    "min_data_in_leaf": ("min_child_samples", "min_data_per_leaf", "min_data", "min_samples_leaf"),
    "min_sum_hessian_in_leaf": ("min_child_weight", "min_sum_hessian_per_leaf", "min_sum_hessian", "min_hessian"),
    "min_gain_to_split": ("min_split_gain",),
    "seed": ("random_state", "random_seed"),
    "num_threads": ("n_jobs", "num_thread", "nthread", "nthreads"),
    "bin_construct_sample_cnt": ("subsample_for_bin",),
    "verbosity": ("verbose",),
    "early_stopping_round": ("early_stopping_rounds", "early_stopping", "n_iter_no_change"),
}
# XGBoost has no alias table in Python: its documented parameters (doc/parameter.rst, 3.x) that the
# scikit-learn wrapper does not name, and the documented aliases of those it does. ``num_boost_round`` is
# ``xgboost.train``'s round count (``num_round`` on the command line).
_XGBOOST_GROUPS: dict[str, tuple[str, ...]] = {
    "eta": ("learning_rate",),
    "gamma": ("min_split_loss",),
    "lambda": ("reg_lambda",),
    "alpha": ("reg_alpha",),
    "seed": ("random_state",),
    "nthread": ("n_jobs",),
    "num_boost_round": ("n_estimators", "num_round"),
    **dict.fromkeys(
        (
            "disable_default_eval_metric",
            "seed_per_iteration",
            "updater",
            "refresh_leaf",
            "process_type",
            "max_cached_hist_node",
            "sample_type",
            "normalize_type",
            "rate_drop",
            "one_drop",
            "skip_drop",
            "feature_selector",
            "top_k",
            "tweedie_variance_power",
            "huber_slope",
            "quantile_alpha",
            "aft_loss_distribution",
            "aft_loss_distribution_scale",
            "lambdarank_pair_method",
            "lambdarank_num_pair_per_sample",
            "lambdarank_normalization",
            "lambdarank_score_normalization",
            "lambdarank_unbiased",
            "lambdarank_bias_norm",
            "ndcg_exp_gain",
        ),
        (),
    ),
}
# Used only if catboost stops exposing ``_process_synonyms_groups``: its synonym groups (1.2).
_CATBOOST_FALLBACK: dict[str, tuple[str, ...]] = {
    "learning_rate": ("eta",),
    "border_count": ("max_bin",),
    "depth": ("max_depth",),
    "rsm": ("colsample_bylevel",),
    "random_seed": ("random_state",),
    "l2_leaf_reg": ("reg_lambda",),
    "iterations": ("n_estimators", "num_boost_round", "num_trees"),
    "od_wait": ("early_stopping_rounds",),
    "custom_metric": ("custom_loss",),
    "max_leaves": ("num_leaves",),
    "min_data_in_leaf": ("min_child_samples",),
    "loss_function": ("objective",),
}
# CatBoost's distinct ways to set how much it prints; at most one may be given.
_CATBOOST_VERBOSITY = frozenset(("verbose", "logging_level", "silent", "verbose_eval"))


@dataclass(frozen=True)
class NativeNames:
    """Every spelling one boosting library accepts for its parameters, and what each one becomes.

    ``canonical`` maps each accepted spelling to the keyword the estimator is built with; ``shown`` is
    how a canonical name appears in the list of valid names (``subsample/bagging_fraction``);
    ``kwargs_only`` are canonical names outside the wrapper's signature (passed on as ``**kwargs``);
    ``refused`` maps spellings that may not be set to the reason; ``exclusive`` groups distinct names that
    set one thing (at most one may be given, and giving one replaces our default for the group).
    """

    library: str
    canonical: dict[str, str]
    shown: dict[str, str]
    kwargs_only: frozenset[str]
    refused: dict[str, str]
    exclusive: tuple[frozenset[str], ...] = ()

    def describe(self, valid: list[str]) -> str:
        """The valid names for an error sentence, with the library's own spelling next to ours."""
        text = ", ".join(self.shown.get(name, name) for name in valid)
        listed = {part for name in valid for part in self.shown.get(name, name).split("/")}
        hidden = sorted(s for s, c in self.canonical.items() if s not in listed and c in valid)
        if hidden:
            example = next((s for s in hidden if self.canonical[s] in self.shown), hidden[0])
            text += (
                f" ({self.library} also accepts its other documented aliases of these, such as "
                f"{example} for {self.canonical[example]})"
            )
        return text


@functools.cache
def native_names(prefix: str, cls: Callable[..., Any]) -> NativeNames:
    """The :class:`NativeNames` of ``cls`` (a wrapper class of ``prefix``'s library), read once.

    The wrapper's names are its constructor's and its base classes' (``XGBClassifier`` takes most of its
    arguments as ``**kwargs`` and passes them to ``XGBModel``).
    """
    wrapper = frozenset(
        name
        for klass in getattr(cls, "__mro__", (cls,))
        if "__init__" in vars(klass) and klass is not object
        for name in inspect.signature(klass.__init__).parameters
        if name not in ("self", "args", "kwargs")
    )
    if prefix == "lightgbm":
        return _name_table("LightGBM", _lightgbm_groups(), wrapper, _LIGHTGBM_REFUSED, show_all=False)
    if prefix == "xgboost":
        return _name_table("XGBoost", _XGBOOST_GROUPS, wrapper, {}, show_all=True)
    return _name_table(
        "CatBoost",
        _catboost_groups(wrapper),
        wrapper,
        {"callback": MANAGED["callbacks"]},
        show_all=True,
        exclusive=(_CATBOOST_VERBOSITY & wrapper,),
    )


def _lightgbm_groups() -> dict[str, tuple[str, ...]]:
    """LightGBM's own table (native name -> aliases) from the installed library, else the fallback."""
    try:
        from lightgbm.basic import _ConfigAliases

        table = _ConfigAliases._get_all_param_aliases()
        return {name: tuple(a for a in aliases if a != name) for name, aliases in table.items()}
    except Exception:  # a private API: if it moves, the names the bot sends keep working
        return dict(_LIGHTGBM_FALLBACK)


def _catboost_groups(wrapper: frozenset[str]) -> dict[str, tuple[str, ...]]:
    """CatBoost's synonym groups, read from the installed library by letting it rename each name.

    CatBoost keeps its synonyms in code, not a table: ``_process_synonyms_groups`` renames an alias to
    its group's first name, and ``_process_synonyms`` turns ``objective`` into ``loss_function``.
    """
    try:
        from catboost.core import _process_synonyms_groups
    except ImportError:
        return dict(_CATBOOST_FALLBACK)
    groups: dict[str, list[str]] = {"loss_function": ["objective"]}
    for name in sorted(wrapper):
        probe: dict[str, Any] = {name: 1}
        try:
            _process_synonyms_groups(probe)
        except Exception:
            continue
        renamed = next(iter(probe), name)
        if renamed != name:
            groups.setdefault(renamed, []).append(name)
    if len(groups) == 1:
        return dict(_CATBOOST_FALLBACK)
    return {name: tuple(aliases) for name, aliases in groups.items()}


def _name_table(
    library: str,
    groups: dict[str, tuple[str, ...]],
    wrapper: frozenset[str],
    refused_roots: dict[str, str],
    *,
    show_all: bool,
    exclusive: tuple[frozenset[str], ...] = (),
) -> NativeNames:
    """Map every spelling in ``groups`` (native name -> its aliases) to one canonical name.

    The canonical name is the wrapper's own spelling when the group has one (``bagging_fraction`` ->
    ``subsample``), else the native name, so both reach the library as the same parameter. A group is
    refused as a whole when any of its spellings is in ``MANAGED`` or ``refused_roots``. ``show_all``
    lists every alias in error sentences (short tables); otherwise only the native name is shown.
    """
    roots = {**MANAGED, **refused_roots}
    canonical = {name: name for name in wrapper}
    shown: dict[str, str] = {}
    refused = {name: roots[name] for name in wrapper if name in roots}
    for native, aliases in groups.items():
        members = (native, *aliases)
        target = next((m for m in members if m in wrapper), native)
        reason = next((roots[m] for m in members if m in roots), None)
        if reason is not None:
            refused.update(dict.fromkeys(members, reason))
            continue
        canonical.update(dict.fromkeys(members, target))
        others = [m for m in members if m != target] if show_all else [native] if native != target else []
        if others:
            shown[target] = "/".join([target, *others])
    for name in refused:
        canonical.pop(name, None)
    return NativeNames(library, canonical, shown, frozenset(set(canonical.values()) - wrapper), refused, exclusive)


def to_canonical(
    native: NativeNames, user: dict[str, Any], defaults: dict[str, Any], model_type: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """``user`` and ``defaults`` keyed by canonical names, plus canonical name -> the name the user wrote.

    Refuses names the library may not be given here, and two spellings of one parameter (a library would
    quietly prefer one of them; the user should choose). A user value replaces our default for the same
    parameter whatever it is called, so no keyword reaches the estimator twice.
    """
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in user.items():
        if key in native.refused:
            raise JobError(f"The hyperparameter {key!r} cannot be set for {model_type}: {native.refused[key]}.")
        target = native.canonical.get(key, key)
        if target in spelled:
            raise JobError(
                f"The hyperparameters {spelled[target]!r} and {key!r} for {model_type} are two names for the "
                f"same {native.library} parameter ({target}); keep only one of them."
            )
        spelled[target] = key
        out[target] = value
    merged = {native.canonical.get(key, key): value for key, value in defaults.items()}
    for group in native.exclusive:
        given = [spelled[name] for name in out if name in group]
        if len(given) > 1:
            names = " and ".join(repr(n) for n in given)
            raise JobError(
                f"The hyperparameters {names} for {model_type} each set how much {native.library} "
                "prints; keep only one of them."
            )
        if given:
            merged = {key: value for key, value in merged.items() if key not in group}
    return out, merged, spelled


def check_plain(model_type: str, name: str, value: Any) -> None:
    """A native option with no default to compare against: a single value or a (nested) list of them."""

    def plain(item: Any) -> bool:
        if isinstance(item, (list, tuple)):
            return all(plain(v) for v in item)
        return item is None or isinstance(item, (bool, int, float, str))

    if not plain(value):
        raise JobError(
            f"The hyperparameter {name!r} for {model_type} must be a single value such as a word "
            f"or a number, or a list of them, not {value!r}."
        )


#: Upper bounds (canonical names, any library) on options whose size alone could exhaust the user's
#: machine: a server may ask for any value, and LightGBM took 10 GB for ``max_bin=1e9`` on 200 rows.
SIZE_LIMITS: dict[str, int] = {
    "n_estimators": 100_000,
    "iterations": 100_000,  # boosting rounds and trees
    "max_bin": 65_535,
    "border_count": 65_535,  # histogram bins (CatBoost's own cap)
    "num_leaves": 131_072,
    "max_leaves": 131_072,  # LightGBM's own cap on leaves
}
#: Thread counts: a count far above the cores crashes LightGBM (segfault) and CatBoost (SIGFPE).
THREAD_OPTIONS = ("n_jobs", "thread_count")


def adjust(prefix: str | None, user: dict[str, Any], model_type: str) -> list[str]:
    """Bound what the user (the server) asked for, in place; the notes say what was changed.

    Sizes above :data:`SIZE_LIMITS` are refused with a sentence; thread counts above this machine's
    cores become the number of cores; CatBoost's ``use_best_model`` (the bot's templates send it) is
    turned off, because CatBoost accepts it only with a validation set, which this worker does not pass.
    """
    notes: list[str] = []
    for name, limit in SIZE_LIMITS.items():
        value = user.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not value <= limit:
            raise JobError(
                f"The hyperparameter {name!r} for {model_type} is {value!r}; this worker allows at "
                f"most {limit:,}, so a request cannot exhaust the computer's memory or time."
            )
    cores = os.cpu_count() or 1
    for name in THREAD_OPTIONS:
        value = user.get(name)
        if (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and not -1 <= value <= cores
        ):
            user[name] = cores if value > 0 else -1
            notes.append(f"{name} {value!r} became {user[name]} (this computer has {cores} cores).")
    if prefix == "catboost" and user.get("use_best_model"):
        user["use_best_model"] = False
        notes.append(
            "use_best_model needs a validation set, which this worker does not pass to CatBoost, "
            "so the model after the last boosting round is kept."
        )
    return notes
