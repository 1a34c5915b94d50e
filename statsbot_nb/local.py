"""The notebook's view of the local model store: a DataFrame of models, and one model as an object.

``models()`` lists ``<STATSBOT_HOME>/models`` newest first; ``model(id_or_display_name)`` returns a
:class:`LocalModel` that shows itself as an HTML card in Jupyter, draws its plots from the artefacts saved at
training time (so they work after the data is gone), predicts in the notebook with the stored
preprocessing, and can be renamed or deleted under the same rules as the server's jobs (this module calls
the very same store functions, so a model renamed here is renamed for the bot too).

Models saved by older headless workers (no artefacts, no checksums) are listed and shown with what they
have; their plots say why they are missing, and ``predict`` is refused by the store until the user runs
``statsbot-worker trust-model <id>``, because loading an unchecked pickle runs code.

Nothing heavy is imported at module level (pandas, numpy and matplotlib load on first use), so
``import statsbot_nb`` stays cheap; IPython and ipywidgets are never imported here.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import models_dir, statsbot_home
from .context import JobSettings
from .errors import JobError, StatsbotError
from .handlers.params import custom_name
from .ml import store
from .ml.headline import headline_metric, headline_text
from .settings import job_settings, worker_dirs

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

MODEL_COLUMNS = (
    "model_id",
    "display_name",
    "model_type",
    "task_type",
    "target_column",
    "n_features",
    "headline_metric",
    "score",
    "created_at",
)


class ModelLookupError(StatsbotError, KeyError):
    """``model(...)`` could not pick one model; ``str(exc)`` is the sentence (not KeyError's quoted repr)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ModelNotFound(ModelLookupError):
    """No model has this id or display name; the message lists close matches."""


class AmbiguousModel(ModelLookupError):
    """Several models share this display name; the message lists their ids."""


def _home(home: Path | None) -> Path:
    return Path(home).expanduser() if home is not None else statsbot_home()


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value if isinstance(value, str) else str(value)


def models(home: Path | None = None) -> pd.DataFrame:
    """The local model store as a DataFrame, newest first, one row per model.

    Columns: ``model_id, display_name, model_type, task_type, target_column, n_features,
    headline_metric, score, created_at``. ``headline_metric`` names the metric a model is judged by
    (``"r2"`` for regression, ``"accuracy"`` for classification) and ``score`` is its value on the
    held-out rows, so one column sorts and compares models of a task. ``n_features`` is a nullable integer;
    ``created_at`` is the ISO text the worker wrote (older workers wrote local times without a zone, so it is
    not converted). Fields a model lacks (older workers) are missing values, never an error; an empty store
    gives an empty DataFrame with these columns.
    """
    import pandas as pd

    rows = []
    for entry in store.list_models(models_dir(_home(home))):
        features = entry.get("feature_columns")
        metric, score = headline_metric(entry)
        rows.append(
            {
                "model_id": entry["model_id"],
                "display_name": _text(entry.get("display_name")),
                "model_type": _text(entry.get("model_type")),
                "task_type": _text(entry.get("task_type")),
                "target_column": _text(entry.get("target_column")),
                "n_features": len(features) if isinstance(features, list) else None,
                "headline_metric": metric,
                "score": score,
                "created_at": _text(entry.get("created_at")),
            }
        )
    frame = pd.DataFrame.from_records(rows, columns=list(MODEL_COLUMNS))
    frame["n_features"] = frame["n_features"].astype("Int64")
    frame["score"] = frame["score"].astype("float64")
    return frame


def compare(metric: str, task: str | None = None, home: Path | None = None) -> Figure:
    """A bar chart of ``metric`` (e.g. ``"r2"``, ``"accuracy"``, ``"f1"``) across the local models of ``task``.

    Models without the metric are left out (and counted on the chart).
    """
    from .ml.plots import comparison_plot

    rows = [e for e in store.list_models(models_dir(_home(home))) if task is None or e.get("task_type") == task]
    return comparison_plot(rows, metric)


def model(id_or_display_name: str, home: Path | None = None) -> LocalModel:
    """The model with this exact id, else the one with this exact display name.

    Raises :class:`AmbiguousModel` (listing the ids) when several models share the name, and
    :class:`ModelNotFound` (a ``KeyError``, listing close matches) when nothing matches.
    """
    key = id_or_display_name
    folder = models_dir(_home(home))
    entries = store.list_models(folder)
    if not isinstance(key, str) or not key.strip():
        raise ModelNotFound(f"Give a model id or display name as text, not {key!r}; statsbot_nb.models() lists them.")
    matches = [e for e in entries if e["model_id"] == key] or [e for e in entries if e.get("display_name") == key]
    if len(matches) > 1:
        ids = ", ".join(e["model_id"] for e in matches)
        raise AmbiguousModel(
            f"{len(matches)} models are named {key!r} ({ids}); use the model id instead, or rename one of them."
        )
    if matches:
        return LocalModel(folder, matches[0]["model_id"])
    names = [str(e.get("display_name")) for e in entries] + [e["model_id"] for e in entries]
    close = [n for n in names if n.casefold() == key.casefold()]
    close += difflib.get_close_matches(key, names, n=5, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(n) for n in dict.fromkeys(close))}?" if close else ""
    where = f"the model store ({folder})" if entries else f"the model store ({folder}), which is empty"
    raise ModelNotFound(
        f"There is no model with the id or name {key!r} in {where}.{hint} statsbot_nb.models() lists every model."
    )


class PlotKinds(dict[str, "str | None"]):
    """Plot kind -> None when ``model.plot(kind)`` draws it, else the sentence saying why it cannot.

    A plain dict, shown in words: a bare ``{'roc': None, ...}`` left a reader guessing what None meant.
    """

    def __repr__(self) -> str:
        if not self:
            return "No plot kinds for this model."
        width = max(len(kind) for kind in self)
        lines = [
            f"{kind:<{width}}  {'can be drawn: model.plot(' + repr(kind) + ')' if why is None else why}"
            for kind, why in self.items()
        ]
        return "\n".join(["Plot kinds (None when it can be drawn, else why it cannot):", *lines])

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


class LocalModel:
    """One model of the local store: its metadata, metrics, plots, and predict/rename/delete.

    Build it with :func:`model`. The metadata is read once (``rename`` refreshes it); artefacts are loaded
    on first use. After :meth:`delete` the object only describes what was deleted.
    """

    def __init__(self, store_dir: Path, model_id: str) -> None:
        self.store_dir = Path(store_dir)
        self.model_id = model_id
        meta = store.read_metadata(store.model_dir(self.store_dir, model_id))
        if meta is None:
            raise ModelNotFound(f"Model {model_id} has no readable metadata.json in {self.store_dir}.")
        self._meta: dict[str, Any] = meta
        self._artefacts: dict[str, Any] | None = None
        self._artefacts_loaded = False
        self.deleted = False

    # -- what it is -----------------------------------------------------------------------------------

    @property
    def metadata(self) -> dict[str, Any]:
        """A copy of ``metadata.json`` (edit the model with :meth:`rename`, not through this dict)."""
        return copy.deepcopy(self._meta)

    @property
    def display_name(self) -> str:
        """The name shown in the bot and the notebook (the custom name, else a generated one, else the id)."""
        return str(self._meta.get("display_name") or self._meta.get("custom_name") or self.model_id)

    @property
    def metrics(self) -> dict[str, Any]:
        """Held-out metrics (``r2, mse, rmse, mae`` or ``accuracy, precision, recall, f1, roc_auc, ...``)."""
        metrics = self._meta.get("metrics")
        return dict(metrics) if isinstance(metrics, dict) else {}

    @property
    def feature_columns(self) -> list[str]:
        """The input columns the model needs, in training order."""
        features = self._meta.get("feature_columns")
        return [str(f) for f in features] if isinstance(features, list) else []

    @property
    def task_type(self) -> str | None:
        """``"regression"`` or ``"classification"`` (None if an older worker did not record it)."""
        return _text(self._meta.get("task_type"))

    @property
    def model_type(self) -> str | None:
        """The model family, for example ``"random_forest"``."""
        return _text(self._meta.get("model_type"))

    @property
    def target_column(self) -> str | None:
        """The column the model predicts."""
        return _text(self._meta.get("target_column"))

    @property
    def created_at(self) -> str | None:
        """When the model was saved (ISO text, as the worker wrote it)."""
        return _text(self._meta.get("created_at"))

    @property
    def artefacts(self) -> dict[str, Any] | None:
        """The held-out sample saved for plots (``y_true``, ``y_pred``, ``proba``, ``class_labels``) or None."""
        if not self._artefacts_loaded and not self.deleted:
            self._artefacts = store.load_artefacts(self.store_dir, self.model_id) or None
            self._artefacts_loaded = True
        return self._artefacts

    @property
    def plot_kinds(self) -> PlotKinds:
        """Every plot kind for this model's task: None when it can be drawn, else the reason it cannot."""
        from .ml.plots import available_kinds

        return PlotKinds(available_kinds(self._meta, self.artefacts))

    # -- what it does ---------------------------------------------------------------------------------

    def plot(self, kind: str | None = None, *, max_points: int = 5000) -> Figure:
        """A matplotlib Figure of one plot kind (None: the most telling one for the task).

        Raises a :class:`~statsbot_nb.ml.plots.PlotError` sentence for an unknown kind (listing the valid
        ones) or one this model cannot draw (saying why, for example no artefacts from an older worker).
        """
        from .ml.plots import make_plot

        return make_plot(kind, self._meta, self.artefacts, max_points=max_points)

    def _settings(self, allowed_dirs: Iterable[str | os.PathLike[str]] = ()) -> JobSettings:
        return job_settings(self.store_dir.parent, allow=(*worker_dirs(), *allowed_dirs))

    def _alive(self) -> None:
        if self.deleted:
            raise JobError(f"Model {self.model_id} was deleted; statsbot_nb.models() lists the models left.")

    def predict(
        self,
        data: pd.DataFrame | str | os.PathLike[str],
        *,
        allowed_dirs: Iterable[str | os.PathLike[str]] = (),
        output: str | os.PathLike[str] | None = None,
    ) -> pd.DataFrame:
        """Predict on a DataFrame, or on a table file the worker may read; return input + prediction columns.

        The result has the input's columns followed by ``prediction`` (in the user's own labels) and, for
        classifiers, one ``proba_<class>`` column per class, as the ``predict`` job writes them. A path goes
        through the worker's file policy (your home, the working folder, ``STATSBOT_ALLOWED_DIRS`` and
        ``allowed_dirs``); ``output`` (optional) writes the result there atomically under the same policy.
        The model is loaded checksum-verified, with the preprocessing stored in it.
        """
        import pandas as pd

        from .handlers.predict import open_source
        from .ml.data import AtomicTableWriter, iter_table_chunks
        from .ml.predict import CHUNK_ROWS, check_features, load_predictor, predict_chunks, with_predictions
        from .paths import PathPolicy

        self._alive()
        settings = self._settings(allowed_dirs)
        policy = PathPolicy.from_settings(settings)
        if not isinstance(data, (pd.DataFrame, str, os.PathLike)):
            raise JobError(
                f"predict() takes a pandas DataFrame or the path of a table file, not {type(data).__name__}."
            )
        predictor = load_predictor(settings.models_dir, self.model_id)
        chunks: Iterable[pd.DataFrame]
        if isinstance(data, pd.DataFrame):
            where = "The DataFrame"
            check_features(list(data.columns), predictor.features, where, self.model_id, "add them")
            chunks = (data.iloc[i : i + CHUNK_ROWS] for i in range(0, len(data), CHUNK_ROWS))
        else:
            source, _ = open_source(policy, data, predictor, "add them to the file")
            where = source.name
            chunks = iter_table_chunks(source, chunk_rows=CHUNK_ROWS)
        target = policy.open_output(output) if output is not None else None
        try:
            parts = [with_predictions(chunk, extra) for chunk, extra in predict_chunks(predictor, chunks)]
        finally:
            if not isinstance(data, pd.DataFrame):
                source.close()
        if not parts:
            raise JobError(f"{where} has no rows to predict on.")
        result = pd.concat(parts) if len(parts) > 1 else parts[0]
        if not isinstance(data, pd.DataFrame):
            result = result.reset_index(drop=True)
        if target is not None:
            with target, AtomicTableWriter(target, replace="any") as writer:  # the user's own request
                writer.write(result)
        return result

    def rename(self, name: str) -> LocalModel:
        """Set the display name (1-100 characters, no control characters), as the bot's rename does."""
        self._alive()
        store.rename_model(self.store_dir, self.model_id, custom_name(name))
        self._meta = store.read_metadata(store.model_dir(self.store_dir, self.model_id)) or self._meta
        return self

    def delete(self) -> None:
        """Remove the model from the store (the bot's delete_model rules); this object then says so."""
        self._alive()
        store.remove_model(self.store_dir, self.model_id)
        self.deleted = True
        self._artefacts, self._artefacts_loaded = None, True

    # -- how it looks ---------------------------------------------------------------------------------

    def _headline(self) -> str:
        return headline_text(self._meta, sep=" ", labelled=True)

    def _safe_kinds(self) -> dict[str, str | None]:
        try:
            return self.plot_kinds
        except Exception as exc:  # a damaged artefacts file must not break the repr
            return {"plots": f"The saved artefacts could not be read ({type(exc).__name__})."}

    def __repr__(self) -> str:
        parts = [p for p in (self.model_type, self.task_type) if p]
        facts = [" ".join(parts) or "unknown model type"]
        if self.target_column:
            facts.append(f"target {self.target_column!r}")
        facts.append(f"{len(self.feature_columns)} feature(s)")
        if self._headline():
            facts.append(self._headline())
        lines = [
            f"<LocalModel {self.display_name!r} ({self.model_id}){' DELETED' if self.deleted else ''}",
            "  " + " · ".join(facts),
        ]
        if not self.deleted:
            kinds = self._safe_kinds()
            drawable = [k for k, why in kinds.items() if why is None]
            lines.append(f"  created {self.created_at or 'unknown'} · plots: {', '.join(drawable) or 'none'}")
        return "\n".join(lines) + ">"

    def _repr_html_(self) -> str:
        from .ui.card import model_card_html

        return model_card_html(self)


__all__ = ["MODEL_COLUMNS", "AmbiguousModel", "LocalModel", "ModelLookupError", "ModelNotFound", "model", "models"]
