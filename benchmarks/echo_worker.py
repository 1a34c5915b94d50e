"""The floor any worker is measured against: a bare websockets client that authenticates like today's
worker and answers every job at once with an empty model list, parsing nothing but the job id.

    python benchmarks/echo_worker.py WS_URL TOKEN
"""

from __future__ import annotations

import asyncio
import json
import sys

from websockets.asyncio.client import connect


async def main(url: str, token: str) -> None:
    """Authenticate, then answer each ``job`` frame with ``{"models": []}`` until the server closes."""
    async with connect(url, ping_interval=None, max_size=None) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token, "machine_id": "echo"}))
        await ws.recv()
        async for frame in ws:
            message = json.loads(frame)
            if message.get("type") == "job":
                reply = {"type": "result", "job_id": message["job_id"], "success": True, "data": {"models": []}}
                await ws.send(json.dumps(reply))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
