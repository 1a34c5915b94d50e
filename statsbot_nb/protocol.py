"""The StatsBot worker protocol: every message parsed and encoded in one place (no I/O).

See ``PROTOCOL.md``. Both sides live here: the worker uses :func:`parse_server_message` and the
``encode_*`` helpers for what it sends; the reference server uses :func:`parse_worker_message` and the
server-side encoders. Everything encoded is *strict* JSON: NaN and ±Infinity become ``null`` and numpy /
pandas scalars become plain Python values (:func:`to_strict_json`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import BadJobError, ProtocolError
from .strictjson import to_strict_json

PROTOCOL_VERSION = 2
#: Today's server accepts frames up to 10 GiB; its ``save_file`` jobs carry whole tables.
MAX_FRAME_BYTES = 10 * 2**30
#: Job ids today's server makes look like ``job_<12 hex>``; we accept any short printable id.
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")


# ---------------------------------------------------------------- Strict JSON


def dumps(message: Mapping[str, Any]) -> str:
    """Encode one message as a strict JSON text frame."""
    return _dump_strict(to_strict_json(message))


def _dump_strict(message: dict[str, Any]) -> str:
    """A message of plain JSON types as frame text (ASCII escapes: a lone surrogate echoed from a server
    string would make the frame's UTF-8 encoding fail and take the connection down on every reconnect)."""
    return json.dumps(message, allow_nan=False, ensure_ascii=True, separators=(",", ":"))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def loads(frame: str | bytes, *, strict: bool = True) -> dict[str, Any]:
    """Decode one frame into a JSON object, or raise :class:`ProtocolError` saying what is wrong.

    ``strict=False`` reads the bare ``NaN``, ``Infinity`` and ``-Infinity`` that Python's ``json.dumps``
    writes: today's server encodes jobs that way (a ``save_file`` table with missing values arrives with
    ``NaN``). What the worker sends is always strict (:func:`dumps`).
    """
    if isinstance(frame, bytes):
        try:
            frame = frame.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("Frame is not valid UTF-8 text.") from exc
    try:
        obj = json.loads(frame, parse_constant=_reject_constant) if strict else json.loads(frame)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"Frame is not valid JSON ({exc}).") from exc
    if not isinstance(obj, dict):
        raise ProtocolError(f"Frame must be a JSON object, got {type(obj).__name__}.")
    msg_type = obj.get("type")
    if not isinstance(msg_type, str) or not msg_type:
        raise ProtocolError("Frame has no 'type' field.")
    return obj


# ---------------------------------------------------------------- Server -> worker


@dataclass(frozen=True)
class AuthResponse:
    """``auth_response``: success, the user id and (protocol 2) a session token to reconnect with."""

    success: bool
    user_id: int | None = None
    protocol: int = 1
    session_token: str | None = None
    message: str | None = None
    type: Literal["auth_response"] = "auth_response"


@dataclass(frozen=True)
class AuthFailed:
    """``auth_failed``: the token was refused."""

    error: str
    type: Literal["auth_failed"] = "auth_failed"


@dataclass(frozen=True)
class Connected:
    """``connected``: an informational greeting sent right after a successful auth."""

    message: str = ""
    type: Literal["connected"] = "connected"


@dataclass(frozen=True)
class Job:
    """``job``: run ``action`` with ``params`` and answer with exactly one result for ``job_id``."""

    job_id: str
    action: str
    params: dict[str, Any] = field(default_factory=dict)
    type: Literal["job"] = "job"


@dataclass(frozen=True)
class Cancel:
    """``cancel`` (protocol 2): stop ``job_id`` and answer with a cancelled failed result."""

    job_id: str
    type: Literal["cancel"] = "cancel"


@dataclass(frozen=True)
class Ack:
    """``ack`` (protocol 2): the server stored the result for ``job_id``."""

    job_id: str
    type: Literal["ack"] = "ack"


@dataclass(frozen=True)
class Unknown:
    """A well-formed frame of a type this worker does not know (ignored, for forward compatibility)."""

    msg_type: str
    raw: dict[str, Any]
    type: Literal["unknown"] = "unknown"


ServerMessage = AuthResponse | AuthFailed | Connected | Job | Cancel | Ack | Unknown


def _job_id_of(obj: Mapping[str, Any]) -> str | None:
    job_id = obj.get("job_id")
    if isinstance(job_id, str) and _JOB_ID_RE.fullmatch(job_id):
        return job_id
    return None


#: A job id that is not one we accept is still answered (never silence), if it is short, printable text.
_ANSWERABLE_ID_RE = re.compile(r"^[\x20-\x7e]{1,256}$")
_RAW_JOB_RE = re.compile(r'"type"\s*:\s*"job"')
_RAW_JOB_ID_RE = re.compile(r'"job_id"\s*:\s*"([\x20-\x21\x23-\x5b\x5d-\x7e]{1,256})"')


def _salvage_job_id(frame: str | bytes) -> str | None:
    """The job id of a job frame that could not be decoded, when it can be read off the raw text."""
    text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame
    head = text[:65536]
    found = _RAW_JOB_ID_RE.search(head)
    return found.group(1) if found and _RAW_JOB_RE.search(head) else None


def parse_server_message(frame: str | bytes) -> ServerMessage:
    """Parse a frame the server sent (bare ``NaN``/``Infinity`` accepted, as today's server writes them).

    Raises :class:`BadJobError` for a job frame that can be answered but not run (a broken frame whose
    job id can still be read, an unusual id, no action, params that are not an object), so every job gets
    a result; :class:`ProtocolError` for anything else malformed (logged and skipped).
    """
    try:
        obj = loads(frame, strict=False)
    except ProtocolError as exc:
        job_id = _salvage_job_id(frame)
        if job_id is not None:
            raise BadJobError(job_id, f"The job frame could not be read: {exc}") from exc
        raise
    msg_type = obj["type"]
    if msg_type == "auth_response":
        success = obj.get("success")
        if not isinstance(success, bool):
            raise ProtocolError("auth_response has no boolean 'success'.")
        user_id = obj.get("user_id")
        session_token = obj.get("session_token")
        protocol = obj.get("protocol", 1)
        return AuthResponse(
            success=success,
            user_id=user_id if isinstance(user_id, int) and not isinstance(user_id, bool) else None,
            protocol=protocol if isinstance(protocol, int) and not isinstance(protocol, bool) else 1,
            session_token=session_token if isinstance(session_token, str) and session_token else None,
            message=obj.get("message") if isinstance(obj.get("message"), str) else None,
        )
    if msg_type == "auth_failed":
        error = obj.get("error")
        return AuthFailed(error=error if isinstance(error, str) and error else "Invalid or expired token")
    if msg_type == "connected":
        message = obj.get("message")
        return Connected(message=message if isinstance(message, str) else "")
    if msg_type == "job":
        job_id = _job_id_of(obj)
        if job_id is None:
            raw_id = obj.get("job_id")
            if isinstance(raw_id, str) and _ANSWERABLE_ID_RE.fullmatch(raw_id):
                raise BadJobError(
                    raw_id,
                    "The job's 'job_id' is not one this worker accepts (letters, digits "
                    "and '_-.:', up to 128 characters), so it was not run.",
                )
            raise ProtocolError("Job frame has no valid 'job_id' (letters, digits, '_-.:', up to 128).")
        action = obj.get("action")
        if not isinstance(action, str) or not action:
            raise BadJobError(job_id, "The job has no 'action'.")
        params = obj.get("params")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise BadJobError(job_id, f"The job's 'params' must be an object, got {type(params).__name__}.")
        return Job(job_id=job_id, action=action, params=params)
    if msg_type in ("cancel", "ack"):
        job_id = _job_id_of(obj)
        if job_id is None:
            raise ProtocolError(f"{msg_type} frame has no valid 'job_id'.")
        return Cancel(job_id=job_id) if msg_type == "cancel" else Ack(job_id=job_id)
    return Unknown(msg_type=msg_type, raw=obj)


def encode_auth(
    token: str,
    machine_id: str,
    *,
    worker_version: str | None = None,
    capabilities: Mapping[str, Any] | None = None,
) -> str:
    """The worker's first frame. Extensions (version, protocol 2, capabilities) are optional extras."""
    msg: dict[str, Any] = {"type": "auth", "token": token, "machine_id": machine_id}
    if worker_version is not None:
        msg["worker_version"] = worker_version
        msg["protocol"] = PROTOCOL_VERSION
    if capabilities is not None:
        msg["capabilities"] = dict(capabilities)
    return dumps(msg)


def clamp_progress(progress: float) -> int:
    """Progress as an integer 0..100 (today's server expects a number in that range)."""
    if not isinstance(progress, (int, float)) or not math.isfinite(progress):
        return 0
    return int(max(0, min(100, round(progress))))


def encode_progress(job_id: str, progress: float, message: str, status: str = "running") -> str:
    """A progress frame; ``progress`` and ``message`` are always present (today's server requires both)."""
    status = status or "running"
    return dumps(
        {
            "type": "progress",
            "job_id": job_id,
            "status": status,
            "progress": clamp_progress(progress),
            "message": message or status,
        }
    )


def encode_result_ok(job_id: str, data: Mapping[str, Any]) -> str:
    """A successful result. ``data`` must be a non-empty object (today's server rejects an empty one)."""
    clean = to_strict_json(dict(data)) or {"ok": True}  # plain JSON now: not converted a second time
    return _dump_strict({"type": "result", "job_id": job_id, "success": True, "data": clean})


def encode_result_error(job_id: str, error: str, *, cancelled: bool = False) -> str:
    """A failed result carrying a sentence a person can act on."""
    msg: dict[str, Any] = {"type": "result", "job_id": job_id, "success": False}
    msg["error"] = error.strip() or "The job failed for an unknown reason."
    if cancelled:
        msg["cancelled"] = True
    return dumps(msg)


# ---------------------------------------- Worker -> server (the reference server, the strict stand-in)


@dataclass(frozen=True)
class Auth:
    """``auth``: the worker's first frame."""

    token: str
    machine_id: str
    worker_version: str | None = None
    protocol: int = 1
    capabilities: dict[str, Any] | None = None
    type: Literal["auth"] = "auth"


@dataclass(frozen=True)
class Progress:
    """``progress`` for a running job."""

    job_id: str
    progress: float
    message: str
    status: str = "running"
    type: Literal["progress"] = "progress"


@dataclass(frozen=True)
class Result:
    """``result``: success with ``data``, or failure with ``error`` (and ``cancelled`` in protocol 2)."""

    job_id: str
    success: bool
    data: dict[str, Any] | None = None
    error: str | None = None
    cancelled: bool = False
    type: Literal["result"] = "result"


WorkerMessage = Auth | Progress | Result | Unknown


def parse_worker_message(frame: str | bytes) -> WorkerMessage:
    """Parse a frame a worker sent, as strictly as today's server does."""
    obj = loads(frame)
    msg_type = obj["type"]
    if msg_type == "auth":
        token, machine_id = obj.get("token"), obj.get("machine_id")
        if not isinstance(token, str) or not token:
            raise ProtocolError("auth frame has no 'token'.")
        if not isinstance(machine_id, str) or not machine_id:
            raise ProtocolError("auth frame has no 'machine_id'.")
        protocol = obj.get("protocol", 1)
        caps = obj.get("capabilities")
        version = obj.get("worker_version")
        return Auth(
            token=token,
            machine_id=machine_id,
            worker_version=version if isinstance(version, str) else None,
            protocol=protocol if isinstance(protocol, int) and not isinstance(protocol, bool) else 1,
            capabilities=caps if isinstance(caps, dict) else None,
        )
    job_id = _job_id_of(obj)
    if msg_type == "progress":
        progress, message = obj.get("progress"), obj.get("message")
        if job_id is None:
            raise ProtocolError("progress frame has no valid 'job_id'.")
        if not isinstance(progress, (int, float)) or isinstance(progress, bool):
            raise ProtocolError("progress frame has no numeric 'progress'.")
        if not isinstance(message, str):
            raise ProtocolError("progress frame has no 'message'.")
        status = obj.get("status")
        return Progress(job_id, float(progress), message, status if isinstance(status, str) else "running")
    if msg_type == "result":
        if job_id is None:
            raise ProtocolError("result frame has no valid 'job_id'.")
        success = obj.get("success")
        if not isinstance(success, bool):
            raise ProtocolError("result frame has no boolean 'success'.")
        if success:
            data = obj.get("data")
            if not isinstance(data, dict) or not data:
                raise ProtocolError("successful result must carry a non-empty 'data' object.")
            return Result(job_id, True, data=data)
        error = obj.get("error")
        if not isinstance(error, str) or not error:
            raise ProtocolError("failed result must carry an 'error' sentence.")
        return Result(job_id, False, error=error, cancelled=obj.get("cancelled") is True)
    return Unknown(msg_type=msg_type, raw=obj)


def encode_auth_response(user_id: int, *, protocol: int | None = None, session_token: str | None = None) -> str:
    """Server side: a successful ``auth_response`` (extensions only when given)."""
    msg: dict[str, Any] = {"type": "auth_response", "success": True, "user_id": user_id}
    if protocol is not None:
        msg["protocol"] = protocol
    if session_token is not None:
        msg["session_token"] = session_token
    return dumps(msg)


def encode_auth_failed(error: str = "Invalid or expired token") -> str:
    """Server side: ``auth_failed``."""
    return dumps({"type": "auth_failed", "error": error})


def encode_connected(message: str) -> str:
    """Server side: the ``connected`` greeting."""
    return dumps({"type": "connected", "message": message})


def encode_job(job_id: str, action: str, params: Mapping[str, Any]) -> str:
    """Server side: a job."""
    return dumps({"type": "job", "job_id": job_id, "action": action, "params": dict(params)})


def encode_cancel(job_id: str) -> str:
    """Server side (protocol 2): cancel a job."""
    return dumps({"type": "cancel", "job_id": job_id})


def encode_ack(job_id: str) -> str:
    """Server side (protocol 2): the result for ``job_id`` is stored."""
    return dumps({"type": "ack", "job_id": job_id})
