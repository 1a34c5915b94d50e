"""The notebook-facing Python API: one current worker, running on the kernel's own event loop.

``statsbot_nb.connect(...)`` returns a :class:`~statsbot_nb.worker.Worker` at once; its connection runs
as a task on the loop that runs the notebook (captured when the extension loads), so cells, widgets and
the worker share one thread and nothing needs nest-asyncio. Widget callbacks may arrive on another
thread (JupyterLab's comm subshells), so everything here that touches the worker is handed to that main
loop thread-safely.

Outside a running loop (a plain script) the worker gets a loop of its own on a daemon thread, and the
``*_sync`` helpers wait for it from the calling thread — safe, because they never run a loop inside a
running loop. On the notebook's own loop thread they refuse with a sentence instead of deadlocking.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from .config import remember_once_connected, update_config
from .context import DEFAULT_MAX_FILE_BYTES
from .errors import ConfigError, TokenRejectedError
from .settings import follow_worker_dirs, resolve_worker
from .shutdown import exiting as exiting  # re-exported: the panel asks the session
from .worker import REJECTED_HINT, Worker

log = logging.getLogger("statsbot_nb.session")
T = TypeVar("T")

_main_loop: asyncio.AbstractEventLoop | None = None
_background: tuple[asyncio.AbstractEventLoop, threading.Thread] | None = None
_current: Worker | None = None
_listeners: list[Callable[[Worker], None]] = []
_token_sources: list[Callable[[], str | None]] = []
#: the Dask fields of JobSettings chosen with ``use_dask()`` (:mod:`statsbot_nb.usedask`), for every new worker
_dask: dict[str, Any] = {}


def capture_main_loop() -> asyncio.AbstractEventLoop | None:
    """Remember the loop that runs the notebook (call from a cell or from extension loading).

    Inside a cell that is the running loop; at kernel start-up (extension listed in the config) no loop
    runs yet, and tornado's current IOLoop names the one that will.
    """
    global _main_loop
    try:
        _main_loop = asyncio.get_running_loop()
    except RuntimeError:
        try:
            from tornado.ioloop import IOLoop

            current = IOLoop.current(instance=False)  # only an existing one: never create a loop here
            _main_loop = current.asyncio_loop if current is not None else None  # type: ignore[attr-defined]
        except Exception:  # no tornado: a plain script
            _main_loop = None
    return _main_loop


def main_loop() -> asyncio.AbstractEventLoop:
    """The loop the worker runs on: the captured notebook loop, else the running one, else a background one.

    A captured loop that is not running (yet) only wins when no other loop runs on this thread.
    """
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if _main_loop is not None and not _main_loop.is_closed() and (_main_loop.is_running() or running is None):
        return _main_loop
    return running or _background_loop()


def _background_loop() -> asyncio.AbstractEventLoop:
    global _background
    if _background is None or not _background[1].is_alive():
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="statsbot-loop", daemon=True)
        thread.start()
        _background = (loop, thread)
    return _background[0]


#: the longest the interpreter's exit waits for a worker on the background loop to stop
EXIT_STOP_SECONDS = 5.0


def _stop_at_exit() -> None:
    """When the main thread ends (a script, terminal IPython), stop a worker on the background loop as
    Ctrl-C would (running jobs cancelled and reported, the connection closed), then that loop.

    It runs before the interpreter shuts its thread pools down (registered after them, and such hooks run
    last-registered first): without it, work still on the loop failed mid-step with "cannot schedule new
    futures after shutdown" and printed tracebacks at exit.
    """
    if _background is None:
        return
    loop, thread = _background
    if not thread.is_alive() or loop.is_closed():
        return
    worker = _current
    if worker is not None and worker.state not in ("stopped", "rejected") and worker.loop is loop:
        try:
            asyncio.run_coroutine_threadsafe(worker.stop(), loop).result(EXIT_STOP_SECONDS)
        except Exception:
            log.debug("The worker did not stop cleanly at exit", exc_info=True)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(EXIT_STOP_SECONDS)


def _register_exit_hook() -> None:
    import concurrent.futures.thread  # noqa: F401  (its exit hook first, so ours runs before it)

    register = getattr(threading, "_register_atexit", None)
    if register is None:  # not CPython's threading: the next best moment
        import atexit

        atexit.register(_stop_at_exit)
    else:
        register(_stop_at_exit)


_register_exit_hook()


def on_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    """True when called from the thread that runs ``loop``."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def call_on_main(func: Callable[..., Any], *args: Any) -> None:
    """Run ``func(*args)`` on the main loop's thread (at once if already there)."""
    loop = main_loop()
    if on_loop_thread(loop):
        func(*args)
    else:
        loop.call_soon_threadsafe(func, *args)


def _current_worker_dirs() -> tuple[Path, ...]:
    """The current worker's extra allowed folders (notebook calls use them too)."""
    return tuple(_current.settings.allowed_dirs) if _current is not None else ()


def current_worker() -> Worker | None:
    """The worker started by :func:`connect` (or the panel), if any."""
    return _current


def on_new_worker(callback: Callable[[Worker], None]) -> None:
    """Be told (on the main loop) whenever :func:`connect` makes a new current worker (used by the panel)."""
    _listeners.append(callback)


def remove_listener(callback: Callable[[Worker], None]) -> None:
    """Undo :func:`on_new_worker` (and :func:`add_token_source`)."""
    if callback in _listeners:
        _listeners.remove(callback)
    if callback in _token_sources:
        _token_sources.remove(callback)  # type: ignore[arg-type]


def add_token_source(source: Callable[[], str | None]) -> None:
    """Let :func:`connect` take a token typed elsewhere (the panel's field) when none is passed.

    ``source()`` returns the token, or None, and forgets it (the panel clears its field).
    """
    _token_sources.append(source)


def connect(
    token: str | None = None,
    url: str | None = None,
    *,
    allow: Iterable[str | os.PathLike[str]] = (),
    share_data: bool = False,
    privacy: str | None = None,
    max_jobs: int = 2,
    machine_id: str | None = None,
    remember: bool = False,
    max_file_mb: float = DEFAULT_MAX_FILE_BYTES / 2**20,
    max_job_memory: float | str | None = None,
    max_job_seconds: float | None = None,
    **worker_options: Any,
) -> Worker:
    """Start a worker connected to the StatsBot server and return it at once.

    ``token``: from the argument, else the panel's token field, else ``$STATSBOT_TOKEN``, else one remembered
    in ``config.json``.
    ``url``: from the argument, else ``$STATSBOT_WS_URL``, ``config.json`` or the default. ``allow``: extra
    folders jobs may use (besides your home and the working folder). ``privacy``: what results may carry to
    the server — ``"strict"`` (metrics, counts and column names only), ``"standard"`` (the default: also
    up to 10 predictions per job and up to 20 labels) or ``"share"`` (also table rows, as ``load_data``
    needs); ``share_data=True`` is the older way of saying ``"share"``. What was sent is in
    ``statsbot_nb.ledger()``. ``max_job_memory`` (megabytes, or text such as ``"4G"``; default half of RAM) and
    ``max_job_seconds`` (default 6 hours) stop a job past either limit, with a sentence saying which; 0
    turns a limit off. A previous current worker is stopped first, so there is only ever one.
    """
    global _current
    setup = resolve_worker(
        token,
        url,
        allow=allow,
        share_data=share_data,
        privacy=privacy,
        max_file_mb=max_file_mb,
        max_job_memory=max_job_memory,
        max_job_seconds=max_job_seconds,
        machine_id=machine_id,
        token_sources=_token_sources,
    )
    token = setup.token
    follow_worker_dirs(_current_worker_dirs)
    if token is None:
        raise TokenRejectedError("No token given and none remembered. " + REJECTED_HINT)
    worker = Worker(
        token,
        setup.url,
        settings=dataclasses.replace(setup.settings, **_dask),
        machine_id=setup.machine_id,
        max_jobs=max_jobs,
        **worker_options,
    )
    try:
        update_config(setup.home, machine_id=worker.machine_id)
    except (OSError, ConfigError) as exc:
        log.warning("Could not update config.json: %s", exc)
    remember_once_connected(setup.home, worker.events.subscribe, setup.url, token if remember else None)
    previous, _current = _current, worker
    loop = main_loop()

    def start() -> None:
        if previous is not None:
            previous.disconnect()
        worker.start()
        for listener in list(_listeners):
            try:
                listener(worker)
            except Exception:
                log.exception("A new-worker listener failed")

    if on_loop_thread(loop):
        start()
    else:
        loop.call_soon_threadsafe(start)
    return worker


def set_dask(fields: dict[str, Any]) -> Worker | None:
    """Use these Dask fields of ``JobSettings`` from now on: for the current worker's next jobs (returned,
    or None when no worker runs) and for every worker :func:`connect` starts later."""
    _dask.clear()
    _dask.update(fields)
    worker = _current
    if worker is None or worker.state in ("stopped", "rejected"):
        return None
    call_on_main(lambda: worker.update_settings(**fields))
    return worker


def disconnect() -> None:
    """Stop the current worker (if any); it stays ``current_worker()`` so its jobs can still be read."""
    if _current is not None and _current.state not in ("stopped", "rejected"):
        _current.disconnect()


def run_sync(coro_factory: Callable[[], Any], timeout: float | None = None) -> Any:
    """Run a worker coroutine to completion from a thread that is not the worker's loop thread.

    Used by the ``*_sync`` conveniences for plain scripts. On the worker's own loop thread (a notebook
    cell) waiting synchronously would deadlock, so this refuses with a sentence instead.
    """
    loop = main_loop()
    if on_loop_thread(loop):
        raise RuntimeError(
            "This wait would block the notebook's event loop that the worker runs on; "
            "use the awaitable form instead, e.g. `await w.wait_connected()`."
        )
    return asyncio.run_coroutine_threadsafe(coro_factory(), loop).result(timeout)


def wait_connected_sync(worker: Worker, timeout: float = 30.0) -> None:
    """Block until ``worker`` is connected (plain scripts only; see :func:`run_sync`)."""
    run_sync(lambda: worker.wait_connected(timeout), None)


def wait_idle_sync(worker: Worker, timeout: float | None = None) -> None:
    """Block until ``worker`` has no queued or running job (plain scripts only)."""
    run_sync(lambda: worker.wait_idle(timeout), None)
