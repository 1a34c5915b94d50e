"""Connecting to the cluster with bounded waits, and which files its workers can read.

A job process connects its own :class:`distributed.Client` (the address travels in the job's
settings) and always closes it, cancelling what it submitted, so a job killed or failed here never
leaves the cluster computing. Every wait is bounded: the connect by ``dask_timeout`` seconds, and a
cluster that goes away mid-job ends the job with a sentence (:func:`cluster_failure`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import JobError

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
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, ModuleNotFoundError) or "No module named" in text:
        return JobError(
            f"The Dask cluster at {address} lacks a library this job needs ({text}); install statsbot_nb[dask] "
            "(the same version) on its workers."
        )
    return JobError(f"The Dask cluster at {address} went away or stopped answering during {during} ({text}).")


@contextlib.contextmanager
def open_client(address: str, timeout: float) -> Iterator[Any]:
    """A client of the scheduler at ``address``; closed on exit, cancelling every future it submitted."""
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
    try:
        with client.as_current():  # dask's graph building looks for "the" client; never the process default
            yield client
    finally:
        with contextlib.suppress(Exception):
            client.close(timeout=min(timeout, 10))


def run_partitions(
    client: Any, address: str, tasks: list[Any], report: Any, what: str, during: str = "training"
) -> list[Any]:
    """Compute one delayed task per partition on the cluster, reporting each finished one; results in order.

    ``report(done, total)`` is called as partitions finish. A failure of the cluster (a worker or the
    scheduler gone, a library missing there) is a :class:`JobError`; the futures are cancelled on any
    exit, so nothing keeps computing for a job that ended.
    """
    from distributed import as_completed

    futures = client.compute(tasks)
    try:
        results: dict[Any, Any] = {}
        for done, future in enumerate(as_completed(futures), start=1):
            results[future.key] = future.result()
            report(done, len(futures), what)
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


__all__ = ["check_cluster_path", "cluster_failure", "dask_switch", "is_local_address", "open_client", "run_partitions"]
