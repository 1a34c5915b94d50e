"""Which files a job may read or write: the worker's file-access policy.

The server is not trusted with the user's machine, so every path it sends goes through :class:`PathPolicy`
before anything is opened. The rules, in the order they are checked:

1. the path is a non-empty string without NUL bytes (``~`` is expanded, relative paths start at the
   working folder);
2. symlinks are resolved *before* deciding, and the resolved path must lie inside an allowed folder:
   the user's home, the working folder, and any folder the user added (``--allow DIR``,
   ``STATSBOT_ALLOWED_DIRS``, ``%statsbot allow DIR``);
3. nothing inside the StatsBot home (the model store, config, logs) is ever used, even when the home
   lies inside an allowed folder;
4. no hidden file and no hidden folder below the allowed folder (names starting with ``.``);
5. only regular files (no folders, FIFOs, sockets or devices), not empty, not above the size limit;
6. only table formats: ``.csv .tsv .xlsx .xls .parquet`` (any letter case).

Refusals raise :class:`~statsbot_nb.errors.AccessDenied` with a sentence naming the path and the rule.
A path that passes every rule but does not exist raises :class:`MissingFile`, so ``file_info`` can answer
``exists: false`` without letting the server probe folders it may not use.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .context import JobSettings
from .errors import AccessDenied, JobError
from .safefiles import CLOEXEC, DIRECTORY, NOFOLLOW, OpenedTable, OutputFolder, open_nofollow, opened_path, same_file

log = logging.getLogger("statsbot_nb.files")

TABLE_EXTENSIONS: frozenset[str] = frozenset({".csv", ".tsv", ".xlsx", ".xls", ".parquet"})
MAX_PATH_CHARS = 4096

ALLOW_HINT = "Allow its folder with `--allow DIR`, STATSBOT_ALLOWED_DIRS, or `%statsbot allow DIR` in a notebook."
_EXT_LIST = ", ".join(sorted(TABLE_EXTENSIONS))


class MissingFile(JobError):
    """A path the policy would allow, but nothing exists there."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"There is no file at {path}; check the name and folder.")
        self.path = path


def parse_allowed_dirs(env_value: str | None) -> tuple[Path, ...]:
    """Split ``STATSBOT_ALLOWED_DIRS`` (``os.pathsep``-separated) into absolute folders, in order.

    Empty entries are skipped, ``~`` is expanded and relative entries are taken from the current folder,
    because the variable is read in the process that starts the worker. Duplicates are dropped.
    """
    if not env_value:
        return ()
    seen: dict[Path, None] = {}
    for entry in env_value.split(os.pathsep):
        entry = entry.strip()
        if entry:
            seen.setdefault(Path(entry).expanduser().absolute(), None)
    return tuple(seen)


def _resolve(path: Path) -> Path:
    """``path.resolve()`` that turns symlink loops and odd OS errors into a refusal sentence."""
    try:
        return path.resolve(strict=False)
    except (OSError, RuntimeError) as exc:
        raise AccessDenied(
            f"{path} cannot be resolved (a symlink loop or an unreadable folder): {exc}; fix or remove the link."
        ) from exc


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _hidden_part(parts: Iterable[str]) -> str | None:
    for part in parts:
        if part.startswith(".") and part not in (".", ".."):
            return part
    return None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


@dataclass(frozen=True)
class PathPolicy:
    """The folders a job may use and the limits that apply; build it with :meth:`from_settings`.

    ``roots`` and ``store`` are resolved absolute paths. The policy itself is an immutable value, so it
    can be built once per job (settings may change between jobs when the user allows a folder).
    """

    roots: tuple[Path, ...]
    store: Path
    cwd: Path
    max_file_bytes: int

    @classmethod
    def from_settings(cls, settings: JobSettings) -> PathPolicy:
        """Defaults (home and working folder) plus ``settings.allowed_dirs``; store = ``settings.home``.

        A *default* that is the filesystem root (a service started from ``/``, or ``HOME=/``) is skipped,
        because it would open the whole machine; the user can still allow ``/`` explicitly.
        """
        cwd = Path(settings.cwd).expanduser().absolute()
        defaults: list[Path] = []
        try:
            defaults.append(Path.home())
        except (RuntimeError, KeyError, OSError):  # no $HOME and no passwd entry: just skip the default
            log.warning("The user's home folder is unknown; it is not an allowed folder for this worker.")
        defaults.append(cwd)
        extras = [Path(extra).expanduser() for extra in settings.allowed_dirs]
        candidates = [(d, True) for d in defaults] + [(e if e.is_absolute() else cwd / e, False) for e in extras]
        roots: dict[Path, None] = {}
        for candidate, is_default in candidates:
            try:
                resolved = candidate.resolve(strict=False)
            except (OSError, RuntimeError) as exc:
                log.warning("Ignoring allowed folder %s: %s", candidate, exc)
                continue
            if is_default and resolved == Path(resolved.anchor):
                log.warning(
                    "Not allowing %s by default (it is the filesystem root); use --allow to allow it.", resolved
                )
                continue
            roots.setdefault(resolved, None)
        store = _resolve(Path(settings.home).expanduser().absolute())
        return cls(roots=tuple(roots), store=store, cwd=cwd, max_file_bytes=int(settings.max_file_bytes))

    # -- shared checks -------------------------------------------------------------------------------

    def _absolute(self, raw: object, what: str) -> Path:
        """Validate the raw value and make it an absolute (not yet resolved) path."""
        if isinstance(raw, os.PathLike):
            raw = os.fspath(raw)
        if not isinstance(raw, str):
            raise AccessDenied(f"The {what} path must be a text string, not {type(raw).__name__}.")
        if not raw.strip():
            raise AccessDenied(f"The {what} path is empty; give the path of a table file.")
        if "\x00" in raw:
            raise AccessDenied(f"The {what} path {raw!r} contains a NUL character and cannot be used.")
        if len(raw) > MAX_PATH_CHARS:
            raise AccessDenied(f"The {what} path is over {MAX_PATH_CHARS} characters; use a shorter one.")
        try:
            path = Path(raw).expanduser()
        except RuntimeError as exc:  # "~someone" with no such user
            raise AccessDenied(
                f"The {what} path {raw!r} names an unknown user's home folder; give a full path instead."
            ) from exc
        return path if path.is_absolute() else self.cwd / path

    def _root_of(self, resolved: Path) -> Path | None:
        """The innermost allowed root containing ``resolved`` (innermost gives the strictest hidden check)."""
        inside = [root for root in self.roots if _is_within(resolved, root)]
        return max(inside, key=lambda r: len(r.parts)) if inside else None

    def _check_location(self, raw_abs: Path, resolved: Path) -> None:
        """Allowed root, store and hidden-name rules, on the resolved path (and the path as written)."""
        if _is_within(resolved, self.store):
            raise AccessDenied(
                f"{raw_abs} is inside the StatsBot home ({self.store}), which jobs may never read or write; "
                "copy the file to another folder."
            )
        root = self._root_of(resolved)
        if root is None:
            shown = raw_abs if raw_abs == resolved else f"{raw_abs} (which resolves to {resolved})"
            allowed = ", ".join(str(r) for r in self.roots) or "none"
            raise AccessDenied(f"{shown} is outside the folders this worker may use ({allowed}). {ALLOW_HINT}")
        hidden = _hidden_part(resolved.relative_to(root).parts)
        if hidden is None:
            # The path as written may name a hidden folder that a symlink then leaves; refuse that too.
            lexical = Path(os.path.normpath(raw_abs))
            lroot = self._root_of(lexical)
            if lroot is not None:
                hidden = _hidden_part(lexical.relative_to(lroot).parts)
        if hidden is not None:
            raise AccessDenied(
                f"{raw_abs} goes through the hidden name {hidden!r}; hidden files and folders are never "
                "used. Move or rename the file to a visible name."
            )

    def _check_extension(self, shown: Path, name: str) -> None:
        suffix = Path(name).suffix.lower()
        if suffix not in TABLE_EXTENSIONS:
            kind = f"the extension {suffix!r}" if suffix else "no extension"
            raise AccessDenied(
                f"{shown} has {kind}; only tables ({_EXT_LIST}) can be used. Save it in one of those formats."
            )

    # -- public API ----------------------------------------------------------------------------------

    def readable(self, raw: object) -> Path:
        """The resolved path of an existing table file a job may read; raise AccessDenied otherwise.

        Raises :class:`MissingFile` when the path would be allowed but does not exist. Readers should use
        :meth:`open_readable` instead: a path can be swapped after this check.
        """
        with self.open_readable(raw) as table:
            return table.path

    def open_readable(self, raw: object) -> OpenedTable:
        """Open an existing table file a job may read, once, and check *what was opened*.

        The name is checked first (for sentences that say which rule refused it), then the file is opened
        without following a final symlink and without blocking, and the opened object itself is checked:
        a regular file, inside an allowed folder (its real location, from the kernel), a table extension,
        within the size limit. Read it only through the returned :class:`OpenedTable`.
        """
        raw_abs = self._absolute(raw, "input")
        resolved = _resolve(raw_abs)
        self._check_location(raw_abs, resolved)
        try:
            st = os.lstat(resolved)
        except (FileNotFoundError, NotADirectoryError):
            self._check_extension(raw_abs, raw_abs.name)
            self._check_extension(raw_abs, resolved.name)
            raise MissingFile(raw_abs) from None
        except OSError as exc:
            raise AccessDenied(f"{raw_abs} cannot be examined: {exc.strerror or exc}.") from exc
        self._check_regular(raw_abs, st)
        self._check_extension(raw_abs, raw_abs.name)
        self._check_extension(raw_abs, resolved.name)
        self._check_size(raw_abs, st.st_size)
        fd = self._open_checked(raw_abs, resolved)
        try:
            now = os.fstat(fd)
            self._check_regular(raw_abs, now)
            real = self._opened_location(fd, raw_abs, resolved, now)
            self._check_location(raw_abs, real)
            self._check_extension(raw_abs, real.name)
            self._check_size(raw_abs, now.st_size)
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return OpenedTable(fd, real, now)

    def _open_checked(self, shown: Path, resolved: Path) -> int:
        """Open ``resolved`` for reading (no final symlink, no blocking), with a sentence on failure."""
        try:
            return open_nofollow(resolved, os.O_RDONLY)
        except PermissionError as exc:
            raise AccessDenied(
                f"{shown} cannot be read: permission denied; give the worker's user read access to it."
            ) from exc
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise AccessDenied(f"{shown} changed into a symlink while being checked; try again.") from exc
            raise AccessDenied(f"{shown} cannot be opened: {exc.strerror or exc}.") from exc

    def _opened_location(self, fd: int, shown: Path, resolved: Path, st: os.stat_result) -> Path:
        """Where the opened object lies: from the kernel, or (fallback) a fresh lookup of the same file.

        The fallback, for systems that cannot name an open descriptor, resolves the path again and
        requires it to be the very file that was opened; a swap and swap-back between the two lookups
        could still pass, which is why Linux and macOS ask the kernel instead.
        """
        real = opened_path(fd)
        if real is not None:
            return real
        again = _resolve(shown)
        try:
            matches = again == resolved and same_file(os.stat(again), st)
        except OSError:
            matches = False
        if not matches:
            raise AccessDenied(f"{shown} changed while being checked; try again.")
        return resolved

    def writable(self, raw: object) -> Path:
        """The resolved path a job may write a table to (its folder must exist); AccessDenied otherwise.

        A symlink at the target is followed only when its target passes every rule; the returned path is
        the real file, so an atomic replace updates it and never writes outside the allowed folders.
        """
        raw_abs = self._absolute(raw, "output")
        self._check_extension(raw_abs, raw_abs.name)
        resolved = _resolve(raw_abs)
        self._check_location(raw_abs, resolved)
        self._check_extension(raw_abs, resolved.name)
        try:
            parent = os.stat(resolved.parent)
        except OSError:
            parent = None
        if parent is None or not stat.S_ISDIR(parent.st_mode):
            raise JobError(
                f"The folder {raw_abs.parent} does not exist; create it first or choose another output path."
            )
        try:
            st = os.lstat(resolved)
        except FileNotFoundError:
            return resolved
        except OSError as exc:
            raise AccessDenied(f"{raw_abs} cannot be examined: {exc.strerror or exc}.") from exc
        if not stat.S_ISREG(st.st_mode):
            raise AccessDenied(
                f"{raw_abs} already exists and is {_kind(st.st_mode)}; only a regular file can be "
                "overwritten. Choose another output path."
            )
        return resolved

    def open_output(self, raw: object) -> OutputFolder:
        """Open the folder of an output path a job may write, once, and check the folder that was opened.

        The name is checked by :meth:`writable`; the folder is then opened (not through a final symlink)
        and its real location, from the kernel, must pass the same rules. Create and name the file only
        through the returned :class:`OutputFolder`, so a folder swapped afterwards changes nothing.
        """
        raw_abs = self._absolute(raw, "output")
        resolved = self.writable(raw)
        try:
            dir_fd = os.open(resolved.parent, os.O_RDONLY | DIRECTORY | NOFOLLOW | CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise AccessDenied(f"{raw_abs.parent} changed into a symlink while being checked; try again.") from exc
            raise JobError(
                f"The folder {raw_abs.parent} cannot be opened ({exc.strerror or exc}); "
                "create it first or choose another output path."
            ) from exc
        try:
            folder = self._opened_location(dir_fd, raw_abs.parent, resolved.parent, os.fstat(dir_fd))
            self._check_location(raw_abs, folder / resolved.name)
        except BaseException:
            os.close(dir_fd)
            raise
        return OutputFolder(dir_fd, folder / resolved.name, self.store)

    # -- file checks ---------------------------------------------------------------------------------

    def _check_regular(self, shown: Path, st: os.stat_result) -> None:
        if not stat.S_ISREG(st.st_mode):
            raise AccessDenied(f"{shown} is {_kind(st.st_mode)}, not a regular file; give the path of a table file.")

    def _check_size(self, shown: Path, size: int) -> None:
        if size == 0:
            raise AccessDenied(f"{shown} is empty; there is no table to read in it.")
        if size > self.max_file_bytes:
            raise AccessDenied(
                f"{shown} is {_mb(size)}, above this worker's limit of {_mb(self.max_file_bytes)}; "
                "raise the worker's maximum file size or use a smaller file."
            )
