"""One settings builder for every way a worker is started: the CLI, ``connect()`` and the notebook API.

Each entry point used to resolve the token, the server URL, the allowed folders, the data-sharing switch
and the StatsBot home on its own; this module is now the only place that does, so the three cannot drift
apart. Precedence, the same everywhere:

- token: the explicit one, else a token typed elsewhere (the panel's field), else ``$STATSBOT_TOKEN``,
  else one remembered in ``config.json``;
- server URL: the explicit one, else ``$STATSBOT_WS_URL``, else ``config.json``, else the default
  (see :func:`statsbot_nb.config.resolve_ws_url`);
- allowed folders: the ones passed (``--allow``, ``connect(allow=)``, ``allowed_dirs=``), then
  ``$STATSBOT_ALLOWED_DIRS``; ``~`` expanded, relative ones taken from the current folder, duplicates dropped;
- machine id: the explicit one, else ``config.json``, else the host name;
- privacy level: the explicit one, else ``share`` when the older ``share_data`` switch is on, else
  ``standard`` (see :mod:`statsbot_nb.privacy`).
- per-job limits (``--max-job-memory``, ``--max-job-seconds``, the same names in ``connect()``): the value
  passed, else the defaults in :mod:`statsbot_nb.context`; 0 turns a limit off.

Pure apart from reading ``config.json``: the environment is a parameter (default ``os.environ``), so tests
pass a dict.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import default_machine_id, load_config, resolve_ws_url, statsbot_home
from .context import (
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_JOB_SECONDS,
    JobSettings,
    default_max_job_memory_bytes,
)
from .errors import ConfigError
from .paths import parse_allowed_dirs
from .privacy import resolve_level

TOKEN_ENV = "STATSBOT_TOKEN"
ALLOWED_DIRS_ENV = "STATSBOT_ALLOWED_DIRS"
DEFAULT_MAX_FILE_MB = DEFAULT_MAX_FILE_BYTES / 2**20

PathLike = str | os.PathLike[str]


def allowed_dirs(extra: Iterable[PathLike] = (), env: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    """The folders jobs may use besides the defaults: ``extra`` first, then ``$STATSBOT_ALLOWED_DIRS``."""
    env = os.environ if env is None else env
    given = [str(Path(p).expanduser()) for p in extra]
    return parse_allowed_dirs(os.pathsep.join([*given, env.get(ALLOWED_DIRS_ENV, "")]))


def max_file_bytes(max_file_mb: object, option: str = "max_file_mb") -> int:
    """``max_file_mb`` as bytes, or a :class:`ConfigError` naming ``option`` (``--max-file-mb`` in the CLI)."""
    if (
        isinstance(max_file_mb, bool)
        or not isinstance(max_file_mb, (int, float))
        or not math.isfinite(max_file_mb)
        or max_file_mb <= 0
    ):
        raise ConfigError(f"{option} must be a positive number of megabytes, not {max_file_mb!r}.")
    return int(max_file_mb * 2**20)


_MEMORY_UNITS = {"": 2**20, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_MEMORY_TEXT = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([kmgt]?)(?:i?b)?\s*", re.IGNORECASE)
MemoryLimit = float | int | str | None


def parse_max_job_memory(value: MemoryLimit, option: str = "max_job_memory") -> int | None:
    """A per-job memory limit in bytes from what the user typed; None when the limit is off.

    A number is megabytes (like ``--max-file-mb``); text may carry a unit, ``"4G"``, ``"512M"``,
    ``"2.5GB"``; None means the default (half of RAM); 0 (or ``"off"``/``"none"``) turns the limit off.
    Anything else, or less than 64 MB (a job process needs about 130 MB just to start, so a smaller
    limit would only stop every job), is a :class:`ConfigError` naming ``option``.
    """
    if value is None:
        return default_max_job_memory_bytes()
    number: float | None = None
    if isinstance(value, str):
        if value.strip().lower() in ("off", "none", "0"):
            return None
        match = _MEMORY_TEXT.fullmatch(value)
        if match:
            number = float(match.group(1)) * _MEMORY_UNITS[match.group(2).lower()]
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        number = float(value) * 2**20
    if number == 0:
        return None
    if number is None or number < 64 * 2**20:
        raise ConfigError(
            f"{option} must be a memory size of at least 64 MB: a number of megabytes, or text such as "
            f"'4G' or '512M' (0 turns the limit off), not {value!r}."
        )
    return int(number)


def parse_max_job_seconds(value: float | None, option: str = "max_job_seconds") -> float | None:
    """A per-job time limit in seconds; None means the default (6 hours), 0 turns the limit off."""
    if value is None:
        return DEFAULT_MAX_JOB_SECONDS
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{option} must be a number of seconds (0 turns the limit off), not {value!r}.")
    return float(value) if value > 0 else None


def job_settings(
    home: Path | None = None,
    *,
    allow: Iterable[PathLike] = (),
    share_data: bool = False,
    max_file_mb: float = DEFAULT_MAX_FILE_MB,
    max_job_memory: MemoryLimit = None,
    max_job_seconds: float | None = None,
    env: Mapping[str, str] | None = None,
    option: str = "max_file_mb",
    privacy: str | None = None,
    limit_options: tuple[str, str] = ("max_job_memory", "max_job_seconds"),
) -> JobSettings:
    """The :class:`JobSettings` a worker (or a notebook call) runs jobs with.

    ``privacy`` is ``strict``, ``standard`` or ``share`` (None: ``share`` if ``share_data``, else
    ``standard``); a contradiction or an unknown level is a :class:`ConfigError`. ``limit_options`` name the
    two per-job limits in error sentences (the CLI passes its flags).
    """
    env = os.environ if env is None else env
    level = resolve_level(privacy, share_data)
    return JobSettings(
        home=statsbot_home(dict(env)) if home is None else home,
        allowed_dirs=allowed_dirs(allow, env),
        max_file_bytes=max_file_bytes(max_file_mb, option),
        share_data=level == "share",
        cwd=Path.cwd(),
        privacy=level,
        max_job_memory_bytes=parse_max_job_memory(max_job_memory, limit_options[0]),
        max_job_seconds=parse_max_job_seconds(max_job_seconds, limit_options[1]),
    )


def resolve_token(
    explicit: str | None,
    config: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    sources: Iterable[Callable[[], str | None]] = (),
) -> str | None:
    """The token to use (see the module's precedence), or None when there is none."""
    env = os.environ if env is None else env
    token: object = explicit
    if not token:
        token = next((t for t in (source() for source in sources) if t), None)
    token = token or env.get(TOKEN_ENV) or config.get("token")
    return token if isinstance(token, str) and token.strip() else None


DirsSource = Callable[[], Iterable[Path]]
_worker_dirs_source: list[DirsSource] = []


def follow_worker_dirs(source: DirsSource | None) -> None:
    """Let notebook calls (:mod:`statsbot_nb.local`) also use the folders the running worker may use.

    ``connect()`` registers its current worker's folders here (they change when the panel or
    ``%statsbot allow`` adds one), so the notebook API needs no import of the session module, which would
    load the worker and websockets just to list models. None forgets the source.
    """
    _worker_dirs_source[:] = [source] if source is not None else []


def worker_dirs() -> tuple[Path, ...]:
    """The running worker's extra folders (see :func:`follow_worker_dirs`), or () when none runs here."""
    return tuple(dirs for source in _worker_dirs_source for dirs in source())


@dataclass(frozen=True)
class WorkerSetup:
    """Everything needed to start a worker, resolved once. ``token`` is None when none was found."""

    home: Path
    config: dict[str, Any]
    url: str
    token: str | None = field(repr=False)  # never shown: a repr may end up in a log
    machine_id: str
    settings: JobSettings


def resolve_worker(
    token: str | None = None,
    url: str | None = None,
    *,
    allow: Iterable[PathLike] = (),
    share_data: bool = False,
    max_file_mb: float = DEFAULT_MAX_FILE_MB,
    max_job_memory: MemoryLimit = None,
    max_job_seconds: float | None = None,
    machine_id: str | None = None,
    token_sources: Iterable[Callable[[], str | None]] = (),
    env: Mapping[str, str] | None = None,
    option: str = "max_file_mb",
    privacy: str | None = None,
    limit_options: tuple[str, str] = ("max_job_memory", "max_job_seconds"),
) -> WorkerSetup:
    """Resolve home, config, URL, token, machine id and job settings for a new worker.

    Raises :class:`ConfigError` for a bad URL, an unreadable ``config.json``, a bad ``max_file_mb``
    (named ``option`` in the sentence) or a bad per-job limit (named by ``limit_options``). A missing
    token is not an error here: each entry point says it its own way (the CLI prints usage, ``connect()``
    raises).
    """
    env = os.environ if env is None else env
    home = statsbot_home(dict(env))
    config = load_config(home)
    resolved_url = resolve_ws_url(url, config, dict(env))
    settings = job_settings(
        home,
        allow=allow,
        share_data=share_data,
        max_file_mb=max_file_mb,
        max_job_memory=max_job_memory,
        max_job_seconds=max_job_seconds,
        env=env,
        option=option,
        privacy=privacy,
        limit_options=limit_options,
    )
    return WorkerSetup(
        home=home,
        config=config,
        url=resolved_url,
        token=resolve_token(token, config, env, token_sources),
        machine_id=machine_id or config.get("machine_id") or default_machine_id(),
        settings=settings,
    )
