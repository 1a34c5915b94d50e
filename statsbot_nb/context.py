"""What a job handler is given: the user's settings and a way to report progress.

Job handlers are plain synchronous functions ``handler(params, ctx) -> dict`` that run off the event loop
(in a job process or a thread). :class:`JobSettings` is a small picklable value that crosses into the job
process; :class:`JobContext` wraps it with a progress callback supplied by the runner.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .config import models_dir
from .privacy import DEFAULT_LEVEL, PrivacyLevel, check_level

DEFAULT_MAX_FILE_BYTES = 1000 * 1024 * 1024

#: Default per-job wall-clock limit. The slowest jobs the bot asks for that we measured or can foresee (a
#: 200-epoch Keras net or 100,000 boosting rounds on a large table, on a laptop CPU) take an hour or two;
#: six hours leaves room for three times that, and still frees the slot the same working day when the
#: server sends something that would never end (``max_iter=1e9``, ``epochs=1e9``).
DEFAULT_MAX_JOB_SECONDS = 6 * 3600.0
#: Default per-job memory limit as a share of this machine's RAM: half, so one job can never take the
#: memory the user's own programs (and the notebook kernel) need, and the default two job slots together
#: stay within RAM before swap.
DEFAULT_MAX_JOB_MEMORY_SHARE = 0.5
#: Used when the size of RAM cannot be read (not Linux/macOS-like): a value that suits an 8 GB laptop.
FALLBACK_MAX_JOB_MEMORY_BYTES = 4 * 1024**3


def physical_memory_bytes() -> int | None:
    """This machine's RAM in bytes, or None where the platform does not say (``os.sysconf``)."""
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None
    return pages * page_size if pages > 0 and page_size > 0 else None


def default_max_job_memory_bytes() -> int:
    """The default per-job memory limit: :data:`DEFAULT_MAX_JOB_MEMORY_SHARE` of RAM (see there)."""
    ram = physical_memory_bytes()
    return int(ram * DEFAULT_MAX_JOB_MEMORY_SHARE) if ram else FALLBACK_MAX_JOB_MEMORY_BYTES


ProgressSink = Callable[[float, str, str], None]
#: Receives a chunk of a running job's learning curve (see :meth:`JobContext.curve_point`).
CurveSink = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class JobSettings:
    """The user's choices that bound what a job may do (picklable; sent to the job process).

    ``home`` is the StatsBot home (models live in ``home/models``); ``allowed_dirs`` are the folders jobs
    may read and write (empty means the defaults: the user's home and the working folder);
    ``privacy`` is what results may carry to the server (``strict``, ``standard`` — the default — or
    ``share``; see :mod:`statsbot_nb.privacy`). ``share_data`` is the older switch, kept so existing
    code keeps working: ``share_data=True`` with the default level means ``share``, and after
    construction it always equals ``privacy == "share"``.

    ``max_job_memory_bytes`` and ``max_job_seconds`` bound each job that runs in its own process (the
    runner stops it past either and says which limit did); None means no limit. They live here, not on
    the worker, so every entry point (CLI, ``connect()``, the panel) sets them the same way.

    ``blas_threads`` sets the BLAS threads (OpenBLAS, MKL) of each training and prediction process; None
    means every core (the libraries' own default). The worker sets it to its cores divided by its job
    slots: measured on 2 cores, a logistic regression on 160,000 rows took 0.17-0.34 s with one BLAS
    thread and 1.8-2.8 s with two while other work ran (OpenBLAS threads spin waiting for a core), which is
    the normal case when two jobs run at once. Thread counts a job asks for itself (``n_jobs``) are not touched.
    """

    home: Path
    allowed_dirs: tuple[Path, ...] = ()
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    share_data: bool = False
    cwd: Path = field(default_factory=Path.cwd)
    max_job_memory_bytes: int | None = field(default_factory=default_max_job_memory_bytes)
    max_job_seconds: float | None = DEFAULT_MAX_JOB_SECONDS
    privacy: PrivacyLevel = DEFAULT_LEVEL
    blas_threads: int | None = None
    #: Dask (issue 14; README "When one machine is not enough"): the scheduler address training jobs send
    #: their work to (None: everything runs here, the default), whether that cluster runs on this machine
    #: (then every path this machine may read is readable by its workers too), the folders a remote
    #: cluster's workers see at the same path (a shared mount), and the seconds to wait for the scheduler.
    dask_scheduler: str | None = None
    dask_local: bool = False
    dask_shared_dirs: tuple[Path, ...] = ()
    dask_timeout: float = 30.0

    def __post_init__(self) -> None:
        # share_data=True asked through the older switch (privacy left at its default) means "share".
        level = "share" if self.share_data and self.privacy == DEFAULT_LEVEL else check_level(self.privacy)
        object.__setattr__(self, "privacy", level)
        object.__setattr__(self, "share_data", level == "share")

    def with_privacy(self, privacy: object = None, share_data: bool | None = None) -> JobSettings:
        """A copy at another level: ``privacy`` wins; ``share_data`` alone switches between share and standard."""
        if privacy is None and share_data is not None:
            privacy = "share" if share_data else (DEFAULT_LEVEL if self.privacy == "share" else self.privacy)
        level = check_level(self.privacy if privacy is None else privacy)
        return replace(self, privacy=level, share_data=level == "share")

    @property
    def models_dir(self) -> Path:
        """The model store."""
        return models_dir(self.home)


class JobContext:
    """Handed to every job handler: settings plus :meth:`progress` and :meth:`curve_point`, throttled so
    they are cheap to call."""

    def __init__(
        self,
        settings: JobSettings,
        sink: ProgressSink | None = None,
        min_interval: float = 0.2,
        job_id: str = "",
        own_process: bool = False,
        limiter: Callable[[int], None] | None = None,
        curve_sink: CurveSink | None = None,
        curve_interval: float = 0.25,
    ) -> None:
        self.settings = settings
        #: The server's id of the job (empty outside a worker); names files a job must never overwrite.
        self.job_id = job_id
        #: True in a job process of its own (the runner's), where process-wide settings are the job's to set.
        self.own_process = own_process
        #: How this process caps its threads, when its runner has a quicker way (``statsbot_nb.jobwarm``).
        self._limiter = limiter
        self._sink = sink
        self._min_interval = min_interval
        self._last_sent = 0.0
        self._last_stage = ""
        self._curve_sink = curve_sink
        self._curve_interval = curve_interval
        self._curve_points: list[tuple[int, dict[str, float | None], dict[str, float | None]]] = []
        self._curve_total: int | None = None
        self._curve_sent = 0.0

    def limit_threads(self) -> None:
        """Cap the compute threads of this job's process at ``settings.blas_threads`` (training and
        prediction call it first); does nothing outside a job process of its own, where the threads are
        the notebook's or the caller's.

        BLAS (OpenBLAS, MKL) through threadpoolctl, and Arrow's CPU pool, which reads CSV files: with one
        thread each, a 200,000-row CSV read in 0.49 s instead of 0.82 s while other work ran on this
        2-core machine. Never restored (the process ends with its job), and not done for jobs that do no
        arithmetic: setting OpenBLAS's threads costs 15-25 ms in a fresh process, and more when it starts a
        thread pool (see ``statsbot_nb.blasenv``).
        """
        limit = self.settings.blas_threads or os.cpu_count() or 1  # job processes start at one (blasenv)
        if not self.own_process:
            return
        if self._limiter is not None:
            self._limiter(limit)
            return
        with contextlib.suppress(Exception):
            import pyarrow

            pyarrow.set_cpu_count(limit)
        with contextlib.suppress(Exception):  # scikit-learn depends on threadpoolctl; without it, no cap
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=limit, user_api="blas")

    def progress(self, percent: float, message: str, stage: str = "running") -> None:
        """Report progress (0-100) with a short human message and a stage name.

        Calls closer together than ``min_interval`` are dropped unless the stage changed or the job
        reached 100 %, so a handler may call this from a tight loop.
        """
        if self._sink is None:
            return
        if not isinstance(percent, (int, float)) or not math.isfinite(percent):
            percent = 0.0
        now = time.monotonic()
        if stage == self._last_stage and percent < 100 and now - self._last_sent < self._min_interval:
            return
        self._last_sent, self._last_stage = now, stage
        self.flush_curve()  # the rounds so far reach the chart before the progress that follows them
        self._sink(max(0.0, min(100.0, float(percent))), message, stage)

    def curve_point(
        self, round_: int, total: int | None, training: Mapping[str, float], validation: Mapping[str, float]
    ) -> None:
        """One round of the model's learning curve (``{metric: value}`` per set, see
        :class:`statsbot_nb.ml.curves.CurveRecorder`). Rounds are gathered and sent together at most every
        ``curve_interval`` seconds; they feed the job's live chart on this machine and are never sent to
        the server (the progress frames stay as they are)."""
        if self._curve_sink is None:
            return
        self._curve_points.append((int(round_), _numbers(training), _numbers(validation)))
        if total:
            self._curve_total = int(total)
        if time.monotonic() - self._curve_sent >= self._curve_interval:
            self.flush_curve()

    def flush_curve(self) -> None:
        """Send the rounds gathered since the last chunk, as ``{"rounds": [...], "training": {metric:
        [...]}, "validation": {metric: [...]}, "total": n}`` (None where a set has no value that round)."""
        points, self._curve_points = self._curve_points, []
        if not points or self._curve_sink is None:
            return
        self._curve_sent = time.monotonic()
        chunk: dict[str, Any] = {"rounds": [r for r, _, _ in points], "total": self._curve_total}
        for name, rows in (("training", [p[1] for p in points]), ("validation", [p[2] for p in points])):
            metrics = dict.fromkeys(m for row in rows for m in row)
            chunk[name] = {m: [row.get(m) for row in rows] for m in metrics}
        self._curve_sink(chunk)


def _numbers(values: Mapping[str, Any]) -> dict[str, float | None]:
    """``{metric: value}`` as plain floats (None for what is not a finite number): a chunk crosses a pipe
    and becomes an event, so it holds no numpy scalars."""
    out: dict[str, float | None] = {}
    for key, value in values.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        out[str(key)[:64]] = number if math.isfinite(number) else None
    return out
