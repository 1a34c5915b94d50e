"""Connecting to the cluster with bounded waits, and which files its workers can read.

A job process connects its own :class:`distributed.Client` (the address travels in the job's
settings) and always closes it, cancelling what it submitted, so a job killed or failed here never
leaves the cluster computing. Every wait is bounded by ``dask_timeout`` seconds: the connect, a scheduler
that stops answering mid-job, and a cluster left with no worker (whose scheduler answers, but where nothing
would ever run); each ends the job with a sentence (:func:`cluster_failure`, :func:`run_partitions`). How
long the work itself may take is the job's own limit (``max_job_seconds``): the runner kills the job's
process past it, as for a cancel, and the scheduler drops that client's tasks when its connection closes.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import logging
import queue
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import JobError, exception_line

LOOPBACK_NAMES = ("localhost", "")


def scheduler_host(address: str) -> str:
    """``tcp://10.0.0.5:8786`` -> ``10.0.0.5`` (also for ``inproc://`` and bare ``host:port``)."""
    parsed = urlsplit(address if "://" in address else f"tcp://{address}")
    return parsed.hostname or ""


def is_local_address(address: str) -> bool:
    """True when the scheduler runs on this machine (loopback or one of this host's names)."""
    host = scheduler_host(address)
    if address.startswith("inproc://") or host in LOOPBACK_NAMES:
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    return host in (socket.gethostname(), socket.getfqdn())


def check_cluster_path(path: Path, address: str, local: bool, shared_dirs: tuple[Path, ...]) -> None:
    """Refuse, with a sentence, a file the cluster's workers cannot read.

    The rule: a cluster on this machine (``--dask-local`` or a loopback scheduler) reads every file this
    machine may; a remote cluster only files under a ``--dask-shared-dir`` (a folder mounted at the
    same path on its workers, such as an NFS share), because a path that exists only here would fail
    on every worker. The file policy has already been applied by the handler.
    """
    if local or is_local_address(address):
        return
    resolved = path.resolve()
    for shared in shared_dirs:
        if resolved == shared.resolve() or shared.resolve() in resolved.parents:
            return
    raise JobError(
        f"{path.name} is only on this machine, so the Dask cluster at {address} cannot read it; put it in a "
        "folder its workers share (and start the worker with --dask-shared-dir FOLDER), or train without Dask."
    )


def cluster_failure(address: str, exc: BaseException, during: str = "training") -> JobError:
    """The sentence for a cluster that went away or refused the work (``during``: what the job was doing)."""
    text = exception_line(exc)
    if isinstance(exc, ModuleNotFoundError) or "No module named" in text:
        return JobError(
            f"The Dask cluster at {address} lacks a library this job needs ({text}); install statsbot_nb[dask] "
            "(the same version) on its workers."
        )
    if "scheduler-connection-lost" in text:  # distributed cancels every future of a client that lost its scheduler
        return JobError(
            f"The Dask cluster at {address} went away during {during}: this machine lost its connection to "
            "the scheduler. Check that the cluster is running, then send the job again."
        )
    if type(exc).__name__ == "KilledWorker":
        return JobError(
            f"The Dask cluster at {address} went away during {during}: its workers died while running this job's "
            "work (out of memory?); give them more memory or use more partitions, then send the job again."
        )
    return JobError(f"The Dask cluster at {address} went away or stopped answering during {during} ({text}).")


#: The bound :func:`run_partitions` uses when not given one: the ``timeout`` of the innermost :func:`open_client`.
_BOUND: contextvars.ContextVar[float] = contextvars.ContextVar("statsbot_dask_timeout", default=30.0)


@contextlib.contextmanager
def open_client(address: str, timeout: float) -> Iterator[Any]:
    """A client of the scheduler at ``address``; closed on exit, cancelling every future it submitted.

    ``timeout`` bounds the connect, and every later wait on the cluster (:func:`run_partitions`).
    """
    try:
        from distributed import Client
    except ImportError as exc:
        raise JobError(
            "Jobs on a Dask cluster need the dask extra: pip install 'statsbot_nb[dask]', then restart the worker."
        ) from exc
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise JobError(
            f"No Dask scheduler answered at {address} within {timeout:g} s; start it, or check --dask-scheduler."
        ) from exc
    bound = _BOUND.set(timeout)
    failed = False
    try:
        with client.as_current():  # dask's graph building looks for "the" client; never the process default
            yield client
    except BaseException:
        failed = True
        raise
    finally:
        _BOUND.reset(bound)
        _close_quietly(client, min(timeout, 10), quiet=failed and client.status != "running")


def _close_quietly(client: Any, timeout: float, quiet: bool) -> None:
    """Close ``client``; with ``quiet`` (its scheduler is gone, the job already failed with a sentence) without
    distributed's own tracebacks about the reconnect it gives up, which would only repeat that sentence."""
    logger = logging.getLogger("distributed.client")
    level = logger.level
    if quiet:
        logger.setLevel(logging.CRITICAL)
    try:
        with contextlib.suppress(Exception):
            client.close(timeout=timeout)
    finally:
        logger.setLevel(level)


def _heartbeat(bound: float) -> float:
    """Seconds between looks at the cluster while no partition finishes (a few per ``bound``, at most 2 s)."""
    return min(2.0, max(0.2, bound / 5))


class ClusterWatch:
    """Whether a cluster that finishes nothing is still worth waiting for: a scheduler that answers, with workers.

    Called only while no partition finishes. Partitions that are slow on a live cluster are waited for (the
    job's own time limit, ``max_job_seconds``, bounds them); a scheduler that stops answering, or one with
    no worker at all, fails the job once that has lasted ``bound`` seconds.
    """

    def __init__(self, client: Any, address: str, bound: float, during: str = "training") -> None:
        self.client, self.address, self.bound, self.during = client, address, bound, during
        self.silent_since: float | None = None
        self.empty_since: float | None = None

    def progressed(self) -> None:
        """A partition finished: the cluster is alive."""
        self.silent_since = self.empty_since = None

    def check(self) -> None:
        """Raise :class:`JobError` when the scheduler has not answered, or had no worker, for ``bound`` seconds."""
        asked = time.monotonic()
        try:
            info = self.client.sync(self.client.scheduler.identity, n_workers=0, callback_timeout=self.bound)
            workers = int(info.get("n_workers", 0))
        except Exception:
            workers = None
        now = time.monotonic()
        if workers is None or self.client.status != "running":
            self.silent_since = self.silent_since or asked
            if now - self.silent_since >= self.bound:
                raise JobError(
                    f"The Dask cluster at {self.address} went away during {self.during}: its scheduler has not "
                    f"answered for {self.bound:g} s. Check that it is running, then send the job again."
                )
            return
        self.silent_since = None
        if workers > 0:
            self.empty_since = None
            return
        self.empty_since = self.empty_since or now
        if now - self.empty_since >= self.bound:
            raise JobError(
                f"The Dask cluster at {self.address} has had no workers for {self.bound:g} s, so none of this "
                "job's work can run; start workers (dask worker ADDRESS) or run the job without Dask."
            )


def watch_for(client: Any, address: str, during: str = "training", timeout: float | None = None) -> ClusterWatch:
    """A :class:`ClusterWatch` of ``client``'s cluster, bounded by ``timeout`` (default: the ``open_client`` one)."""
    return ClusterWatch(client, address, _BOUND.get() if timeout is None else timeout, during)


def bounded_result(future: Any, watch: ClusterWatch) -> Any:
    """``future.result()``, looking at the cluster with ``watch`` while it is not done (so never unbounded).

    Raises :class:`JobError` for a cluster gone or without workers (see :class:`ClusterWatch`); the
    future's own exception otherwise, as ``result()`` does.
    """
    from distributed import TimeoutError as DaskTimeout  # asyncio's: not the built-in one before Python 3.11

    while True:
        try:
            result = future.result(timeout=_heartbeat(watch.bound))
        except (TimeoutError, DaskTimeout):
            watch.check()
            continue
        watch.progressed()
        return result


def run_partitions(
    client: Any,
    address: str,
    tasks: list[Any],
    report: Any,
    what: str,
    during: str = "training",
    timeout: float | None = None,
) -> list[Any]:
    """Compute one delayed task per partition on the cluster, reporting each finished one; results in order.

    ``report(done, total, what)`` is called as partitions finish. Never waits unbounded: while nothing
    finishes, the scheduler is asked every few seconds whether it is there and has workers (:class:`ClusterWatch`),
    and ``timeout`` seconds (default: the ``open_client`` timeout) of silence or of no worker end the job. A
    failure of the cluster (a worker or the scheduler gone, a library missing there) is a :class:`JobError`;
    the futures are cancelled on any exit, so nothing keeps computing for a job that ended.
    """
    bound = _BOUND.get() if timeout is None else timeout
    watch = ClusterWatch(client, address, bound, during)
    futures = client.compute(tasks)
    finished: queue.Queue[Any] = queue.Queue()
    try:
        for future in futures:
            future.add_done_callback(finished.put)
        results: dict[Any, Any] = {}
        total = len({f.key for f in futures})
        while len(results) < total:
            try:
                future = finished.get(timeout=_heartbeat(bound))
            except queue.Empty:
                watch.check()
                continue
            watch.progressed()
            if future.key in results:
                continue
            results[future.key] = future.result()
            report(len(results), total, what)
        return [results[f.key] for f in futures]
    except JobError:
        raise
    except Exception as exc:
        raise cluster_failure(address, exc, during) from exc
    finally:
        with contextlib.suppress(Exception):
            client.cancel(futures, force=True)


@contextlib.contextmanager
def dask_switch(
    scheduler: str | None, local_workers: int | None, shared_dirs: tuple[Path, ...] = ()
) -> Iterator[dict[str, Any]]:
    """The ``JobSettings`` fields for the worker's Dask options (``{}``: Dask off, the default).

    ``local_workers`` starts a ``LocalCluster`` of that many worker processes (one thread each) for as
    long as the worker runs, and closes it on exit; otherwise ``scheduler`` is an existing cluster's address.
    """
    if local_workers:
        try:
            from distributed import LocalCluster
        except ImportError as exc:
            raise JobError("--dask-local needs the dask extra: pip install 'statsbot_nb[dask]'.") from exc
        with LocalCluster(n_workers=local_workers, threads_per_worker=1, processes=True, dashboard_address=":0") as lc:
            yield {"dask_scheduler": lc.scheduler_address, "dask_local": True, "dask_shared_dirs": shared_dirs}
        return
    yield {"dask_scheduler": scheduler, "dask_shared_dirs": shared_dirs} if scheduler else {}


__all__ = [
    "ClusterWatch",
    "bounded_result",
    "check_cluster_path",
    "cluster_failure",
    "dask_switch",
    "is_local_address",
    "open_client",
    "run_partitions",
    "watch_for",
]
