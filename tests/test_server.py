"""The reference job server, driven by a raw WebSocket client playing the worker."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from statsbot_nb.server import JobServer, ServerEvent
from statsbot_nb.server.jobline import JobLine, JobLineError, parse_job_line


async def _auth(server: JobServer, token: str, **extra):
    ws = await connect(server.url, proxy=None)
    await ws.send(json.dumps({"type": "auth", "token": token, "machine_id": "raw", **extra}))
    return ws


async def test_tokens_are_uuids_and_expire(reference: JobServer):
    token = reference.issue_token(user_id=7, ttl=0.2)
    uuid.UUID(token)
    await asyncio.sleep(0.3)
    ws = await _auth(reference, token)
    assert json.loads(await ws.recv()) == {"type": "auth_failed", "error": "This token expired"}
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


async def _refusal(server: JobServer, token: str) -> str:
    ws = await _auth(server, token, protocol=2)
    answer = json.loads(await ws.recv())
    assert answer["type"] == "auth_failed", answer
    with pytest.raises(ConnectionClosed) as info:
        await ws.recv()
    assert info.value.rcvd.code == 1008
    return answer["error"]


async def test_a_token_connects_one_worker_once_and_the_session_token_reconnects(reference: JobServer):
    token = reference.issue_token()
    ws = await _auth(reference, token, protocol=2)
    response = json.loads(await ws.recv())
    assert response["success"] is True
    await ws.recv()  # connected
    # a second worker with the same token, while the first is connected, and again after it left
    assert await _refusal(reference, token) == "This token was already used; a token connects one worker, once"
    await ws.close()
    assert await _refusal(reference, token) == "This token was already used; a token connects one worker, once"
    assert await _refusal(reference, "not-a-token") == "Invalid or expired token"
    assert reference.rejected_auths == 3
    again = await _auth(reference, response["session_token"], protocol=2)  # how the worker reconnects
    assert json.loads(await again.recv())["success"] is True
    await again.close()


async def test_reusable_tokens_like_todays_server_and_token_help_in_refusals():
    async with JobServer(one_time_tokens=False, token_help="Press Enter for a new token") as server:
        token = server.issue_token()
        for _ in range(2):
            ws = await _auth(server, token)
            assert json.loads(await ws.recv())["success"] is True
            await ws.close()
        expired = server.issue_token(ttl=0.0)
        await asyncio.sleep(0.01)
        assert await _refusal(server, expired) == "This token expired. Press Enter for a new token"


async def test_watchers_hear_workers_join_leave_and_refused_and_each_result(reference: JobServer):
    events: list[ServerEvent] = []
    reference.watch(events.append)
    reference.watch(lambda event: 1 / 0)  # a failing watcher is logged, never breaks the server
    token = reference.issue_token(user_id=5)
    ws = await _auth(reference, token, protocol=2)
    await ws.recv()
    await ws.recv()
    handle = reference.submit("train", {"x": 1})
    job = json.loads(await ws.recv())
    await asyncio.sleep(0.2)
    await ws.send(json.dumps({"type": "result", "job_id": job["job_id"], "success": False, "error": "No such file."}))
    await asyncio.wait_for(handle, 5)
    assert json.loads(await ws.recv()) == {"type": "ack", "job_id": handle.job_id}
    stuck = reference.submit("list_models")
    assert json.loads(await ws.recv())["job_id"] == stuck.job_id
    await ws.close()
    for _ in range(250):
        if len(events) >= 3:
            break
        await asyncio.sleep(0.02)
    await _refusal(reference, token)
    kinds = [e.kind for e in events]
    assert kinds == ["joined", "result", "left", "refused"]
    joined, result, left, refused = events
    assert joined.machine_id == "raw" and joined.worker is not None and joined.worker.user_id == 5
    assert result.job is handle and result.result is not None and result.result.error == "No such file."
    assert handle.duration is not None and 0.2 <= handle.duration < 5
    assert left.detail == "the worker closed the connection" and left.requeued == (stuck.job_id,)
    assert refused.machine_id == "raw" and refused.detail.startswith("This token was already used")
    assert all(token not in repr(e) for e in events)


def test_job_lines_wrapped_flat_and_refused_with_a_sentence():
    assert parse_job_line('{"action": "list_models"}') == JobLine("list_models", {})
    assert parse_job_line('{"action": "train", "params": {"file_path": "a.csv"}}') == JobLine(
        "train", {"file_path": "a.csv"}
    )
    assert parse_job_line('{"action": "train", "params": null}') == JobLine("train", {})
    flat = parse_job_line('{"action": "train", "file_path": "a.csv", "target_column": "y", "test_size": 0.2}')
    assert flat == JobLine("train", {"file_path": "a.csv", "target_column": "y", "test_size": 0.2})
    refusals = {
        "{not json": "Not JSON (Expecting property name enclosed in double quotes at character 2): type one "
        'job per line as a JSON object, e.g. {"action": "list_models"}.',
        "[1, 2]": 'A job is a JSON object, not a list: e.g. {"action": "list_models"}.',
        '"list_models"': 'A job is a JSON object, not a string: e.g. {"action": "list_models"}.',
        "42": 'A job is a JSON object, not a number: e.g. {"action": "list_models"}.',
        "null": 'A job is a JSON object, not null: e.g. {"action": "list_models"}.',
        '{"params": {}}': 'A job needs an "action", e.g. {"action": "list_models"}.',
        '{"action": 3}': '"action" must be the name of an action as a string, e.g. {"action": "list_models"}.',
        '{"action": " "}': '"action" must be the name of an action as a string, e.g. {"action": "list_models"}.',
        '{"action": "train", "params": [1]}': '"params" must be a JSON object of parameters, e.g. '
        '{"file_path": "data.csv"}.',
        '{"action": "train", "params": {}, "file_path": "a.csv", "x": 1}': 'Unknown key(s) "file_path", "x" '
        'beside "params": put every parameter inside "params", or leave "params" out and write them all next '
        'to "action".',
    }
    for line, sentence in refusals.items():
        with pytest.raises(JobLineError) as info:
            parse_job_line(line)
        assert str(info.value) == sentence, line
