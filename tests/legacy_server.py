"""A small, strict stand-in for today's StatsBot server, written from PROTOCOL.md (not from our server).

It does only what today's server does: ``auth`` -> ``auth_response`` + ``connected`` (or ``auth_failed`` and
close 1008), jobs pushed by the test, no acks, no cancel, no protocol 2. Every frame the worker sends is
checked as strictly as today's server does and every deviation is recorded in ``violations``; tests
assert that list stays empty.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed


def _no_constants(name: str) -> Any:
    raise ValueError(f"non-strict JSON constant {name}")


class LegacyServer:
    """Today's server, strictly. ``valid_tokens`` are accepted; everything received is recorded."""

    def __init__(self, valid_tokens: set[str] | None = None, port: int = 0) -> None:
        self.valid_tokens = set(valid_tokens or {"0b7c3a64-2f4c-4b8e-9f1e-1a2b3c4d5e6f"})
        self.port = port
        self.violations: list[str] = []
        self.frames: list[dict[str, Any]] = []
        self.auths: list[dict[str, Any]] = []
        self.results: dict[str, list[dict[str, Any]]] = {}
        self.progress: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        self.connections = 0
        self.ws: ServerConnection | None = None
        self._server: Server | None = None
        self._changed = asyncio.Condition()

    @property
    def token(self) -> str:
        return next(iter(self.valid_tokens))

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self) -> LegacyServer:
        # today's server accepts frames up to 10 GiB and pings every 60 s
        self._server = await serve(
            self._handler, "127.0.0.1", self.port, max_size=10 * 2**30, ping_interval=60, ping_timeout=600
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.ws = None

    async def __aenter__(self) -> LegacyServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def drop(self) -> None:
        """Cut the worker's connection abruptly (no close handshake)."""
        if self.ws is not None and self.ws.transport is not None:
            self.ws.transport.abort()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Any, timeout: float = 30.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    async def wait_worker(self, timeout: float = 30.0) -> None:
        await self.wait_for(lambda: self.ws is not None, timeout)

    async def wait_result(self, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
        await self.wait_for(lambda: job_id in self.results, timeout)
        return self.results[job_id][0]

    async def send_job(self, action: str, params: dict[str, Any] | None = None, job_id: str | None = None) -> str:
        job_id = job_id or f"job_{secrets.token_hex(6)}"
        await self.send_raw(json.dumps({"type": "job", "job_id": job_id, "action": action, "params": params or {}}))
        return job_id

    async def send_raw(self, frame: str | bytes) -> None:
        ws = None
        while ws is None:  # the worker may drop again between the wake-up and this line (fault tests cut often)
            await self.wait_worker()
            ws = self.ws
        await ws.send(frame)

    async def _handler(self, ws: ServerConnection) -> None:
        try:
            first = await asyncio.wait_for(ws.recv(), 30)
            msg = json.loads(first, parse_constant=_no_constants)
            if not isinstance(msg, dict) or msg.get("type") != "auth" or not msg.get("machine_id"):
                raise ValueError("first frame is not an auth frame")
        except (ValueError, TypeError, asyncio.TimeoutError):
            self.violations.append("malformed first frame")
            await ws.close(1008)
            return
        except ConnectionClosed:
            return
        self.auths.append(msg)
        if msg.get("token") not in self.valid_tokens:
            await ws.send(json.dumps({"type": "auth_failed", "error": "Invalid or expired token"}))
            await ws.close(1008)
            return
        await ws.send(
            json.dumps(
                {"type": "auth_response", "success": True, "user_id": 4242, "message": "Authentication successful"}
            )
        )
        await ws.send(json.dumps({"type": "connected", "message": "Worker connected"}))
        self.connections += 1
        self.ws = ws
        await self._notify()
        try:
            async for frame in ws:
                self._check(frame)
                await self._notify()
        except ConnectionClosed:
            pass
        finally:
            if self.ws is ws:
                self.ws = None
            await self._notify()

    def _check(self, frame: str | bytes) -> None:
        try:
            msg = json.loads(frame, parse_constant=_no_constants)
        except ValueError as exc:
            self.violations.append(f"not strict JSON: {exc}: {str(frame)[:200]}")
            return
        if not isinstance(msg, dict):
            self.violations.append(f"not an object: {str(frame)[:200]}")
            return
        self.frames.append(msg)
        kind, job_id = msg.get("type"), msg.get("job_id")
        if kind == "progress":
            if not isinstance(job_id, str) or "progress" not in msg or "message" not in msg:
                self.violations.append(f"progress without job_id/progress/message: {msg}")
                return
            if not isinstance(msg["progress"], (int, float)) or not 0 <= msg["progress"] <= 100:
                self.violations.append(f"progress out of range: {msg}")
            self.progress.setdefault(job_id, []).append((time.monotonic(), msg))
        elif kind == "result":
            if not isinstance(job_id, str) or not isinstance(msg.get("success"), bool):
                self.violations.append(f"result without job_id/success: {msg}")
                return
            if msg["success"] and (not isinstance(msg.get("data"), dict) or not msg["data"]):
                self.violations.append(f"successful result without data: {msg}")
                return
            if not msg["success"] and not isinstance(msg.get("error"), str):
                self.violations.append(f"failed result without error: {msg}")
                return
            self.results.setdefault(job_id, []).append(msg)
        else:
            self.violations.append(f"unexpected frame type {kind!r}")
