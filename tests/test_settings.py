"""The one settings builder shared by the CLI, ``connect()`` and the notebook API."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from statsbot_nb import settings
from statsbot_nb.errors import ConfigError


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"STATSBOT_HOME": str(tmp_path / "home"), **extra}


def test_precedence_explicit_then_sources_then_env_then_config(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.json").write_text(
        json.dumps({"token": "from-config", "ws_url": "ws://config:1/ws", "machine_id": "box"})
    )
    env = _env(tmp_path)
    setup = settings.resolve_worker(env=env)
    assert (setup.token, setup.url, setup.machine_id, setup.home) == ("from-config", "ws://config:1/ws", "box", home)
    env["STATSBOT_TOKEN"] = "from-env"
    env["STATSBOT_WS_URL"] = "ws://env:2/ws"
    setup = settings.resolve_worker(env=env)
    assert (setup.token, setup.url) == ("from-env", "ws://env:2/ws")
    setup = settings.resolve_worker(env=env, token_sources=[lambda: None, lambda: "typed"])
    assert setup.token == "typed"
    setup = settings.resolve_worker("s3cret", "ws://given:3/ws", machine_id="me", env=env, token_sources=[lambda: "x"])
    assert (setup.token, setup.url, setup.machine_id) == ("s3cret", "ws://given:3/ws", "me")
    assert "s3cret" not in repr(setup)


def test_no_token_is_none_not_an_error(tmp_path: Path) -> None:
    assert settings.resolve_worker(env=_env(tmp_path)).token is None
    assert settings.resolve_token("  ", {}, {}) is None


def test_allowed_dirs_given_first_then_env_deduplicated(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    env = _env(tmp_path, STATSBOT_ALLOWED_DIRS=os.pathsep.join([str(b), str(a), ""]))
    assert settings.allowed_dirs([a], env) == (a, b)
    job = settings.job_settings(tmp_path, allow=[a], share_data=True, max_file_mb=2, env=env)
    assert job.allowed_dirs == (a, b) and job.share_data and job.max_file_bytes == 2 * 2**20
    assert job.home == tmp_path


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), True, "10"])
def test_bad_max_file_mb_names_the_option(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ConfigError, match="--max-file-mb must be a positive number"):
        settings.job_settings(tmp_path, max_file_mb=bad, env={}, option="--max-file-mb")  # type: ignore[arg-type]


def test_worker_dirs_follow_a_registered_source(tmp_path: Path) -> None:
    try:
        settings.follow_worker_dirs(lambda: [tmp_path])
        assert settings.worker_dirs() == (tmp_path,)
    finally:
        settings.follow_worker_dirs(None)
    assert settings.worker_dirs() == ()
