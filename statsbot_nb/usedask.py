"""``statsbot_nb.use_dask(...)``: the notebook's switch for sending jobs to a Dask cluster (issue 14).

The notebook twin of ``statsbot-worker --dask-scheduler``: it sets the Dask fields of the current worker's
:class:`~statsbot_nb.context.JobSettings` (from its next job on) and remembers them for the worker the next
``statsbot_nb.connect()`` starts. Jobs run in job processes of their own, so what crosses to them is the
scheduler's address, never a ``Client`` object: a ``Client`` or cluster given here is read for its
address, and an in-process address (``inproc://``, a ``LocalCluster(processes=False)`` without
``protocol="tcp"``) is refused with a sentence, because no other process can reach it.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from . import session
from .cluster.connect import is_local_address
from .errors import ConfigError

_INPROC_HINT = (
    "jobs run in processes of their own and cannot reach an in-process (inproc://) scheduler. Start the "
    "cluster with a TCP address, e.g. LocalCluster(processes=False, protocol='tcp') or LocalCluster() "
    "(worker processes), and pass it again."
)


class DaskChoice(str):
    """The sentence :func:`use_dask` returns; a notebook shows it as plain text, without quotes."""

    def __repr__(self) -> str:
        return str(self)


def scheduler_address(client_or_address: Any) -> tuple[str | None, bool]:
    """``(address, is a LocalCluster of this process)`` of a ``Client``, a cluster, an address, or None."""
    if client_or_address is None:
        return None, False
    if isinstance(client_or_address, str):
        address = client_or_address.strip()
        if not address or any(ch.isspace() for ch in address):
            raise ConfigError(f"{client_or_address!r} is not a Dask scheduler address; give one like tcp://host:8786.")
        return _checked(address), False
    cluster = getattr(client_or_address, "cluster", None) or client_or_address  # a Client knows its cluster
    address = getattr(client_or_address, "scheduler_address", None)  # LocalCluster, SpecCluster
    if not isinstance(address, str):
        address = getattr(getattr(client_or_address, "scheduler", None), "address", None)  # Client
    if not isinstance(address, str) or not address:
        raise ConfigError(
            f"use_dask() takes a distributed.Client, a Dask cluster, a scheduler address such as "
            f"'tcp://host:8786', or None; not a value of type {type(client_or_address).__name__}."
        )
    return _checked(address), type(cluster).__name__ == "LocalCluster"


def _checked(address: str) -> str:
    if address.startswith("inproc://"):
        raise ConfigError(f"{address} is an in-process address: {_INPROC_HINT}")
    return address


def use_dask(client_or_address: Any = None, *, shared_dirs: Iterable[str | os.PathLike[str]] = ()) -> DaskChoice:
    """Send the jobs that can run on a Dask cluster there; ``None`` turns it off (everything runs here).

    ``client_or_address``: a ``distributed.Client``, a cluster (``LocalCluster``...), or the scheduler's
    address (``"tcp://host:8786"``). ``shared_dirs``: folders a remote cluster's workers see at the same
    path (a shared mount); a remote cluster reads only files under them. Applies to the current worker
    from its next job on, and to the worker a later ``connect()`` starts. Returns the sentence saying what
    will happen (shown as text in a notebook).
    """
    address, local = scheduler_address(client_or_address)
    if address is not None and importlib.util.find_spec("distributed") is None:
        raise ConfigError("use_dask() needs the dask extra: pip install 'statsbot_nb[dask]', then restart the kernel.")
    dirs = tuple(Path(d).expanduser().absolute() for d in shared_dirs)
    worker = session.set_dask({"dask_scheduler": address, "dask_local": local, "dask_shared_dirs": dirs})
    when = " from the current worker's next job on" if worker is not None else " once you connect()"
    if address is None:
        return DaskChoice(f"Dask is off: every job runs on this machine{when}.")
    sentence = (
        f"Dask: jobs that can run on the cluster at {address} go there{when}; the rest run on this machine, "
        "and each job's notes say where it ran."
    )
    if not dirs and not local and not is_local_address(address):
        sentence += " That cluster reads only files under shared_dirs=[...] (folders its workers see at the same path)."
    return DaskChoice(sentence)


__all__ = ["DaskChoice", "scheduler_address", "use_dask"]
