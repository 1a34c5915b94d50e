"""Atomic file writes: a file appears complete under its name, or not at all.

The one home of the pattern every writer in the package uses (tables, ``config.json``, a model's
``metadata.json``): write a hidden temporary file beside the target, flush it to disk, then move it into
place with one rename. A crash leaves at most a hidden ``.<name>.<random>.tmp`` file, never a truncated
target. A bottom-layer helper: it raises :class:`OSError` and leaves the sentence to the caller, which
knows what was being written and why.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def temp_path(path: Path) -> Path:
    """A hidden, unpredictable name beside ``path`` for its temporary copy."""
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")


def create_temp(path: Path, mode: int | None = None) -> tuple[Path, int]:
    """Create the temporary file for ``path`` exclusively; return its name and an open write descriptor.

    With ``mode`` the file gets exactly that mode (``config.json``: 0600, it may hold a token). Without,
    it is created ``0o666 & ~umask`` and an overwrite keeps the existing file's permissions.
    """
    tmp = temp_path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, 0o600 if mode is not None else 0o666)
    if not hasattr(os, "fchmod"):  # Windows before Python 3.13: no POSIX modes (the profile's ACLs apply)
        return tmp, fd
    if mode is not None:
        os.fchmod(fd, mode)
    else:
        with contextlib.suppress(OSError):
            if path.exists():
                os.fchmod(fd, path.stat().st_mode & 0o777)
    return tmp, fd


def fsync_file(path: Path) -> None:
    """Flush a closed file's data to disk before it is renamed into place (best effort)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk (best effort; not every platform can)."""
    fsync_file(folder)


def commit(tmp: Path, path: Path, overwrite: bool = True) -> None:
    """Move the finished ``tmp`` to ``path``; with ``overwrite=False`` an existing file is never replaced.

    The no-overwrite move is a hard link (which fails if the name exists, atomically) and the unlink of
    the temp name, so a file that appeared after the name was chosen is refused (``FileExistsError``)
    rather than replaced. On file systems without hard links (FAT, some network shares) the name is first
    claimed with an exclusive create, then the finished file is moved over that empty placeholder.
    """
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.replace(tmp, path)
        return
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def discard(tmp: Path) -> None:
    """Remove a temporary file that will not be committed (missing is fine)."""
    with contextlib.suppress(OSError):
        tmp.unlink()


def write_bytes(path: Path, data: bytes, mode: int | None = None, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`create_temp` for ``mode``) and return ``path``."""
    tmp, fd = create_temp(path, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        commit(tmp, path, overwrite)
        if mode is not None:
            os.chmod(path, mode)
    except BaseException:
        discard(tmp)
        raise
    return path
