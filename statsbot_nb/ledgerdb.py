"""The ledger: a local, append-only record of every frame the worker sent to the server.

For each frame written to the socket: the time, the job id and action, the frame type (``auth``,
``progress``, ``result``), its size in bytes, and which of its fields carry values taken from the user's
data, by class — ``predictions`` (predicted numbers), ``labels`` (target values: class names, quartiles),
``rows`` (table records) — with how many values each carries. The frame's text itself is never stored
(that would make the ledger a second copy of what it guards), and an ``auth`` frame is recorded as
``auth (token withheld)``: the token is never read out of it.

Why SQLite in the StatsBot home (``ledger.sqlite3``): several workers (a notebook and a terminal) may share
one home and append at once; a query by time or job is cheap; the size is bounded by deleting the oldest
rows past :data:`MAX_ROWS` (checked every :data:`TRIM_EVERY` inserts), so the file cannot grow for ever.

The ledger also watches for the reconstruction pattern the ``standard`` level cannot prevent (README,
"What leaves your machine"): many trainings on one table plus predictions on filtered copies made by
``join``. :meth:`Ledger.note_job` returns a warning sentence when the pattern appears; the warning is
stored with the job's frames and the driver shows it in the job log (panel and terminal).

Reading: :func:`read_ledger` (the public ``statsbot_nb.ledger()``, a pandas DataFrame), ``statsbot-worker
ledger`` (a table, or ``--json``), and the panel's "Sent to the server" tab. The module is named
``ledgerdb`` rather than ``ledger`` so that importing it never replaces the public function
``statsbot_nb.ledger`` with a module object (Python sets a package attribute for each imported submodule).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .strictjson import to_strict_json

log = logging.getLogger(__name__)

LEDGER_FILE = "ledger.sqlite3"
#: Rows kept; the oldest go first.
MAX_ROWS = 100_000
TRIM_EVERY = 500
#: The attack pattern: at least this many trainings on one table ...
PATTERN_TRAININGS = 3
#: ... and at least this many predictions on filtered ``join`` outputs, within :data:`PATTERN_WINDOW` s.
PATTERN_FILTERED_PREDICTIONS = 2
PATTERN_WINDOW = 3600.0
#: Job ids remembered for their action and parameters.
_JOBS_REMEMBERED = 2000

FIELD_CLASSES = ("predictions", "labels", "rows")
COLUMNS = ["time", "job_id", "action", "frame", "bytes", "user_data", "fields", "warning"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sent (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    job_id TEXT,
    action TEXT,
    frame TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    user_data TEXT NOT NULL,
    fields TEXT NOT NULL,
    warning TEXT
)
"""


def ledger_path(home: Path) -> Path:
    """Where the ledger of the StatsBot home ``home`` lives."""
    return Path(home) / LEDGER_FILE


# -- what a frame carries ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldUse:
    """One field of a sent frame that carries values from the user's data."""

    field: str  # a dotted path in the frame, e.g. ``data.predictions_sample``
    kind: str  # one of FIELD_CLASSES
    values: int  # how many values it carries


@dataclass(frozen=True)
class FrameSummary:
    """What the ledger keeps of one frame (never its text)."""

    frame: str
    job_id: str | None
    bytes: int
    fields: tuple[FieldUse, ...] = ()

    @property
    def user_data(self) -> str:
        """The classes of user data in the frame, comma-separated ("" when none)."""
        return ",".join(k for k in FIELD_CLASSES if any(f.kind == k for f in self.fields))


def _labels_in_columns(columns: object) -> int:
    """How many ``proba_<label>`` names (labels written into column names) a column list carries."""
    if not isinstance(columns, list):
        return 0
    return sum(1 for c in columns if isinstance(c, str) and c.startswith("proba_") and not c.startswith("proba_#"))


#: Result fields of table rows (only their length is read), and the other fields :func:`classify` reads.
_ROW_FIELDS = ("dataframe", "dataframe_sample")
_READ_FIELDS = ("predictions_sample", "dataset_stats", "columns", "dataframe_columns", "output_file")


def as_sent(data: object) -> dict[str, Any] | None:
    """The fields of a result's ``data`` that :func:`classify` reads, as its frame carries them (strict JSON),
    without converting the table rows; None when they could differ (then the frame itself is parsed)."""
    if not isinstance(data, dict) or any(not isinstance(data.get(n, []), list | None) for n in _ROW_FIELDS):
        return None
    sent = {n: to_strict_json(data[n]) for n in _READ_FIELDS if n in data}
    sent.update({n: data[n] for n in _ROW_FIELDS if n in data})
    return sent


def classify(
    frame: str, action: str | None, data: Mapping[str, Any] | None = None, job_id: str | None = None
) -> FrameSummary:
    """Parse a frame the worker sends and name the fields that carry user data, for ``action``.

    The classes follow what each action's result means (PROTOCOL.md): ``predictions_sample`` holds
    predicted values; ``class_distribution`` keys and ``quartiles`` are target values (labels); a
    numbered ``#1`` key (strict) is not; ``dataframe``/``dataframe_sample`` are table rows; ``proba_<label>``
    column names carry labels. An auth frame is summarised without reading its token.

    ``data`` (with ``job_id``): the ``data`` object a successful result frame was encoded from, when the
    caller still holds it; the frame is then not parsed again (a ``load_data`` result can be many MB).
    """
    size = len(frame.encode("utf-8"))
    kind = "result"
    data = as_sent(data) if data is not None else None
    if data is None:
        try:
            message = json.loads(frame)
        except ValueError:
            return FrameSummary("unreadable", None, size)
        if not isinstance(message, dict):
            return FrameSummary("unreadable", None, size)
        kind = str(message.get("type", "?"))
        job_id = message.get("job_id") if isinstance(message.get("job_id"), str) else None
        if kind == "auth":
            return FrameSummary("auth (token withheld)", None, size)
        data = message.get("data")
        if kind != "result" or not isinstance(data, dict):
            return FrameSummary(kind, job_id, size)
    uses: list[FieldUse] = []
    sample = data.get("predictions_sample")
    if isinstance(sample, list) and sample:
        uses.append(FieldUse("data.predictions_sample", "predictions", len(sample)))
    stats = data.get("dataset_stats")
    if isinstance(stats, dict):
        dist = stats.get("class_distribution")
        if isinstance(dist, dict):
            named = [k for k in dist if not str(k).startswith("#") and not str(k).endswith("other classes)")]
            if named:
                uses.append(FieldUse("data.dataset_stats.class_distribution", "labels", len(named)))
        quartiles = stats.get("quartiles")
        if isinstance(quartiles, dict) and quartiles:
            uses.append(FieldUse("data.dataset_stats.quartiles", "labels", len(quartiles)))
    for name in ("dataframe", "dataframe_sample"):
        rows = data.get(name)
        if isinstance(rows, list) and rows:
            uses.append(FieldUse(f"data.{name}", "rows", len(rows)))
    for name in ("columns", "dataframe_columns"):
        n = _labels_in_columns(data.get(name))
        if n:
            uses.append(FieldUse(f"data.{name}", "labels", n))
    return FrameSummary(kind, job_id, size, tuple(uses))


# -- the attack-pattern watch ------------------------------------------------------------------------------


def _norm(path: object) -> str | None:
    if not isinstance(path, str) or not path.strip():
        return None
    try:
        return os.path.normcase(str(Path(path).expanduser().resolve()))
    except (OSError, RuntimeError, ValueError):
        return os.path.normcase(os.path.normpath(path))


@dataclass
class PatternWatch:
    """Counts, within a time window, trainings per table and predictions on filtered ``join`` outputs."""

    window: float = PATTERN_WINDOW
    trainings: dict[str, deque[float]] = field(default_factory=dict)
    filtered_outputs: dict[str, float] = field(default_factory=dict)
    filtered_predictions: deque[float] = field(default_factory=deque)

    def _prune(self, now: float) -> None:
        for table in list(self.trainings):
            times = self.trainings[table]
            while times and times[0] < now - self.window:
                times.popleft()
            if not times:
                del self.trainings[table]
        for path, at in list(self.filtered_outputs.items()):
            if at < now - self.window:
                del self.filtered_outputs[path]
        while self.filtered_predictions and self.filtered_predictions[0] < now - self.window:
            self.filtered_predictions.popleft()

    def job(self, action: str, params: Mapping[str, Any], now: float) -> str | None:
        """Note an accepted job; a warning sentence when the pattern holds after it (a predict), else None."""
        self._prune(now)
        if action == "train":
            table = _norm(params.get("file_path"))
            if table:
                self.trainings.setdefault(table, deque()).append(now)
        elif action == "join":
            filters = params.get("filters")
            output = _norm(params.get("output_path"))
            if isinstance(filters, list) and filters and output:
                self.filtered_outputs[output] = now
        elif action == "predict" and _norm(params.get("file_path")) in self.filtered_outputs:
            self.filtered_predictions.append(now)
            most = max((len(t) for t in self.trainings.values()), default=0)
            if most >= PATTERN_TRAININGS and len(self.filtered_predictions) >= PATTERN_FILTERED_PREDICTIONS:
                return (
                    f"Possible reconstruction of a table: {most} trainings on one table and "
                    f"{len(self.filtered_predictions)} predictions on filtered copies (join with filters) in "
                    f"the last {self.window / 60:.0f} minutes. At privacy 'standard' each prediction sends up "
                    "to 10 predicted values; a server can pick rows with filters and read a column back. "
                    "Choose privacy 'strict' if you did not ask for this."
                )
        return None

    def filtered_output(self, path: object, now: float) -> None:
        """A filtered ``join`` wrote ``path`` (its result names the real output file)."""
        norm = _norm(path)
        if norm:
            self.filtered_outputs[norm] = now


# -- the store ---------------------------------------------------------------------------------------------


class Ledger:
    """The ledger of one StatsBot home: :meth:`record` each frame written, :meth:`note_job` each job.

    Thread-safe (one lock); a failure to write is logged once and never stops a frame from leaving: the
    ledger records, it does not gate.
    """

    def __init__(self, home: Path, *, max_rows: int = MAX_ROWS, clock: Any = time.time) -> None:
        self.path = ledger_path(home)
        self.max_rows = max_rows
        self._clock = clock
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._broken = False
        self._inserts = 0
        self._jobs: OrderedDict[str, tuple[str, bool]] = OrderedDict()  # job id -> (action, filtered join)
        self._warnings: dict[str, str] = {}
        self.watch = PatternWatch()
        #: Warnings raised so far (newest last, bounded), for the panel.
        self.warnings: deque[tuple[float, str]] = deque(maxlen=50)

    def _connection(self) -> sqlite3.Connection | None:
        if self._db is None and not self._broken:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False, isolation_level=None)
                with contextlib.suppress(sqlite3.Error):
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute("PRAGMA synchronous=NORMAL")
                db.execute(_SCHEMA)
                with contextlib.suppress(OSError):
                    os.chmod(self.path, 0o600)
                self._db = db
            except (sqlite3.Error, OSError) as exc:
                self._broken = True
                log.warning("The ledger %s cannot be written (%s); frames are still sent.", self.path, exc)
        return self._db

    def note_job(self, job_id: str, action: str, params: Mapping[str, Any]) -> str | None:
        """Remember a job the worker starts (its action, for its frames); a warning if the pattern appears."""
        with self._lock:
            filtered = action == "join" and bool(params.get("filters"))
            self._jobs[job_id] = (action, filtered)
            self._jobs.move_to_end(job_id)
            while len(self._jobs) > _JOBS_REMEMBERED:
                self._jobs.popitem(last=False)
            now = self._clock()
            warning = self.watch.job(action, params, now)
            if warning:
                self._warnings[job_id] = warning
                self.warnings.append((now, warning))
            return warning

    def action_of(self, job_id: str | None) -> str | None:
        """The action of a job noted here, or None."""
        if job_id is None:
            return None
        with self._lock:
            entry = self._jobs.get(job_id)
        return entry[0] if entry else None

    def record(
        self,
        frame: str,
        job_id: str | None = None,
        action: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> FrameSummary:
        """Record one frame that was written to the server; returns what was recorded.

        ``data``: for a successful result of ``job_id``, the data it was encoded from (see :func:`classify`).
        """
        action = action or self.action_of(job_id)
        data = as_sent(data) if data is not None and job_id is not None else None  # else: parse the frame
        summary = classify(frame, action, data, job_id)
        job_id = job_id or summary.job_id
        if summary.frame == "auth (token withheld)":
            action = None
        with self._lock:
            now = self._clock()
            entry = self._jobs.get(job_id or "")
            if entry and entry[1] and summary.frame == "result":
                with contextlib.suppress(ValueError, AttributeError):
                    sent = data if data is not None else json.loads(frame).get("data") or {}
                    self.watch.filtered_output(sent.get("output_file"), now)
            warning = self._warnings.pop(job_id, None) if summary.frame == "result" and job_id else None
            if warning is None and job_id:
                warning = self._warnings.get(job_id)
            db = self._connection()
            if db is None:
                return summary
            fields = json.dumps([{"field": f.field, "class": f.kind, "values": f.values} for f in summary.fields])
            try:
                db.execute(
                    "INSERT INTO sent (time, job_id, action, frame, bytes, user_data, fields, warning) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (now, job_id, action, summary.frame, summary.bytes, summary.user_data, fields, warning),
                )
                self._inserts += 1
                if self._inserts % TRIM_EVERY == 0:
                    self._trim(db)
            except sqlite3.Error as exc:
                self._broken = True
                self._db = None
                with contextlib.suppress(sqlite3.Error):
                    db.close()
                log.warning("The ledger %s cannot be written (%s); frames are still sent.", self.path, exc)
        return summary

    def _trim(self, db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM sent WHERE id <= (SELECT MAX(id) FROM sent) - ?", (self.max_rows,))

    def close(self) -> None:
        """Close the database (a later :meth:`record` opens it again)."""
        with self._lock:
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._db.close()
                self._db = None


__all__ = [
    "FIELD_CLASSES",
    "FieldUse",
    "FrameSummary",
    "Ledger",
    "PatternWatch",
    "classify",
    "ledger_path",
]
