"""A durable job journal: accepted jobs and unconfirmed results survive a crash or a kernel restart.

SQLite (the standard library's ``sqlite3``, WAL mode) in the StatsBot home, ``journal/journal.sqlite3``.
Why SQLite rather than a JSON file: several workers (a notebook and a terminal) may share one home, a
commit is atomic, and a process killed mid-write leaves the last committed state — with
``synchronous=NORMAL`` in WAL mode a commit is in the WAL file before it returns, so it survives the
process being killed (only a power cut can lose the latest commits).

The core decides *what* to record and *when* (before a job starts, before a result is sent); this module
only stores it. Each row belongs to the worker that wrote it (``owner``) and to the server URL it came
from. A worker holds an ``flock`` on its owner lock file for its whole life; when a new worker opens the
journal, rows of owners whose lock is free (their process ended) and that came from the same URL are
claimed: their unconfirmed results are re-sent, their unfinished jobs are answered as failed, and their
finished ids keep such jobs from ever running twice. The token is never stored.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

try:  # POSIX; elsewhere a journal re-sends only its own rows
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("statsbot_nb.journal")

#: Confirmed results whose frames stay re-sendable (a server asking again gets the same answer).
KEEP_RESULTS = 1000
#: Confirmed job ids remembered (without their results) so that a job id never runs twice.
KEEP_IDS = 20000
#: Rows kept per claim at most (a corrupted or huge journal must not flood the new worker).
MAX_RESTORE = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    url TEXT NOT NULL,
    job_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    action TEXT,
    state TEXT NOT NULL,          -- queued | running | answered | confirmed
    result TEXT,                  -- the result frame, while it may need re-sending
    updated REAL NOT NULL,
    PRIMARY KEY (url, job_id)
);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, state);
CREATE INDEX IF NOT EXISTS jobs_confirmed ON jobs (url, state, updated);
"""


@dataclass(frozen=True)
class Restored:
    """What the journal held from earlier runs: unconfirmed results, jobs that never finished, finished ids.

    Also the event that hands them to the worker core (:mod:`statsbot_nb.core`).
    """

    pending: tuple[tuple[str, str], ...] = ()
    interrupted: tuple[tuple[str, str, str], ...] = ()  # (job_id, action, "queued" | "running")
    finished: tuple[str, ...] = ()


def journal_dir(home: Path) -> Path:
    """Where the journal of the StatsBot home ``home`` lives."""
    return Path(home) / "journal"


class Journal:
    """The journal of one worker (one owner) for one server URL."""

    def __init__(self, home: Path, url: str, *, owner: str | None = None) -> None:
        self.dir = journal_dir(home)
        self.path = self.dir / "journal.sqlite3"
        self.url = url
        self.owner = owner or uuid.uuid4().hex
        self._db: sqlite3.Connection | None = None
        self._lock: IO[Any] | None = None
        self._confirms = 0

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> Restored:
        """Open (creating it if needed), claim rows of ended workers for this URL, and return them."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(self.dir, 0o700)  # results may hold a user's table rows (load_data with sharing on)
        self._lock = self._hold_lock(self.owner)
        db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        self._db = db
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        with contextlib.suppress(OSError):
            os.chmod(self.path, 0o600)
        claimed = self._claim()
        return self._restore(claimed)

    def close(self) -> None:
        """Close the database and release the owner lock (rows stay, to be claimed by the next worker)."""
        if self._db is not None:
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

    def _owner_ended(self, owner: str) -> bool:
        """True when ``owner``'s process no longer holds its lock (it ended, cleanly or not)."""
        if fcntl is None:  # pragma: no cover - Windows
            return False
        path = self._lock_path(owner)
        try:
            fh = path.open("a+")
        except OSError:
            return False
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        with contextlib.suppress(OSError):
            path.unlink()
        fh.close()
        return True

    def _claim(self) -> int:
        """Take over the rows of ended workers that served this URL; returns how many owners were claimed."""
        db = self._require()
        owners = [
            row[0]
            for row in db.execute(
                "SELECT DISTINCT owner FROM jobs WHERE url = ? AND owner != ? AND state != 'confirmed'",
                (self.url, self.owner),
            )
        ]
        claimed = 0
        for other in owners:
            if not self._owner_ended(other):
                continue
            cur = db.execute(
                "UPDATE jobs SET owner = ? WHERE url = ? AND owner = ? AND state != 'confirmed'",
                (self.owner, self.url, other),
            )
            claimed += cur.rowcount > 0
        return claimed

    def _restore(self, claimed: int) -> Restored:
        db = self._require()
        rows = db.execute(
            "SELECT job_id, action, state, result FROM jobs WHERE url = ? AND owner = ? AND state != 'confirmed' "
            "ORDER BY updated LIMIT ?",
            (self.url, self.owner, MAX_RESTORE),
        ).fetchall()
        pending = tuple((job_id, result) for job_id, _, state, result in rows if state == "answered" and result)
        interrupted = tuple(
            (job_id, action or "?", state) for job_id, action, state, _ in rows if state in ("queued", "running")
        )
        finished = tuple(
            row[0]
            for row in db.execute(
                "SELECT job_id FROM jobs WHERE url = ? AND state = 'confirmed' ORDER BY updated DESC LIMIT ?",
                (self.url, KEEP_IDS),
            )
        )
        if rows:
            log.info(
                "Journal: %d unconfirmed result(s) and %d unfinished job(s) from earlier runs (%d worker(s) claimed)",
                len(pending),
                len(interrupted),
                claimed,
            )
        return Restored(pending=pending, interrupted=interrupted, finished=finished)

    def _require(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("The journal is not open.")
        return self._db

    # ------------------------------------------------------------------ records

    def _upsert(self, job_id: str, state: str, action: str | None = None, result: str | None = None) -> None:
        self._require().execute(
            "INSERT INTO jobs (url, job_id, owner, action, state, result, updated) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (url, job_id) DO UPDATE SET owner = excluded.owner, state = excluded.state, "
            "action = COALESCE(excluded.action, jobs.action), result = COALESCE(excluded.result, jobs.result), "
            "updated = excluded.updated",
            (self.url, job_id, self.owner, action, state, result, time.time()),
        )

    def accepted(self, job_id: str, action: str) -> None:
        """``job_id`` was accepted and will run (recorded before it starts)."""
        self._upsert(job_id, "queued", action=action)

    def started(self, job_id: str) -> None:
        """``job_id`` began running."""
        self._upsert(job_id, "running")

    def result(self, job_id: str, frame: str) -> None:
        """``job_id`` has a result the server has not confirmed yet (recorded before it is sent)."""
        self._upsert(job_id, "answered", result=frame)

    def confirmed(self, job_id: str) -> None:
        """The server has ``job_id``'s result."""
        self._require().execute(
            "UPDATE jobs SET state = 'confirmed', updated = ? WHERE url = ? AND job_id = ?",
            (time.time(), self.url, job_id),
        )
        self._confirms += 1
        if self._confirms % 200 == 0:
            self.prune()

    def prune(self) -> None:
        """Bound the journal: drop old confirmed results' frames, then the oldest confirmed ids."""
        db = self._require()
        db.execute(
            "UPDATE jobs SET result = NULL WHERE url = ? AND state = 'confirmed' AND result IS NOT NULL "
            "AND job_id NOT IN "
            "(SELECT job_id FROM jobs WHERE url = ? AND state = 'confirmed' ORDER BY updated DESC LIMIT ?)",
            (self.url, self.url, KEEP_RESULTS),
        )
        db.execute(
            "DELETE FROM jobs WHERE url = ? AND state = 'confirmed' AND job_id NOT IN "
            "(SELECT job_id FROM jobs WHERE url = ? AND state = 'confirmed' ORDER BY updated DESC LIMIT ?)",
            (self.url, self.url, KEEP_IDS),
        )

    def counts(self) -> dict[str, int]:
        """Rows by state for this URL (for tests and diagnostics)."""
        rows = self._require().execute("SELECT state, COUNT(*) FROM jobs WHERE url = ? GROUP BY state", (self.url,))
        return {state: n for state, n in rows}
