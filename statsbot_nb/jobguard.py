"""Guards around one job process: per-job memory and time limits, its scratch folder, its process group.

**Per-job limits** (``JobSettings.max_job_memory_bytes`` and ``max_job_seconds``) are enforced on the job
process by a :class:`Watchdog` thread in the parent, which kills the job's process group past either
limit and turns the kill into a sentence naming the limit. Why a watchdog on resident memory rather than
``setrlimit`` in the child: address-space and data limits count memory a job only *reserves*. Measured
on this project's job processes (2 cores, 20,000 x 20 table): a logistic regression with 0.21 GB
resident had 1.4 GB of ``VmData`` and 1.9 GB of ``VmSize``; CatBoost 0.27 GB resident, 2.4 GB data;
Keras 0.73 GB resident, 3.5 GB ``VmSize``. Thread arenas, BLAS buffers and TensorFlow reserve more the
more cores a machine has, so any rlimit small enough to protect the machine would stop ordinary jobs on
a bigger one. Resident memory (summed over the job and the processes it starts, e.g. joblib workers) is
what actually crowds out the user's programs. The watchdog samples every 0.1 s, so an allocation faster
than that can overshoot by what it writes in 0.1 s before the kill; it reads ``/proc`` (Linux).
Elsewhere only the time limit applies. The watchdog is a thread, not a task, so a notebook cell that
holds the event loop does not pause it.

**Scratch folders** are made and removed by the parent (named ``statsbot-job-<worker pid>-...``), so a
job killed for a limit, a cancel or a crash leaves nothing behind; folders whose worker process is gone
(the worker itself was killed) are swept when a runner warms up (:func:`sweep_scratch`).

**The process group**: a job process leads its own group, so a kill reaches what it started; on Linux it
also dies with the forkserver, which exits when the worker does, so no job outlives its worker unwatched.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.process
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

#: Scratch folders are named ``<prefix><worker pid>-<random>`` in the system's temporary folder.
SCRATCH_PREFIX = "statsbot-job-"
#: How often the watchdog samples a job's memory and clock, in seconds.
WATCH_INTERVAL = 0.1
#: Scratch folders of the old form (no worker pid in the name) are swept once this old, in seconds.
LEGACY_SCRATCH_AGE = 24 * 3600.0


def memory_limit_sentence(limit_bytes: int) -> str:
    """What the user reads when a job was stopped for its memory (server result and local job log)."""
    return (
        f"The job used more than {limit_bytes / 2**20:.0f} MB of memory (the per-job memory limit, "
        "--max-job-memory) and was stopped."
    )


def time_limit_sentence(limit_seconds: float) -> str:
    """What the user reads when a job was stopped for running too long."""
    return f"The job ran longer than {limit_seconds:g} s (--max-job-seconds) and was stopped."


def _page_size() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return 4096


_PAGE = _page_size()


def tree_rss_bytes(pid: int) -> int | None:
    """Resident memory of process ``pid`` and all its descendants, from ``/proc``; None without ``/proc``.

    Children are found through ``/proc/<pid>/task/<tid>/children``; a process that ends while being read
    counts as 0. Shared pages are counted in every process that maps them, so this errs on the high side.
    """
    if not os.path.isdir(f"/proc/{pid}"):
        return None if not os.path.isdir("/proc/self") else 0
    total, seen, todo = 0, set(), [pid]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            with open(f"/proc/{current}/statm", "rb") as fh:
                total += int(fh.read().split()[1]) * _PAGE
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", "rb") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError, IndexError):
            continue
    return total


#: Held around every look at a job process's exit status and around starting one. With a forkserver the
#: exit status comes over a pipe that can be read once: two threads looking at the same process at once (a
#: join here, and the ``_cleanup()`` that ``Process.start()`` runs over every child) left the second with
#: end-of-file, which multiprocessing reports as exit code 255 instead of "killed by signal 9".
PROCESS_LOCK = threading.Lock()


def process_alive(proc: multiprocessing.process.BaseProcess) -> bool:
    """``proc.is_alive()``, never at the same time as another look at its status (:data:`PROCESS_LOCK`)."""
    with PROCESS_LOCK:
        return proc.is_alive()


def join_process(proc: multiprocessing.process.BaseProcess, timeout: float | None = None) -> None:
    """Wait up to ``timeout`` seconds (None: for good) for ``proc`` to end, then collect its status under
    :data:`PROCESS_LOCK` (the wait itself holds no lock). Blocks: call it from a thread."""
    import multiprocessing.connection

    with contextlib.suppress(ValueError):  # a closed process object: nothing to wait for
        multiprocessing.connection.wait([proc.sentinel], timeout)
    with PROCESS_LOCK, contextlib.suppress(ValueError, AssertionError):
        proc.join(0)


def kill_job_process(proc: multiprocessing.process.BaseProcess) -> None:
    """SIGKILL a job process and the process group it leads (the processes it started), if still there."""
    if proc.pid is None:
        return
    if hasattr(os, "killpg"):
        with contextlib.suppress(OSError):
            if os.getpgid(proc.pid) == proc.pid:
                os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError, ValueError):
        proc.kill()


class Watchdog:
    """Stops one job process past its memory or time limit and remembers which limit it was.

    A daemon thread samples the process every ``interval`` seconds; :meth:`stop` ends it once the
    process is gone. ``reason`` holds the sentence for the user when the watchdog killed the job.
    """

    def __init__(
        self,
        proc: multiprocessing.process.BaseProcess,
        memory_limit: int | None,
        time_limit: float | None,
        interval: float = WATCH_INTERVAL,
        rss: Callable[[int], int | None] = tree_rss_bytes,
    ) -> None:
        self.proc = proc
        self.memory_limit = memory_limit
        self.time_limit = time_limit
        self.interval = interval
        self.reason: str | None = None
        self.peak_bytes = 0
        self._rss = rss
        self._done = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._watch, name="statsbot-job-watchdog", daemon=True)

    def start(self) -> Watchdog:
        """Start watching (no thread at all when there is no limit to enforce)."""
        if self.memory_limit is not None or self.time_limit is not None:
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (call after the process ended)."""
        self._done.set()

    def _watch(self) -> None:
        pid = self.proc.pid
        watch_memory = self.memory_limit is not None and pid is not None
        while not self._done.wait(self.interval):
            if self.time_limit is not None and time.monotonic() - self._started > self.time_limit:
                self._stop_job(time_limit_sentence(self.time_limit))
                return
            if watch_memory and pid is not None:
                used = self._rss(pid)
                if used is None:  # no /proc on this system: only the time limit can be enforced
                    watch_memory = False
                    continue
                self.peak_bytes = max(self.peak_bytes, used)
                if self.memory_limit is not None and used > self.memory_limit:
                    self._stop_job(memory_limit_sentence(self.memory_limit))
                    return

    def _stop_job(self, reason: str) -> None:
        if self._done.is_set():
            return
        self.reason = reason
        kill_job_process(self.proc)


def make_scratch(base: str | None = None) -> Path:
    """A new private scratch folder for one job, named after this (the worker's) process."""
    return Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=base))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but is another user's: not ours to judge
        return True
    return True


def sweep_scratch(base: str | None = None, now: float | None = None) -> list[Path]:
    """Remove scratch folders left by workers that are gone (killed before they could clean up).

    A folder named with a worker pid is removed when no process has that pid; an old-style folder (no
    pid) when it is older than :data:`LEGACY_SCRATCH_AGE`. Only real folders owned by this user are
    touched, never a link. Returns the folders removed.
    """
    folder = Path(base or tempfile.gettempdir())
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(SCRATCH_PREFIX):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not entry.is_dir(follow_symlinks=False) or (hasattr(os, "getuid") and info.st_uid != os.getuid()):
            continue
        owner, dash, _ = entry.name[len(SCRATCH_PREFIX) :].partition("-")
        if dash and owner.isdigit():
            stale = int(owner) != os.getpid() and not _pid_alive(int(owner))
        else:
            stale = now - info.st_mtime > LEGACY_SCRATCH_AGE
        if stale:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    return removed


def die_with_parent() -> None:
    """Linux: have the kernel kill this process when its parent (the forkserver) ends.

    The forkserver exits as soon as the worker's process does, so a job never outlives its worker and
    runs on unwatched (the watchdog lives in the worker).
    """
    import ctypes

    parent = os.getppid()
    # The process's own symbols include the C library's prctl: no library search (ctypes.util.find_library
    # runs ldconfig, milliseconds in every job process).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent ended before the request took effect
        os._exit(1)
