"""The reference job server, driven by a raw WebSocket client playing the worker."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from statsbot_nb.server import JobServer


async def _auth(server: JobServer, token: str, **extra):
    ws = await connect(server.url, proxy=None)
    await ws.send(json.dumps({"type": "auth", "token": token, "machine_id": "raw", **extra}))
    return ws


async def test_tokens_are_uuids_and_expire(reference: JobServer):
    token = reference.issue_token(user_id=7, ttl=0.2)
    uuid.UUID(token)
    await asyncio.sleep(0.3)
    ws = await _auth(reference, token)
    assert json.loads(await ws.recv()) == {"type": "auth_failed", "error": "Invalid or expired token"}
    with pytest.raises(ConnectionClosed) as info:
        await ws.recv()
    assert info.value.rcvd.code == 1008
    assert reference.rejected_auths == 1


async def test_today_style_worker_gets_no_extensions(reference: JobServer):
    ws = await _auth(reference, reference.issue_token(user_id=7))
    response = json.loads(await ws.recv())
    assert response == {"type": "auth_response", "success": True, "user_id": 7}
    assert json.loads(await ws.recv())["type"] == "connected"
    handle = reference.submit("list_models")
    job = json.loads(await ws.recv())
    assert job == {"type": "job", "job_id": handle.job_id, "action": "list_models", "params": {}}
    await ws.send("{not json")
    await ws.send(json.dumps({"type": "result", "job_id": handle.job_id, "success": True, "data": {}}))
    await ws.send(json.dumps({"type": "result", "job_id": handle.job_id, "success": True, "data": {"models": []}}))
    await ws.send(
        json.dumps({"type": "result", "job_id": handle.job_id, "success": True, "data": {"models": ["again"]}})
    )
    result = await asyncio.wait_for(handle, 5)
    assert result.success and result.data == {"models": []}
    await asyncio.sleep(0.1)
    assert reference.malformed_frames == 2 and reference.duplicate_results == 1
    await ws.close()


async def test_protocol2_worker_gets_session_ack_and_requeue(reference: JobServer):
    ws = await _auth(reference, reference.issue_token(), protocol=2)
    response = json.loads(await ws.recv())
    assert response["protocol"] == 2 and response["session_token"]
    await ws.recv()  # connected
    handle = reference.submit("train", {"x": 1})
    assert json.loads(await ws.recv())["job_id"] == handle.job_id
    await ws.close()  # dropped before answering: the job goes back to the queue
    ws2 = await _auth(reference, response["session_token"], protocol=2)
    assert json.loads(await ws2.recv())["success"] is True
    await ws2.recv()
    again = json.loads(await ws2.recv())
    assert again["job_id"] == handle.job_id and handle.dispatch_count == 2
    await ws2.send(json.dumps({"type": "progress", "job_id": handle.job_id, "progress": 50, "message": "half"}))
    await ws2.send(json.dumps({"type": "result", "job_id": handle.job_id, "success": False, "error": "nope"}))
    assert json.loads(await ws2.recv()) == {"type": "ack", "job_id": handle.job_id}
    result = await asyncio.wait_for(handle, 5)
    assert not result.success and result.error == "nope" and handle.progress == 50
    await ws2.close()


async def test_jobs_wait_for_a_worker_of_their_user(reference: JobServer):
    handle = reference.submit("list_models", user_id=2)
    ws = await _auth(reference, reference.issue_token(user_id=1))
    await ws.recv()
    await ws.recv()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(ws.recv(), 0.3)
    assert await reference.cancel(handle.job_id)
    assert (await handle).cancelled
    await ws.close()
