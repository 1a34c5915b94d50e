"""A reference job server in a process of its own, driven over stdin/stdout (one JSON object a line).

The loop benchmark's process plays the notebook kernel; the server is another machine in real life, so
its work (parsing every progress frame and result) must not run on the kernel's loop, nor hold the
kernel process's GIL. Started by :class:`cases_loop.ServerProcess`.

    out: {"url": ..., "token": ...}                   once listening
    in:  {"id": 1, "action": "train", "params": {...}, "count": 1}
    out: {"id": 1, "ok": true, "seconds": 1.23}       when all ``count`` copies have their results
         {"id": 1, "ok": false, "error": "..."}       when one failed
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from statsbot_nb.server import JobServer


async def serve_requests(server: JobServer) -> None:
    """Answer each request line with a result line, concurrently, until stdin closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    pending: set[asyncio.Task[None]] = set()

    async def one(request: dict[str, Any]) -> None:
        started = time.perf_counter()
        handles = [
            server.submit(request["action"], request.get("params") or {}) for _ in range(request.get("count", 1))
        ]
        results = await asyncio.gather(*(asyncio.shield(h.future) for h in handles))
        failed = [r.error for r in results if not r.success]
        answer = {"id": request["id"], "ok": not failed, "seconds": time.perf_counter() - started}
        if failed:
            answer["error"] = failed[0]
        print(json.dumps(answer), flush=True)

    while line := await reader.readline():
        task = loop.create_task(one(json.loads(line)))
        pending.add(task)
        task.add_done_callback(pending.discard)


async def main() -> None:
    """Listen on loopback, say where, and serve requests until stdin closes."""
    async with JobServer(ping_interval=None) as server:
        print(json.dumps({"url": server.url, "token": server.issue_token(user_id=1, ttl=3600)}), flush=True)
        await serve_requests(server)


if __name__ == "__main__":
    asyncio.run(main())
