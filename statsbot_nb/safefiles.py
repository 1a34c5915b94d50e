"""Files opened once: a checked table handle to read from, and a checked folder handle to write into.

Why: a path that passed the policy can change before it is used (a local process swaps a folder or a file
for a symlink to somewhere else). So the policy (:mod:`statsbot_nb.paths`) opens the file or the output
folder *once*, checks what it opened (not the name), and hands over the descriptor; readers and writers
then only use that descriptor:

- :class:`OpenedTable` holds a read descriptor; :meth:`OpenedTable.open` gives readers (pandas, pyarrow,
  openpyxl) a fresh file object *of that same file*, never a new lookup of the name.
- :class:`OutputFolder` holds a folder descriptor; temporary files are created in it with
  ``O_CREAT | O_EXCL | O_NOFOLLOW`` and moved into place with a link or rename relative to it, so a folder
  swapped after the check cannot redirect the write.

Which object a descriptor refers to is read from the kernel (:func:`opened_path`): ``/proc/self/fd`` on
Linux, ``F_GETPATH`` on macOS. Where neither exists the policy falls back to comparing the opened file's
identity with a fresh lookup, which narrows the window but cannot close it (documented in the README).

The register of outputs (:func:`record_output`, :func:`is_worker_output`) remembers which files the
worker wrote, so an output may replace only a file the worker wrote itself and nobody changed since.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import JobError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)
NONBLOCK = getattr(os, "O_NONBLOCK", 0)
DIRECTORY = getattr(os, "O_DIRECTORY", 0)
OUTPUTS_FILE = "outputs.json"
MAX_RECORDED_OUTPUTS = 5000
_PROC_FD = Path("/proc/self/fd")


def opened_path(fd: int) -> Path | None:
    """The absolute path the kernel gives for an open descriptor, or None when it cannot say.

    None also for a file deleted since it was opened (Linux appends `` (deleted)``), which callers refuse.
    """
    if sys.platform.startswith("linux"):
        try:
            target = os.readlink(_PROC_FD / str(fd))
        except OSError:
            return None
        if not target.startswith("/") or target.endswith(" (deleted)"):
            return None
        return Path(target)
    get_path = getattr(fcntl, "F_GETPATH", None)
    if get_path is None:
        return None
    try:
        raw = fcntl.fcntl(fd, get_path, bytes(1024))
    except OSError:
        return None
    text = os.fsdecode(raw.split(b"\0", 1)[0])
    return Path(text) if text.startswith("/") else None


def open_nofollow(path: Path | str, flags: int, dir_fd: int | None = None, mode: int = 0o666) -> int:
    """``os.open`` that never follows a symlink in the last component and never blocks on a FIFO."""
    return os.open(path, flags | NOFOLLOW | NONBLOCK | CLOEXEC, mode, dir_fd=dir_fd)


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    """True when two stats describe the same file object."""
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


class OpenedTable:
    """A table file opened and checked once by the policy; read it only through :meth:`open`.

    ``path`` is where the opened file lies (for names in sentences and the format by extension); the
    descriptor, not the path, is what is read. Close it (or use it as a context manager) when done.
    """

    def __init__(self, fd: int, path: Path, st: os.stat_result) -> None:
        self.fd = fd
        self.path = path
        self.stat = st

    @property
    def name(self) -> str:
        """The file's name, for sentences."""
        return self.path.name

    @property
    def suffix(self) -> str:
        """The file's extension in lower case (it decides the format)."""
        return self.path.suffix.lower()

    def open(self) -> IO[bytes]:
        """A new binary file object of the opened file, at its start, with its own position.

        On Linux ``/proc/self/fd/N`` is reopened: that names the open file itself, not a path to look up
        again, and gives an independent offset (a header read and a chunked read may overlap). Elsewhere a
        duplicate descriptor rewound to the start (readers here use one object at a time).
        """
        if self.fd < 0:
            raise ValueError("the table was closed")
        if sys.platform.startswith("linux") and _PROC_FD.is_dir():
            fh = open(_PROC_FD / str(self.fd), "rb")
            if not same_file(os.fstat(fh.fileno()), self.stat):  # pragma: no cover - would be a kernel oddity
                fh.close()
                raise JobError(f"{self.name} changed while being read; try again.")
            return fh
        fh = os.fdopen(os.dup(self.fd), "rb")
        fh.seek(0)
        return fh

    def close(self) -> None:
        """Release the descriptor (idempotent)."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> OpenedTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OpenedTable({str(self.path)!r})"


class OutputFolder:
    """An output file's folder, opened and checked once; the file is created and named only through it.

    ``path`` is the output's full path (its folder as opened, and the name); ``home`` is the StatsBot home
    where the register of outputs lives (None: nothing is recorded and only new names are written).
    """

    def __init__(self, dir_fd: int, path: Path, home: Path | None) -> None:
        self.dir_fd = dir_fd
        self.path = path
        self.home = home

    @property
    def name(self) -> str:
        """The output file's name inside the folder."""
        return self.path.name

    def existing(self) -> os.stat_result | None:
        """What is at the output name now (a symlink is not followed), or None."""
        try:
            return os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def create_temp(self) -> tuple[str, int]:
        """Create a hidden temporary file beside the output, exclusively and never through a link."""
        for _ in range(20):
            tmp = f".{self.name}.{secrets.token_hex(6)}.tmp"
            try:
                fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, dir_fd=self.dir_fd)
            except FileExistsError:
                continue
            os.set_blocking(fd, True)
            return tmp, fd
        raise FileExistsError(errno.EEXIST, "no free temporary name", self.name)

    def discard(self, tmp: str) -> None:
        """Remove a temporary file that will not be committed (missing is fine)."""
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=self.dir_fd)

    def commit(self, tmp: str, replace: bool) -> None:
        """Give the finished ``tmp`` the output's name; ``replace`` allows replacing what is there.

        Without ``replace`` the name is taken with a hard link, which fails if the name exists (so a file
        that appeared meanwhile is never replaced); file systems without hard links claim the name with an
        exclusive create first. Both names are relative to the opened folder.
        """
        fd = self.dir_fd
        if replace:
            os.rename(tmp, self.name, src_dir_fd=fd, dst_dir_fd=fd)
        else:
            try:
                os.link(tmp, self.name, src_dir_fd=fd, dst_dir_fd=fd, follow_symlinks=False)
            except FileExistsError:
                raise
            except OSError:
                os.close(open_nofollow(self.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, dir_fd=fd))
                os.rename(tmp, self.name, src_dir_fd=fd, dst_dir_fd=fd)
            else:
                self.discard(tmp)
        with contextlib.suppress(OSError):
            os.fsync(fd)

    def close(self) -> None:
        """Release the folder descriptor (idempotent)."""
        if self.dir_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.dir_fd)
            self.dir_fd = -1

    def __enter__(self) -> OutputFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OutputFolder({str(self.path)!r})"


def open_folder(folder: Path) -> OutputFolder:
    """An unchecked :class:`OutputFolder` for a writer given a plain path (tests, the user's own calls)."""
    fd = os.open(folder.parent, os.O_RDONLY | DIRECTORY | CLOEXEC)
    return OutputFolder(fd, folder, None)


# -- the register of outputs ------------------------------------------------------------------------------


def _key(st: os.stat_result) -> str:
    return f"{st.st_dev}:{st.st_ino}"


def _read_register(home: Path) -> dict[str, list[object]]:
    try:
        fd = open_nofollow(home / OUTPUTS_FILE, os.O_RDONLY)
    except OSError:
        return {}
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return {}
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = json.loads(fh.read(4 << 20) or b"{}")
    except (OSError, ValueError):
        return {}
    finally:
        os.close(fd)
    files = data.get("files") if isinstance(data, dict) else None
    return {k: v for k, v in files.items() if isinstance(v, list)} if isinstance(files, dict) else {}


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """Serialise register updates between job processes (where ``fcntl`` exists)."""
    if fcntl is None:  # pragma: no cover - not POSIX: a lost update only makes a later replace refused
        yield
        return
    fd = open_nofollow(home / "outputs.lock", os.O_RDWR | os.O_CREAT, mode=0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def record_output(home: Path | None, st: os.stat_result, path: Path) -> None:
    """Remember that the worker wrote the file ``st`` describes (identity, size, modification time).

    Best effort: a register that cannot be written only means this file will not be replaced later.
    """
    if home is None:
        return
    from . import atomic

    with contextlib.suppress(OSError):
        home.mkdir(parents=True, exist_ok=True)
        with _locked(home):
            files = _read_register(home)
            files.pop(_key(st), None)
            files[_key(st)] = [st.st_size, st.st_mtime_ns, str(path)]
            while len(files) > MAX_RECORDED_OUTPUTS:
                files.pop(next(iter(files)))
            data = json.dumps({"files": files}, ensure_ascii=False).encode("utf-8")
            atomic.write_bytes(home / OUTPUTS_FILE, data, mode=0o600)


def is_worker_output(home: Path | None, st: os.stat_result) -> bool:
    """True when ``st`` is a regular file the worker wrote and nobody changed since (same size and time)."""
    if home is None or not stat.S_ISREG(st.st_mode):
        return False
    entry = _read_register(home).get(_key(st))
    return bool(entry) and entry[:2] == [st.st_size, st.st_mtime_ns]


def read_bytes_nofollow(path: Path, limit: int | None = None) -> bytes:
    """The bytes of a regular file, opened without following a final symlink and without blocking.

    Raises ``OSError`` (``ELOOP`` for a symlink) and ``IsADirectoryError``-like ``OSError`` for anything
    that is not a regular file, so a FIFO can never hang the caller.
    """
    fd = open_nofollow(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read() if limit is None else fh.read(limit)
    finally:
        os.close(fd)


__all__ = [
    "OpenedTable",
    "OutputFolder",
    "is_worker_output",
    "open_folder",
    "open_nofollow",
    "opened_path",
    "read_bytes_nofollow",
    "record_output",
    "same_file",
]
