"""What a job handler is given: the user's settings and a way to report progress.

Job handlers are plain synchronous functions ``handler(params, ctx) -> dict`` that run off the event loop
(in a job process or a thread). :class:`JobSettings` is a small picklable value that crosses into the job
process; :class:`JobContext` wraps it with a progress callback supplied by the runner.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from .config import models_dir
from .privacy import DEFAULT_LEVEL, PrivacyLevel, check_level

DEFAULT_MAX_FILE_BYTES = 1000 * 1024 * 1024

ProgressSink = Callable[[float, str, str], None]


@dataclass(frozen=True)
class JobSettings:
    """The user's choices that bound what a job may do (picklable; sent to the job process).

    ``home`` is the StatsBot home (models live in ``home/models``); ``allowed_dirs`` are the folders jobs
    may read and write (empty means the defaults: the user's home and the working folder);
    ``privacy`` is what results may carry to the server (``strict``, ``standard`` — the default — or
    ``share``; see :mod:`statsbot_nb.privacy`). ``share_data`` is the older switch, kept so existing
    code keeps working: ``share_data=True`` with the default level means ``share``, and after
    construction it always equals ``privacy == "share"``.
    """

    home: Path
    allowed_dirs: tuple[Path, ...] = ()
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    share_data: bool = False
    cwd: Path = field(default_factory=Path.cwd)
    privacy: PrivacyLevel = DEFAULT_LEVEL

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
    """Handed to every job handler: settings plus :meth:`progress`, throttled so it is cheap to call."""

    def __init__(
        self, settings: JobSettings, sink: ProgressSink | None = None, min_interval: float = 0.2, job_id: str = ""
    ) -> None:
        self.settings = settings
        #: The server's id of the job (empty outside a worker); names files a job must never overwrite.
        self.job_id = job_id
        self._sink = sink
        self._min_interval = min_interval
        self._last_sent = 0.0
        self._last_stage = ""

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
        self._sink(max(0.0, min(100.0, float(percent))), message, stage)
