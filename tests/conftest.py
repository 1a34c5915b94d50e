"""Shared fixtures: a temporary HOME and StatsBot home, servers on 127.0.0.1 port 0, and workers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import extras
import pytest
from jobfuncs import TEST_ACTIONS
from legacy_server import LegacyServer

from statsbot_nb.context import JobSettings
from statsbot_nb.retry import Backoff
from statsbot_nb.server import JobServer
from statsbot_nb.worker import Worker

FAST_BACKOFF = Backoff(initial=0.05, factor=2.0, cap=0.5, jitter=0.5)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "extra(library): needs an optional library (tests/extras.py); skipped without it, failed in CI"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("extra"):
        for library in mark.args:
            extras.require(library)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say which model types this run left untested for a missing extra, and how to install it."""
    lines = extras.summary()
    if lines:
        terminalreporter.section("optional extras")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A Dask ``LocalCluster`` per test module (the Dask tests): two worker threads in this process behind a
    TCP scheduler, which job processes can reach too. Needs the dask extra (those tests are marked for it)."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, protocol="tcp", dashboard_address=None
    ) as local:
        yield local


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary $HOME with an empty StatsBot home; no proxy variables leak in."""
    user_home = tmp_path / "user"
    user_home.mkdir()
    monkeypatch.setenv("HOME", str(user_home))
    statsbot = user_home / ".statsbot"
    monkeypatch.setenv("STATSBOT_HOME", str(statsbot))
    for var in (
        "STATSBOT_WS_URL",
        "STATSBOT_ALLOWED_DIRS",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(var, raising=False)
    return statsbot


@pytest.fixture
def settings(home: Path, tmp_path: Path) -> JobSettings:
    data = tmp_path / "user" / "data"
    data.mkdir()
    return JobSettings(home=home, cwd=data)


@pytest.fixture
async def legacy() -> AsyncIterator[LegacyServer]:
    async with LegacyServer() as server:
        yield server


@pytest.fixture
async def reference() -> AsyncIterator[JobServer]:
    async with JobServer() as server:
        yield server


@pytest.fixture
async def make_worker(settings: JobSettings) -> AsyncIterator[Callable[..., Worker]]:
    """Build workers with the test actions and a fast backoff; all are stopped afterwards."""
    made: list[Worker] = []

    def factory(url: str, token: str, **kwargs: Any) -> Worker:
        kwargs.setdefault("actions", TEST_ACTIONS)
        kwargs.setdefault("backoff", FAST_BACKOFF)
        kwargs.setdefault("settings", settings)
        kwargs.setdefault("machine_id", "test-machine")
        worker = Worker(token, url, **kwargs)
        made.append(worker)
        return worker

    yield factory
    for worker in made:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(worker.stop(), 10)
