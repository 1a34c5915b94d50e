"""Imported first by the job processes' forkserver (the runner's ``PRELOAD``), before any library is loaded:
every job process starts with one BLAS thread, and a job that wants more raises it (``jobwarm.limit_threads``).

Why: OpenBLAS reads ``OPENBLAS_NUM_THREADS`` once, when it loads, and starts with one thread per core
otherwise. A job process that then asks for fewer makes OpenBLAS start its thread pool anew, and each new
thread spins for about 0.1 s before it sleeps: on this 2-core machine two such threads (numpy and SciPy each
bring an OpenBLAS) held both cores while a 40-row prediction ran, 125 ms instead of 35 ms. Starting at one,
a job that wants one thread (the default with two job slots on two cores) sets nothing. A value the user
set in the environment is kept.
"""

from __future__ import annotations

import os

#: The variables read by the BLAS libraries numpy and SciPy wheels bring (OpenBLAS; MKL in some builds).
VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

for _name in VARIABLES:
    os.environ.setdefault(_name, "1")
