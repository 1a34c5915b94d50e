"""Memory the server can make the worker hold is bounded: frame size, job records, remembered results."""

from __future__ import annotations

import json

from legacy_server import LegacyServer

from statsbot_nb.core import bounded_params
from statsbot_nb.events import StateChanged
from statsbot_nb.outbox import Outbox


async def test_a_frame_over_the_limit_is_refused_unread_and_the_worker_goes_on(legacy: LegacyServer, make_worker):
    worker = make_worker(legacy.url, legacy.token, max_frame_bytes=2**16)
    states: list[StateChanged] = []
    worker.events.subscribe(lambda e: states.append(e) if isinstance(e, StateChanged) else None)
    worker.start()
    await worker.wait_connected(timeout=10)
    big = json.dumps({"type": "job", "job_id": "job_big", "action": "save_file", "params": {"x": "y" * 200_000}})
    await legacy.send_raw(big)
    await legacy.wait_for(lambda: legacy.connections >= 2, timeout=15)  # refused, then back
    assert any("larger than this worker reads (64 KB, --max-frame-mb)" in s.message for s in states)
    ok = await legacy.wait_result(await legacy.send_job("list_models"))
    assert ok["success"] is True and "job_big" not in worker.jobs


async def test_job_records_keep_bounded_parameters(legacy: LegacyServer, make_worker):
    worker = make_worker(legacy.url, legacy.token)
    worker.start()
    table = [{"a": i, "b": "text " * 20} for i in range(20_000)]  # a few MB, as a save_file table would be
    job_id = await legacy.send_job("sleep", {"seconds": 0.2, "marker": "", "table": table})
    result = await legacy.wait_result(job_id)
    assert result["success"] is True  # the job itself got the full parameters
    kept = worker.jobs[job_id].params
    assert kept["seconds"] == 0.2 and kept["table"].startswith("<omitted: over")
    assert len(json.dumps(kept)) < 5000


def test_bounded_params_keeps_small_values_and_summarises_large_ones() -> None:
    params = {"file_path": "/data/x.csv", "feature_columns": ["a", "b"], "blob": "z" * 10_000, "deep": [[1] * 5000]}
    kept = bounded_params(params)
    assert kept["file_path"] == "/data/x.csv" and kept["feature_columns"] == ["a", "b"]
    assert kept["blob"].startswith("<omitted") and kept["deep"].startswith("<omitted")


def test_remembered_results_are_bounded_by_size_too() -> None:
    outbox = Outbox(remember=1000, remember_bytes=10_000)
    for i in range(50):
        outbox.add(f"j{i}", "x" * 1000)
        outbox.confirm(f"j{i}")
    assert 9 <= len(outbox._delivered) <= 10 and outbox._delivered_size <= 10_000
    assert outbox.known("j49") is not None and outbox.known("j0") is None
