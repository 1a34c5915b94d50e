"""``statsbot-worker login`` without the terminal: check the token and options, then store them (0600).

Options are checked exactly as the service will use them (the same settings builder), so a bad URL or
folder is refused now with a sentence instead of parking the service later. Options given replace the
stored ones; options left out keep their stored value (a fresh token does not mean re-typing every folder),
except the switches ``insecure_ws`` and ``verbose``, which are on only when given. The URL is stored
resolved, so the service does not depend on the environment of the shell that ran ``login``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..config import require_encryption, statsbot_home
from ..errors import ConfigError
from ..privacy import describe
from ..settings import DEFAULT_MAX_FILE_MB, MemoryLimit, PathLike, WorkerSetup, resolve_worker
from .store import load_login, save_login

MAX_TOKEN_CHARS = 4096
_BAD_TOKEN_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")


def check_token(token: str) -> str:
    """The token without surrounding whitespace; empty, multi-word or huge is a :class:`ConfigError`."""
    token = (token or "").strip()
    if not token:
        raise ConfigError("No token was given: get one with /connect in the StatsBot bot and paste it at the prompt.")
    if len(token) > MAX_TOKEN_CHARS or _BAD_TOKEN_CHARS.search(token) or not token.isprintable():  # bytes: not text
        raise ConfigError(
            "That does not look like a token (it has spaces, control characters or is very long); "
            "paste only the token from /connect in the StatsBot bot."
        )
    return token


def worker_setup(token: str, options: Mapping[str, Any], env: Mapping[str, str] | None = None) -> WorkerSetup:
    """The worker's settings from stored login ``options`` (checked at ``login``, used by ``run-service``),
    errors naming the ``login`` option to change."""
    return resolve_worker(
        token,
        options.get("ws_url"),
        allow=options.get("allow", ()),
        privacy=options.get("privacy"),
        max_file_mb=options.get("max_file_mb", DEFAULT_MAX_FILE_MB),
        max_job_memory=options.get("max_job_memory"),
        max_job_seconds=options.get("max_job_seconds"),
        machine_id=options.get("machine_id"),
        env=env,
        option="--max-file-mb",
        limit_options=("--max-job-memory", "--max-job-seconds"),
    )


def store_login(
    token: str,
    *,
    home: Path | None = None,
    ws_url: str | None = None,
    allow: Iterable[PathLike] | None = None,
    max_jobs: int | None = None,
    privacy: str | None = None,
    max_file_mb: float | None = None,
    max_job_memory: MemoryLimit = None,
    max_job_seconds: float | None = None,
    machine_id: str | None = None,
    insecure_ws: bool = False,
    verbose: bool = False,
    env: Mapping[str, str] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Check and store the token and the service's options; returns the file and the options stored."""
    token = check_token(token)
    home = statsbot_home(dict(env) if env is not None else None) if home is None else home
    try:
        previous = load_login(home)
    except ConfigError:
        previous = None  # a damaged file is replaced by this login
    options: dict[str, Any] = dict(previous.options) if previous else {}
    given: dict[str, Any] = {
        "ws_url": ws_url,
        "allow": None if allow is None else [str(Path(p).expanduser().absolute()) for p in allow],
        "max_jobs": max_jobs,
        "privacy": privacy,
        "max_file_mb": max_file_mb,
        "max_job_memory": max_job_memory,
        "max_job_seconds": max_job_seconds,
        "machine_id": machine_id,
    }
    options.update({key: value for key, value in given.items() if value is not None})
    options["insecure_ws"], options["verbose"] = bool(insecure_ws), bool(verbose)
    if isinstance(options.get("max_jobs"), int) and options["max_jobs"] < 1:
        raise ConfigError("--max-jobs must be at least 1.")
    setup = worker_setup(token, options, env)
    require_encryption(setup.url, insecure_ws=options["insecure_ws"])
    options["ws_url"] = setup.url
    path = save_login(home, token, options)
    return path, options


def describe_options(options: Mapping[str, Any]) -> list[str]:
    """The stored options in words (never the token), one line each."""
    folders = options.get("allow") or []
    lines = [
        f"Server: {options.get('ws_url', '?')}"
        + (" (unencrypted ws:// allowed)" if options.get("insecure_ws") else ""),
        f"Privacy: {describe(options.get('privacy') or 'standard')}",
        "Extra folders jobs may use: " + (", ".join(folders) if folders else "none (the defaults only)"),
        f"Jobs at once: {options.get('max_jobs', 2)}",
    ]
    limits = [
        f"{name} {options[key]}"
        for key, name in (
            ("max_file_mb", "largest file (MB)"),
            ("max_job_memory", "job memory"),
            ("max_job_seconds", "job seconds"),
        )
        if key in options
    ]
    if limits:
        lines.append("Limits: " + ", ".join(limits))
    if options.get("machine_id"):
        lines.append(f"Machine name: {options['machine_id']}")
    return lines
