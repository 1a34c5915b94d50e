"""A durable job journal: accepted jobs and unconfirmed results survive a crash or a kernel restart.

SQLite (the standard library's ``sqlite3``, WAL mode) in the StatsBot home, ``journal/journal.sqlite3``.
Why SQLite rather than a JSON file: several workers (a notebook and a terminal) may share one home, a
commit is atomic, and a process killed mid-write leaves the last committed state — with
``synchronous=NORMAL`` in WAL mode a commit is in the WAL file before it returns, so it survives the
process being killed (only a power cut can lose the latest commits).

The core decides *what* to record and *when* (before a job starts, before a result is sent); this module
only stores it. Each row belongs to the worker that wrote it (``owner``), the server URL and the user the
server authenticated (a result is never re-sent to another user's session). A worker holds an ``flock``
on its owner lock file for its whole life; each time it authenticates it claims the rows of owners whose
lock is free (their process ended) for its URL and user: their unconfirmed results are re-sent, their
unfinished jobs are answered as failed, and every id in the journal is reserved, so no job runs twice on
this machine — even when the server sends a dead worker's job to a live one. The token is never stored.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

try:  # POSIX; elsewhere a journal re-sends only its own rows
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("statsbot_nb.journal")

#: Confirmed job ids remembered (without their results) so that a job id never runs twice.
KEEP_IDS = 20000
#: How long a write waits for another worker's write to finish (it runs on the event loop: keep it short).
BUSY_TIMEOUT_S = 0.25
#: The WAL file is truncated back to this size after checkpoints.
WAL_LIMIT_BYTES = 8 * 2**20

#: Bumped whenever the table changes; a file in another format is set aside (never misread).
SCHEMA_VERSION = 1


class _OtherFormat(sqlite3.DatabaseError):
    """The journal file was written by a worker with another table layout."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    url TEXT NOT NULL,
    job_id TEXT NOT NULL,
    user_key TEXT NOT NULL,       -- the user the server authenticated ('' when it gave none)
    owner TEXT NOT NULL,
    action TEXT,
    state TEXT NOT NULL,          -- queued | running | answered | confirmed
    result TEXT,                  -- the result frame, until the server confirms it
    updated REAL NOT NULL,
    PRIMARY KEY (url, job_id)
);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, state);
CREATE INDEX IF NOT EXISTS jobs_confirmed ON jobs (url, state, updated);
"""


@dataclass(frozen=True)
class Restored:
    """What the journal held from ended workers: unconfirmed results, jobs that never finished, finished ids.

    Also the event that hands them to the worker core (:mod:`statsbot_nb.core`).
    """

    pending: tuple[tuple[str, str], ...] = ()
    interrupted: tuple[tuple[str, str, str], ...] = ()  # (job_id, action, "queued" | "running")
    finished: tuple[str, ...] = ()


@dataclass(frozen=True)
class Existing:
    """A job id the journal already holds: its state, its result frame if kept, and whether its worker lives."""

    state: str
    frame: str | None
    owner_alive: bool


def journal_dir(home: Path) -> Path:
    """Where the journal of the StatsBot home ``home`` lives."""
    return Path(home) / "journal"


def user_key(user_id: int | None) -> str:
    """How a server user id is stored ('' when the server did not say)."""
    return "" if user_id is None else str(user_id)


class Journal:
    """The journal of one worker (one owner) for one server URL."""

    def __init__(self, home: Path, url: str, *, owner: str | None = None) -> None:
        self.dir = journal_dir(home)
        self.path = self.dir / "journal.sqlite3"
        self.url = url
        self.owner = owner or uuid.uuid4().hex
        self.user = ""
        self.note: str | None = None  # a sentence for the user about what open() had to do
        self._db: sqlite3.Connection | None = None
        self._lock: IO[Any] | None = None
        self._confirms = 0

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Open (creating it if needed); a file that is not a database is set aside and a new one started."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(self.dir, 0o700)  # results may hold a user's table rows (load_data with sharing on)
        self._lock = self._hold_lock(self.owner)
        try:
            self._db = self._connect()
        except _OtherFormat as exc:
            self._set_aside("older", f"it has an older format ({exc})")
            self._db = self._connect()
        except sqlite3.DatabaseError as exc:
            if "not a database" not in str(exc) and "malformed" not in str(exc):
                raise
            self._set_aside("corrupt", f"it was damaged ({exc})")
            self._db = self._connect()

    def _set_aside(self, kind: str, why: str) -> None:
        """Move an unusable journal file out of the way (kept for inspection) so a new one can start."""
        aside = self.path.with_name(f"{self.path.name}.{kind}-{int(time.time())}")
        self.path.rename(aside)
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(OSError):
                self.path.with_name(self.path.name + suffix).unlink()
        self.note = f"The job journal could not be used: {why}. It was moved to {aside.name}; a new one was started."
        log.warning("%s", self.note)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = db.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            if tables and version != SCHEMA_VERSION:
                raise _OtherFormat(f"format {version}, this worker writes format {SCHEMA_VERSION}")
            db.executescript(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError:
            db.close()
            raise
        with contextlib.suppress(OSError):
            os.chmod(self.path, 0o600)
        return db

    def close(self) -> None:
        """Close the database and release the owner lock (unconfirmed rows stay for the next worker)."""
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                mine = self._db.execute(
                    "SELECT COUNT(*) FROM jobs WHERE owner = ? AND state != 'confirmed'", (self.owner,)
                ).fetchone()[0]
                if not mine:  # nothing for a successor to claim: no lock file left behind
                    with contextlib.suppress(OSError):
                        self._lock_path(self.owner).unlink()
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        if self._lock is not None:
            with contextlib.suppress(OSError):
                self._lock.close()
            self._lock = None

    def _lock_path(self, owner: str) -> Path:
        return self.dir / f"owner-{owner}.lock"

    def _hold_lock(self, owner: str) -> IO[Any] | None:
        if fcntl is None:  # pragma: no cover - Windows
            return None
        fh = self._lock_path(owner).open("a+")
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fh

    def _owner_alive(self, owner: str) -> bool:
        """True while ``owner``'s process holds its lock (always True where locks cannot be checked)."""
        if owner == self.owner:
            return True
        if fcntl is None:  # pragma: no cover - Windows
            return True
        path = self._lock_path(owner)
        try:
            fh = path.open("a+")
        except OSError:
            return True
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            fh.close()
        return False

    def _require(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("The journal is not open.")
        return self._db

    # ------------------------------------------------------------------ claiming

    def set_user(self, user_id: int | None) -> None:
        """The user the server authenticated; rows written from now on belong to them."""
        self.user = user_key(user_id)

    def claim(self, user_id: int | None) -> Restored:
        """For the authenticated user: take over the rows of ended workers and return what needs an answer.

        Called on every successful authentication (a live worker also inherits what a worker that died
        later left). Returns unconfirmed results and unfinished jobs (all of them: their ids must stay
        known), and the ids of confirmed jobs (so that none runs again).
        """
        db = self._require()
        self.user = user_key(user_id)
        owners = [
            row[0]
            for row in db.execute(
                "SELECT DISTINCT owner FROM jobs "
                "WHERE url = ? AND user_key = ? AND owner != ? AND state != 'confirmed'",
                (self.url, self.user, self.owner),
            )
        ]
        ended = [other for other in owners if not self._owner_alive(other)]
        rows: list[tuple[str, str | None, str, str | None]] = []
        if ended:
            marks = ",".join("?" * len(ended))
            db.execute("BEGIN IMMEDIATE")  # all or nothing; two workers claiming at once: the first gets the rows
            try:
                rows = db.execute(
                    "SELECT job_id, action, state, result FROM jobs WHERE url = ? AND user_key = ? AND state != "
                    f"'confirmed' AND owner IN ({marks}) ORDER BY updated",
                    (self.url, self.user, *ended),
                ).fetchall()
                db.execute(
                    "UPDATE jobs SET owner = ? WHERE url = ? AND user_key = ? AND state != 'confirmed' "
                    f"AND owner IN ({marks})",
                    (self.owner, self.url, self.user, *ended),
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            for other in ended:
                with contextlib.suppress(OSError):
                    self._lock_path(other).unlink()
        claimed = ended
        pending = tuple((job_id, result) for job_id, _, state, result in rows if state == "answered" and result)
        interrupted = tuple(
            (job_id, action or "?", state) for job_id, action, state, _ in rows if state in ("queued", "running")
        )
        finished = tuple(
            row[0]
            for row in db.execute(
                "SELECT job_id FROM jobs WHERE url = ? AND user_key = ? AND state = 'confirmed' "
                "ORDER BY updated DESC LIMIT ?",
                (self.url, self.user, KEEP_IDS),
            )
        )
        if rows:
            log.info(
                "Journal: %d unconfirmed result(s) and %d unfinished job(s) taken over from %d ended worker(s)",
                len(pending),
                len(interrupted),
                len(claimed),
            )
        return Restored(pending=pending, interrupted=interrupted, finished=finished)

    # ------------------------------------------------------------------ records

    def reserve(self, job_id: str, action: str) -> Existing | None:
        """Record that ``job_id`` was accepted, unless the journal already holds it (then say how it stands).

        The check and the insert are one statement, so two workers sharing the home cannot both reserve it.
        """
        db = self._require()
        cur = db.execute(
            "INSERT INTO jobs (url, job_id, user_key, owner, action, state, updated) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (url, job_id) DO NOTHING",
            (self.url, job_id, self.user, self.owner, action, "queued", time.time()),
        )
        if cur.rowcount == 1:
            return None
        row = db.execute("SELECT state, result, owner FROM jobs WHERE url = ? AND job_id = ?", (self.url, job_id))
        state, frame, owner = row.fetchone()
        # A row of this very worker that its core does not know (it asks only about ids it does not know) was
        # taken over from an ended worker and lost track of: treat it as that ended worker's.
        alive = owner != self.owner and self._owner_alive(owner)
        return Existing(state, frame, alive)

    def _set(self, job_id: str, state: str, result: str | None = None) -> None:
        self._require().execute(
            "INSERT INTO jobs (url, job_id, user_key, owner, state, result, updated) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (url, job_id) DO UPDATE SET owner = excluded.owner, state = excluded.state, "
            "result = excluded.result, updated = excluded.updated",
            (self.url, job_id, self.user, self.owner, state, result, time.time()),
        )

    def started(self, job_id: str) -> None:
        """``job_id`` began running."""
        self._set(job_id, "running")

    def result(self, job_id: str, frame: str) -> None:
        """``job_id`` has a result the server has not confirmed yet (recorded before it is sent)."""
        self._set(job_id, "answered", frame)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Make the records written inside one transaction: one commit for all (or none on an error)."""
        db = self._require()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def confirmed(self, job_id: str) -> None:
        """The server has ``job_id``'s result: keep only the id (the frame may hold table rows)."""
        self._require().execute(
            "UPDATE jobs SET state = 'confirmed', result = NULL, updated = ? WHERE url = ? AND job_id = ?",
            (time.time(), self.url, job_id),
        )
        self._confirms += 1
        if self._confirms % 500 == 0:
            self.prune()

    def prune(self) -> None:
        """Bound the journal: drop the oldest confirmed ids beyond :data:`KEEP_IDS` per URL."""
        db = self._require()
        cutoff = db.execute(
            "SELECT updated FROM jobs WHERE url = ? AND state = 'confirmed' ORDER BY updated DESC LIMIT 1 OFFSET ?",
            (self.url, KEEP_IDS),
        ).fetchone()
        if cutoff is not None:
            db.execute("DELETE FROM jobs WHERE url = ? AND state = 'confirmed' AND updated <= ?", (self.url, cutoff[0]))

    def counts(self) -> dict[str, int]:
        """Rows by state for this URL (for tests and diagnostics)."""
        rows = self._require().execute("SELECT state, COUNT(*) FROM jobs WHERE url = ? GROUP BY state", (self.url,))
        return {state: n for state, n in rows}
