"""A job handler's world for tests that call handlers directly: a data folder, a model store, recorded progress."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import pytest

from statsbot_nb.context import JobContext, JobSettings


class JobEnv:
    """Settings whose only allowed folder is ``data``, and a context that records every progress call."""

    def __init__(self, tmp_path: Path) -> None:
        self.data = tmp_path / "data"
        self.data.mkdir()
        self.settings = JobSettings(home=tmp_path / "home" / ".statsbot", allowed_dirs=(self.data,), cwd=self.data)
        self.events: list[tuple[float, str, str]] = []
        self.ctx = JobContext(self.settings, lambda p, m, s: self.events.append((p, m, s)), min_interval=0)

    def ctx_sharing(self) -> JobContext:
        """A context for a user who turned data sharing on."""
        settings = JobSettings(
            home=self.settings.home, allowed_dirs=self.settings.allowed_dirs, cwd=self.settings.cwd, share_data=True
        )
        return JobContext(settings)


E = TypeVar("E", bound=JobEnv)


def job_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cls: type[E] = JobEnv) -> E:  # type: ignore[assignment]
    """A :class:`JobEnv` (or subclass) in ``tmp_path``, with ``$HOME`` moved there."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return cls(tmp_path)
