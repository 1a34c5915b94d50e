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
import html
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import models_dir, statsbot_home
from .context import JobContext, JobSettings
from .errors import JobError, StatsbotError
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
_MAX_FEATURES_SHOWN = 30


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


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "—" if value is None else str(value)
    if not math.isfinite(value):
        return "—"
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.4g}"


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
    def plot_kinds(self) -> dict[str, str | None]:
        """Every plot kind for this model's task: None when it can be drawn, else the reason it cannot."""
        from .ml.plots import available_kinds

        return available_kinds(self._meta, self.artefacts)

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

        from .ml.data import AtomicTableWriter, iter_table_chunks, read_columns
        from .ml.predict import CHUNK_ROWS, Predictor, check_features, feature_columns_of, with_predictions
        from .paths import PathPolicy

        self._alive()
        settings = self._settings(allowed_dirs)
        policy = PathPolicy.from_settings(settings)
        if isinstance(data, pd.DataFrame):
            source, where = None, "The DataFrame"
        elif isinstance(data, (str, os.PathLike)):
            source = policy.readable(data)
            where = source.name
        else:
            raise JobError(
                f"predict() takes a pandas DataFrame or the path of a table file, not {type(data).__name__}."
            )
        target = policy.writable(output) if output is not None else None
        model_obj, encoders, meta = store.load_model(settings.models_dir, self.model_id)
        features = feature_columns_of(meta, self.model_id)
        if source is None:
            assert isinstance(data, pd.DataFrame)
            check_features(list(data.columns), features, where, self.model_id, "add them")
            chunks: Iterable[pd.DataFrame] = (data.iloc[i : i + CHUNK_ROWS] for i in range(0, len(data), CHUNK_ROWS))
        else:
            check_features(read_columns(source), features, where, self.model_id, "add them to the file")
            chunks = iter_table_chunks(source, chunk_rows=CHUNK_ROWS)
        predictor = Predictor(model_obj, encoders, meta, features)
        parts = [with_predictions(chunk, predictor.predict(chunk)) for chunk in chunks if len(chunk)]
        if not parts:
            raise JobError(f"{where} has no rows to predict on.")
        result = pd.concat(parts) if len(parts) > 1 else parts[0]
        if source is not None:
            result = result.reset_index(drop=True)
        if target is not None:
            with AtomicTableWriter(target) as writer:
                writer.write(result)
        return result

    def rename(self, name: str) -> LocalModel:
        """Set the display name (1-100 characters, no control characters), as the bot's rename does."""
        self._alive()
        store.set_model_name({"model_id": self.model_id, "custom_name": name}, JobContext(self._settings()))
        self._meta = store.read_metadata(store.model_dir(self.store_dir, self.model_id)) or self._meta
        return self

    def delete(self) -> None:
        """Remove the model from the store (the bot's delete_model rules); this object then says so."""
        self._alive()
        store.delete_model({"model_id": self.model_id}, JobContext(self._settings()))
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
        return _card(self)


_BOX = (
    "font-family:var(--jp-ui-font-family,system-ui,sans-serif);font-size:13px;line-height:1.45;"
    "max-width:760px;border:1px solid rgba(128,128,128,.35);border-radius:6px;padding:10px 14px"
)
_BADGE = "display:inline-block;padding:0 7px;margin-left:6px;border-radius:9px;font-size:11px;"
_CELL = "text-align:left;padding:2px 12px 2px 0;vertical-align:top;border:none"


def _row(label: str, value_html: str) -> str:
    return (
        f'<tr><th style="{_CELL};opacity:.7;font-weight:normal">{html.escape(label)}</th>'
        f'<td style="{_CELL}">{value_html}</td></tr>'
    )


def _facts(m: LocalModel, meta: dict[str, Any]) -> list[str]:
    e = html.escape
    rows = [_row("Target", f"<code>{e(m.target_column)}</code>" if m.target_column else "—")]
    features = m.feature_columns
    shown = ", ".join(f"<code>{e(f)}</code>" for f in features[:_MAX_FEATURES_SHOWN])
    more = f" … and {len(features) - _MAX_FEATURES_SHOWN} more" if len(features) > _MAX_FEATURES_SHOWN else ""
    rows.append(_row(f"Features ({len(features)})", (shown + e(more)) or "—"))
    importances = meta.get("feature_importances")
    if isinstance(importances, dict) and importances:
        top = sorted(
            ((str(k), v) for k, v in importances.items() if isinstance(v, (int, float))),
            key=lambda kv: kv[1],
            reverse=True,
        )[:3]
        rows.append(_row("Most important", ", ".join(f"<code>{e(k)}</code> {v:.0%}" for k, v in top)))
    stats = meta.get("dataset_stats") if isinstance(meta.get("dataset_stats"), dict) else {}
    if stats:
        shape = (
            f"{_fmt_int(stats.get('n_rows'))} rows: {_fmt_int(stats.get('n_train'))} to train, "
            f"{_fmt_int(stats.get('n_test'))} held out"
        )
        if stats.get("dropped_rows"):
            shape += f" ({_fmt_int(stats.get('dropped_rows'))} dropped for a missing target)"
        rows.append(_row("Data", e(shape)))
        classes = stats.get("class_distribution")
        if isinstance(classes, dict) and classes:
            parts = [_class_share(k, v) for k, v in list(classes.items())[:12]]
            rows.append(_row("Classes", e(" · ".join(p for p in parts if p) + (" …" if len(classes) > 12 else ""))))
    if meta.get("source_file"):
        rows.append(_row("Trained on", f"<code>{e(str(meta['source_file']))}</code>"))
    when = m.created_at or "unknown"
    if isinstance(meta.get("training_time"), (int, float)):
        when += f" (fit in {meta['training_time']:.1f} s)"
    rows.append(_row("Created", e(when)))
    return rows


def _class_share(label: str, value: Any) -> str:
    """``label 39.9%`` from the bot's ``{count, pct}`` shape; ``label 71`` from a plain count (older models)."""
    if isinstance(value, dict) and isinstance(value.get("pct"), (int, float)):
        return f"{label} {value['pct']}%"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{label} {value}"
    return ""


def _fmt_int(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "?"


def _card(m: LocalModel) -> str:
    """A self-contained HTML card of a model: every string escaped, inline styles only."""
    e = html.escape
    meta = m._meta
    head = f'<span style="font-weight:600;font-size:15px">{e(m.display_name)}</span>'
    for text, colour in (
        (m.task_type, "rgba(66,133,244,.18)"),
        (m.model_type, "rgba(128,128,128,.18)"),
        (m._headline(), "rgba(52,168,83,.2)"),
    ):
        if text:
            head += f'<span style="{_BADGE}background:{colour}">{e(text)}</span>'
    if m.deleted:
        head += f'<span style="{_BADGE}background:rgba(219,68,55,.25)">deleted</span>'
    parts = [
        f'<div style="{_BOX}">',
        f"<div>{head}</div>",
        f'<div style="font-family:monospace;font-size:11px;opacity:.7">{e(m.model_id)}</div>',
        f'<table style="margin:6px 0;border-collapse:collapse">{"".join(_facts(m, meta))}</table>',
    ]
    metrics = list(m.metrics.items())
    if metrics:
        cells = "".join(_row(k, e(_fmt(v))) for k, v in metrics)
        parts.append(
            f"<details open><summary><b>Metrics</b> (held-out rows)</summary>"
            f'<table style="margin:2px 0 6px 12px;border-collapse:collapse">{cells}</table></details>'
        )
    prep = meta.get("preprocessing")
    lines = prep.get("description") if isinstance(prep, dict) else None
    if isinstance(lines, list) and lines:
        items = "".join(f"<li>{e(str(line))}</li>" for line in lines)
        parts.append(f'<details><summary><b>Preprocessing</b></summary><ul style="margin:2px 0">{items}</ul></details>')
    if not m.deleted:
        kinds = m._safe_kinds()
        ok = [k for k, why in kinds.items() if why is None]
        if ok:
            calls = ", ".join(f"<code>.plot({e(repr(k))})</code>" for k in ok)
            parts.append(f"<div><b>Plots</b>: {calls}</div>")
        missing = "".join(f"<li><code>{e(k)}</code>: {e(why)}</li>" for k, why in kinds.items() if why)
        if missing:
            parts.append(f'<div style="opacity:.8"><b>Not available</b><ul style="margin:2px 0">{missing}</ul></div>')
        if not meta.get("model_sha256"):
            parts.append(
                '<div style="opacity:.8">Saved without a checksum (by an older worker): '
                f"<code>.predict()</code> is refused until you run <code>statsbot-worker trust-model "
                f"{e(m.model_id)}</code> for a file you trust.</div>"
            )
    parts.append("</div>")
    return "".join(parts)


__all__ = ["MODEL_COLUMNS", "AmbiguousModel", "LocalModel", "ModelLookupError", "ModelNotFound", "model", "models"]
