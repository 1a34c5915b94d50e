"""The reference job server: the server side of the StatsBot worker protocol, for demos, notebooks and tests.

It issues expiring one-time tokens, authenticates workers, queues jobs submitted through a Python API and
dispatches them, streams progress to callbacks, matches results by ``job_id`` (duplicates dropped),
re-queues jobs whose worker dropped, and speaks our protocol-2 extensions (ack, cancel, session token)
with workers that announce them. Watchers (:meth:`JobServer.watch`) hear of workers joining, leaving and
being refused, and of every stored result. It never imports the worker: only :mod:`statsbot_nb.protocol`.

A token connects one worker once (unless ``one_time_tokens=False``, as today's StatsBot server, whose tokens
are reusable until they expire): a protocol-2 worker reconnects with the session token it was given, a
today-style worker needs a new token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from .. import protocol
from ..inert import inert
from .records import (
    EXPIRED_TOKEN,
    UNKNOWN_TOKEN,
    USED_TOKEN,
    JobHandle,
    JobResult,
    ProgressCallback,
    ServerEvent,
    Watcher,
    WorkerInfo,
)

log = logging.getLogger("statsbot_nb.server")


class JobServer:
    """A StatsBot-compatible job server on ``host:port`` (port 0 picks a free one).

    Use as ``async with JobServer() as server:``; ``server.url`` is the worker URL, ``server.issue_token()``
    makes a token, ``await server.run_job(action, params)`` submits a job and waits for its result.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token_ttl: float = 300.0,
        session_ttl: float = 24 * 3600.0,
        extensions: bool = True,
        auth_timeout: float = 30.0,
        ping_interval: float | None = 20.0,
        one_time_tokens: bool = True,
        token_help: str = "",
    ) -> None:
        """``token_help``: a sentence added to every token refusal, saying where a new token comes from."""
        self.host, self.port = host, port
        self.token_ttl, self.session_ttl = token_ttl, session_ttl
        self.one_time_tokens, self.token_help = one_time_tokens, token_help
        self.extensions = extensions
        self.auth_timeout = auth_timeout
        self.ping_interval = ping_interval
        self._tokens: dict[str, tuple[int, float]] = {}
        self._sessions: dict[str, tuple[int, float]] = {}
        self._used: set[str] = set()
        self._watchers: list[Watcher] = []
        self._stopping = False
        self._jobs: dict[str, JobHandle] = {}
        self._queue: list[str] = []
        self._workers: list[WorkerInfo] = []
        self._server: Server | None = None
        self._worker_joined = asyncio.Condition()
        self.results: dict[str, JobResult] = {}
        self.duplicate_results = 0
        self.rejected_auths = 0
        self.malformed_frames = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> JobServer:
        """Start listening; returns self."""
        self._server = await serve(
            self._handle, self.host, self.port, max_size=protocol.MAX_FRAME_BYTES, ping_interval=self.ping_interval
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("Reference server listening on %s", self.url)
        return self

    async def close(self) -> None:
        """Stop listening and close every worker connection."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> JobServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        """The WebSocket URL workers dial."""
        return f"ws://{self.host}:{self.port}/ws"

    # ------------------------------------------------------------------ tokens and workers

    def issue_token(self, user_id: int = 1, ttl: float | None = None) -> str:
        """A new one-time token (a UUID, as today's server makes), valid ``ttl`` seconds."""
        token = str(uuid.uuid4())
        self._tokens[token] = (user_id, time.monotonic() + (self.token_ttl if ttl is None else ttl))
        return token

    def revoke_tokens(self) -> None:
        """Forget every token and session (workers must get a fresh token to reconnect)."""
        self._tokens.clear()
        self._sessions.clear()

    def watch(self, watcher: Watcher) -> None:
        """Call ``watcher`` with a :class:`ServerEvent` for each worker joining, leaving or refused, and each result."""
        self._watchers.append(watcher)

    def _tell(self, event: ServerEvent) -> None:
        for watcher in list(self._watchers):
            try:
                watcher(event)
            except Exception:
                log.exception("server watcher failed")

    @property
    def workers(self) -> list[WorkerInfo]:
        """The currently authenticated workers."""
        return list(self._workers)

    async def wait_for_worker(self, timeout: float = 30.0, count: int = 1) -> WorkerInfo:
        """Wait until at least ``count`` workers are authenticated; return the newest."""
        async with self._worker_joined:
            await asyncio.wait_for(self._worker_joined.wait_for(lambda: len(self._workers) >= count), timeout)
            return self._workers[-1]

    async def drop_workers(self) -> None:
        """Cut every worker connection abruptly (for tests and demos of reconnecting)."""
        for info in list(self._workers):
            if info.connection.transport is not None:
                info.connection.transport.abort()

    # ------------------------------------------------------------------ jobs

    def submit(
        self,
        action: str,
        params: dict[str, Any] | None = None,
        *,
        user_id: int | None = None,
        on_progress: ProgressCallback | None = None,
        job_id: str | None = None,
    ) -> JobHandle:
        """Queue a job and dispatch it as soon as a worker (of ``user_id``, if given) is connected."""
        job_id = job_id or f"job_{secrets.token_hex(6)}"
        if job_id in self._jobs:
            raise ValueError(f"job id {job_id} already used")
        handle = JobHandle(job_id, action, dict(params or {}), user_id, on_progress)
        self._jobs[job_id] = handle
        self._queue.append(job_id)
        self._dispatch()
        return handle

    async def run_job(
        self,
        action: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float | None = 600.0,
        on_progress: ProgressCallback | None = None,
        user_id: int | None = None,
    ) -> JobResult:
        """Submit a job and wait for its result."""
        handle = self.submit(action, params, user_id=user_id, on_progress=on_progress)
        return await asyncio.wait_for(asyncio.shield(handle.future), timeout)

    def job(self, job_id: str) -> JobHandle:
        """The handle of a submitted job."""
        return self._jobs[job_id]

    async def cancel(self, job_id: str) -> bool:
        """Cancel a job: a queued one at once, a dispatched one by asking its (protocol-2) worker."""
        handle = self._jobs.get(job_id)
        if handle is None or handle.done:
            return False
        if job_id in self._queue:
            self._queue.remove(job_id)
            self._store(JobResult(job_id, False, error="Cancelled before it started.", cancelled=True))
            return True
        for info in self._workers:
            if job_id in info.assigned and info.protocol >= 2:
                with contextlib.suppress(ConnectionClosed):
                    await info.connection.send(protocol.encode_cancel(job_id))
                return True
        return False

    async def resend(self, job_id: str) -> None:
        """Send an already dispatched job again (tests of duplicate job ids)."""
        handle = self._jobs[job_id]
        for info in self._workers:
            if job_id in info.assigned:
                await info.connection.send(protocol.encode_job(job_id, handle.action, handle.params))

    def _dispatch(self) -> None:
        for job_id in list(self._queue):
            handle = self._jobs[job_id]
            target = next((w for w in self._workers if handle.user_id is None or w.user_id == handle.user_id), None)
            if target is None:
                continue
            self._queue.remove(job_id)
            target.assigned.add(job_id)
            handle.dispatch_count += 1
            if handle.started_at is None:
                handle.started_at = time.monotonic()
            frame = protocol.encode_job(job_id, handle.action, handle.params)
            asyncio.get_running_loop().create_task(self._send_job(target, job_id, frame))

    async def _send_job(self, info: WorkerInfo, job_id: str, frame: str) -> None:
        try:
            await info.connection.send(frame)
        except ConnectionClosed:
            pass  # the connection handler re-queues its assigned jobs

    def _store(self, result: JobResult) -> bool:
        handle = self._jobs.get(result.job_id)
        if handle is None or handle.done:
            self.duplicate_results += 1
            return False
        self.results[result.job_id] = result
        handle.finished_at = time.monotonic()
        handle.future.set_result(result)
        self._tell(ServerEvent("result", job=handle, result=result))
        return True

    # ------------------------------------------------------------------ connections

    async def _handle(self, ws: ServerConnection) -> None:
        info = await self._authenticate(ws)
        if info is None:
            return
        async with self._worker_joined:
            self._workers.append(info)
            self._worker_joined.notify_all()
        self._tell(ServerEvent("joined", info.machine_id, info))
        self._dispatch()
        try:
            async for frame in ws:
                await self._on_frame(info, frame)
        except ConnectionClosed:
            pass
        finally:
            self._workers.remove(info)
            requeue = [j for j in info.assigned if not self._jobs[j].done]
            if requeue:
                log.info("Worker %s dropped; re-queueing %s", inert(info.machine_id, 80), requeue)
                self._queue[:0] = requeue
            self._tell(ServerEvent("left", info.machine_id, info, self._why_closed(ws), tuple(requeue)))
            self._dispatch()

    def _why_closed(self, ws: ServerConnection) -> str:
        if self._stopping:
            return "the server is stopping"
        code = ws.close_code
        if code in (1000, 1001):
            return "the worker closed the connection"
        if code is None or code == 1006:
            return "the connection was lost"
        return f"closed with code {code}" + (f" ({inert(ws.close_reason, 123)})" if ws.close_reason else "")

    def _refusal(self, token: str, now: float) -> tuple[int | None, str]:
        """``(user_id, "")`` for a token or session token good now, else ``(None, why)``; spends a one-time token."""
        session = self._sessions.get(token)
        if session is not None and session[1] >= now:
            return session[0], ""
        entry = self._tokens.get(token)
        if entry is None:
            return None, USED_TOKEN if token in self._used else UNKNOWN_TOKEN
        if entry[1] < now:
            return None, EXPIRED_TOKEN
        if self.one_time_tokens:
            del self._tokens[token]
            self._used.add(token)
        return entry[0], ""

    async def _authenticate(self, ws: ServerConnection) -> WorkerInfo | None:
        try:
            frame = await asyncio.wait_for(ws.recv(), self.auth_timeout)
            msg = protocol.parse_worker_message(frame)
        except (asyncio.TimeoutError, ConnectionClosed, protocol.ProtocolError):
            await ws.close(1008)
            return None
        if not isinstance(msg, protocol.Auth):
            await ws.close(1008)
            return None
        now = time.monotonic()
        user_id, why = self._refusal(msg.token, now)
        if user_id is None:
            self.rejected_auths += 1
            self._tell(ServerEvent("refused", msg.machine_id, detail=why))
            error = f"{why}. {self.token_help}" if self.token_help else why
            with contextlib.suppress(ConnectionClosed):
                await ws.send(protocol.encode_auth_failed(error))
            await ws.close(1008, "Invalid or expired token")
            return None
        use_ext = self.extensions and msg.protocol >= 2
        session = None
        if use_ext:
            session = secrets.token_urlsafe(24)
            self._sessions[session] = (user_id, now + self.session_ttl)
        await ws.send(
            protocol.encode_auth_response(
                user_id, protocol=protocol.PROTOCOL_VERSION if use_ext else None, session_token=session
            )
        )
        await ws.send(protocol.encode_connected(f"Worker {msg.machine_id} connected."))
        return WorkerInfo(msg.machine_id, user_id, 2 if use_ext else 1, msg.capabilities, ws)

    async def _on_frame(self, info: WorkerInfo, frame: str | bytes) -> None:
        try:
            msg = protocol.parse_worker_message(frame)
        except protocol.ProtocolError as exc:
            self.malformed_frames += 1
            log.warning("Malformed frame from %s: %s", inert(info.machine_id, 80), inert(exc, 300))  # worker's words
            return
        if isinstance(msg, protocol.Progress):
            handle = self._jobs.get(msg.job_id)
            if handle is not None and not handle.done:
                handle.progress, handle.message = msg.progress, msg.message
                handle.progress_updates += 1
                if handle.on_progress is not None:
                    try:
                        handle.on_progress(handle, msg.progress, msg.message)
                    except Exception:
                        log.exception("progress callback failed")
        elif isinstance(msg, protocol.Result):
            info.assigned.discard(msg.job_id)
            self._store(JobResult(msg.job_id, msg.success, msg.data, msg.error, msg.cancelled))
            if info.protocol >= 2:
                with contextlib.suppress(ConnectionClosed):
                    await info.connection.send(protocol.encode_ack(msg.job_id))
