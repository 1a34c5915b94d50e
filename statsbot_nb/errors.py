"""Exceptions raised by statsbot_nb.

Every error the package raises on purpose derives from :class:`StatsbotError`; its message is a sentence a
person can act on, because it may be shown in a notebook, printed by the CLI or sent to the server as a
failed job's ``error``::

    StatsbotError
     ├── ProtocolError          a frame that does not follow PROTOCOL.md
     │    └── BadJobError       a job frame with an id but unusable fields (answered with a failed result)
     ├── TokenRejectedError     the server refused the token: final, get a fresh one with /connect
     ├── ConfigError            a bad setting (URL, config file, option)
     ├── ServiceError           the login service cannot be installed, started, stopped or queried
     └── JobError               a job that cannot be done as asked (bad params, refused path, bad data)
          ├── AccessDenied      the file-access policy refused a path
          └── JobCancelled      the job was cancelled (by the server or the user)
"""

from __future__ import annotations


class StatsbotError(Exception):
    """Root of every error statsbot_nb raises on purpose; ``str(exc)`` is a user-facing sentence."""


class ProtocolError(StatsbotError):
    """A frame that is not valid JSON or does not have the fields PROTOCOL.md requires."""


class BadJobError(ProtocolError):
    """A job frame that carries a usable ``job_id`` but something else is wrong with it.

    The worker answers such a frame with a failed result for ``job_id`` instead of dropping it, so the
    server (and the person behind it) learns why nothing happened.
    """

    def __init__(self, job_id: str, message: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class TokenRejectedError(StatsbotError):
    """The server rejected the token. Retrying the same token cannot help."""


class ConfigError(StatsbotError):
    """A setting is invalid: a malformed URL, an unreadable config file, a bad option value."""


class ServiceError(StatsbotError):
    """The login service (systemd, launchd, Task Scheduler) refused or failed an operation; says what to do."""


class JobError(StatsbotError):
    """A job that cannot be carried out as asked; becomes a failed result with this message."""


class AccessDenied(JobError):
    """The file-access policy refused to read or write a path."""


class JobCancelled(JobError):
    """The job was cancelled before it finished."""


def exception_line(exc: BaseException, limit: int | None = None) -> str:
    """The first line of ``exc``'s message, trimmed (at most ``limit`` characters); its type's name when empty.

    For the details in parentheses of a sentence: a library's multi-line message never reaches the user whole.
    """
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if limit is None else line[:limit]
