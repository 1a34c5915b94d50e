"""The pure protocol layer: parsing, encoding, strict JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from statsbot_nb import protocol
from statsbot_nb.errors import BadJobError, ProtocolError


def strict_loads(text: str):
    def refuse(name: str):
        raise ValueError(name)

    return json.loads(text, parse_constant=refuse)


def test_strict_json_converts_numpy_pandas_and_non_finite():
    data = {
        "f": np.float32(1.5),
        "i": np.int64(7),
        "b": np.bool_(True),
        "nan": float("nan"),
        "inf": np.float64("inf"),
        "arr": np.array([1.0, math.nan, 3.0]),
        "ts": pd.Timestamp("2026-01-02"),
        "series": pd.Series([1, 2]),
        "tuple": (1, 2),
        3: "int key",
    }
    frame = protocol.encode_result_ok("job_1", data)
    decoded = strict_loads(frame)["data"]
    assert decoded == {
        "f": 1.5,
        "i": 7,
        "b": True,
        "nan": None,
        "inf": None,
        "arr": [1.0, None, 3.0],
        "ts": "2026-01-02T00:00:00",
        "series": [1, 2],
        "tuple": [1, 2],
        "3": "int key",
    }


def test_empty_success_data_is_never_sent():
    decoded = strict_loads(protocol.encode_result_ok("job_1", {}))
    assert decoded["data"], "today's server rejects an empty data object"


def test_progress_always_has_progress_and_message():
    decoded = strict_loads(protocol.encode_progress("job_1", float("nan"), "", status=""))
    assert decoded == {"type": "progress", "job_id": "job_1", "status": "running", "progress": 0, "message": "running"}
    assert strict_loads(protocol.encode_progress("job_1", 140.2, "x"))["progress"] == 100


def test_auth_frame_is_today_compatible_with_optional_extensions():
    plain = strict_loads(protocol.encode_auth("tok", "host"))
    assert plain == {"type": "auth", "token": "tok", "machine_id": "host"}
    extended = strict_loads(protocol.encode_auth("tok", "host", worker_version="1", capabilities={"a": 1}))
    assert extended["protocol"] == 2 and extended["capabilities"] == {"a": 1}


@pytest.mark.parametrize(
    "frame",
    [
        "",
        "nope",
        "[]",
        "1",
        '{"a": 1}',
        '{"type": ""}',
        b"\xff",
        '{"type": "job", "job_id": 5}',
        '{"type":"auth_response"}',
        '{"type":"cancel"}',
        '{"type": "job", "job_id": "a\\nb", "x": [}',
    ],
)
def test_malformed_server_frames_raise_protocol_error(frame):
    with pytest.raises(ProtocolError):
        protocol.parse_server_message(frame)


def test_server_frames_with_python_json_constants_are_read():
    # Today's server encodes jobs with Python's json.dumps, which writes bare NaN and Infinity.
    job = protocol.parse_server_message(
        '{"type": "job", "job_id": "job_1", "action": "save_file", '
        '"params": {"dataframe": [{"a": NaN, "b": Infinity, "c": -Infinity}]}}'
    )
    row = job.params["dataframe"][0]
    assert math.isnan(row["a"]) and row["b"] == math.inf and row["c"] == -math.inf
    # what the worker sends stays strict
    assert protocol.dumps({"type": "x", "v": math.nan}) == '{"type":"x","v":null}'


@pytest.mark.parametrize(
    ("frame", "job_id"),
    [
        ('{"type": "job", "job_id": "job_2", "action": "train", "params": {"x": }', "job_2"),  # broken JSON
        ('{"type": "job", "job_id": "job 2/../x", "action": "train"}', "job 2/../x"),  # an id we do not run
    ],
)
def test_job_frames_that_cannot_run_are_still_answerable(frame, job_id):
    with pytest.raises(BadJobError) as info:
        protocol.parse_server_message(frame)
    assert info.value.job_id == job_id and str(info.value)


def test_bad_job_with_id_raises_bad_job_error():
    with pytest.raises(BadJobError) as info:
        protocol.parse_server_message('{"type":"job","job_id":"job_abc","action":"train","params":"x"}')
    assert info.value.job_id == "job_abc"
    with pytest.raises(BadJobError):
        protocol.parse_server_message('{"type":"job","job_id":"job_abc","params":{}}')


def test_server_messages_parse():
    assert protocol.parse_server_message(
        '{"type":"job","job_id":"job_0123456789ab","action":"train","params":null}'
    ) == protocol.Job("job_0123456789ab", "train", {})
    resp = protocol.parse_server_message(
        '{"type":"auth_response","success":true,"user_id":5,"protocol":2,"session_token":"s"}'
    )
    assert resp == protocol.AuthResponse(True, 5, 2, "s")
    assert protocol.parse_server_message('{"type":"auth_failed"}').error == "Invalid or expired token"
    assert protocol.parse_server_message('{"type":"ack","job_id":"j"}') == protocol.Ack("j")
    assert isinstance(protocol.parse_server_message('{"type":"future_thing"}'), protocol.Unknown)


def test_worker_messages_parse_strictly():
    ok = protocol.parse_worker_message(protocol.encode_result_ok("j", {"a": 1}))
    assert ok == protocol.Result("j", True, data={"a": 1})
    failed = protocol.parse_worker_message(protocol.encode_result_error("j", "no", cancelled=True))
    assert failed.cancelled and failed.error == "no"
    for bad in (
        '{"type":"result","job_id":"j","success":true,"data":{}}',
        '{"type":"result","job_id":"j","success":false}',
        '{"type":"progress","job_id":"j","progress":5}',
        '{"type":"progress","job_id":"j","message":"m"}',
        '{"type":"auth","token":"t"}',
    ):
        with pytest.raises(ProtocolError):
            protocol.parse_worker_message(bad)
