"""Imported once by the job processes' forkserver (the runner's ``PRELOAD``, after the libraries): finds the
loaded BLAS libraries ahead, so a job process caps its threads without searching for them.

Why: threadpoolctl finds BLAS libraries by walking every library the process has loaded, 15-45 ms in each
fresh job process (a 300-row training's handler took ~0.1 s in all). Found here once, in the forkserver,
every job process inherits the controller with the fork and setting the number takes 0.02 ms. Finding
them starts no thread (a fork must not copy a thread pool). Outside the forkserver (``spawn`` start
method) the first job to ask pays for the search, as before.
"""

from __future__ import annotations

import contextlib
from typing import Any


def _discover() -> Any:
    """threadpoolctl's controller of the BLAS libraries loaded now, or None (not installed, or failing)."""
    try:
        from threadpoolctl import ThreadpoolController

        return ThreadpoolController()
    except Exception:  # a cap is an optimisation: never a reason for a job process not to start
        return None


CONTROLLER = _discover()


def limit_threads(limit: int) -> None:
    """Cap this process's BLAS threads and Arrow's CPU pool at ``limit`` (never restored: the process
    ends with its job; see ``JobContext.limit_threads``)."""
    with contextlib.suppress(Exception):
        import pyarrow

        pyarrow.set_cpu_count(limit)
    with contextlib.suppress(Exception):
        if CONTROLLER is not None:
            blas = CONTROLLER.select(user_api="blas")
            # Setting the number a library already has is not free: OpenBLAS starts its thread pool anew
            # (threads that spin ~0.1 s each; see statsbot_nb.blasenv). Only a change is made.
            if any(lib.num_threads != limit for lib in blas.lib_controllers):
                blas.limit(limits=limit)
        else:
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=limit, user_api="blas")
