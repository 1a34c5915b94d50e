"""The trust contract (issue 11), item by item, against the real worker over a real socket.

Where each numbered item of the issue is proven:

1. rows leaking at the default level -> ``test_privacy.py`` (the reconstruction attack per level: strict 0 %)
2. memory a server can make the worker hold -> ``test_bounds.py`` (frame cap, bounded records and results)
3. ``file_info`` parsing inside the worker -> ``test_job_limits.py``
4. check-then-use races -> ``test_file_races.py`` (a real swapping process, hundreds of tries, 0 escapes)
5. terminal and log injection -> :func:`test_escapes_from_the_server_never_reach_the_terminal_or_the_log`
6. the token in cleartext -> ``test_worker.py::test_plain_ws_to_another_machine_is_refused_unless_the_user_says_so``
7. a finished job's result replaced -> ``test_worker.py::test_a_malformed_repeat_of_a_finished_job_keeps_its_result``
8. outputs replacing the user's files, CSV formulas -> ``test_files.py``
9. per-job limits, scratch folders -> ``test_job_limits.py``
10. the store following links, a FIFO metadata.json -> ``test_store.py``
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from legacy_server import LegacyServer
from test_cli import _start

EVIL_ACTION = "train\x1b]52;c;cHduZWQ=\x07\x1b[2J\r\n12:00:00 [connected] forged\u202e"


async def test_escapes_from_the_server_never_reach_the_terminal_or_the_log(legacy: LegacyServer, home: Path):
    proc = await _start(["--token", legacy.token, "--ws-url", legacy.url, "-v"], home)
    try:
        await legacy.wait_worker(timeout=30)
        frame = {"type": "job", "job_id": "job_evil", "action": EVIL_ACTION, "params": {"file_path": "a\nb\x1b[31m"}}
        await legacy.send_raw(json.dumps(frame))
        answer = await legacy.wait_result("job_evil", timeout=15)
        assert answer["success"] is False  # answered (an unknown action), never a crash
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 20)
    log_text = (home / "logs" / "worker.log").read_text(encoding="utf-8")
    for name, text in (("stdout", stdout.decode()), ("stderr", stderr.decode()), ("worker.log", log_text)):
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text, name
        assert "\r" not in text, name
        assert not any(line.startswith("12:00:00 [connected] forged") for line in text.splitlines()), name
    assert "\\x1b]52" in stdout.decode()  # shown, harmlessly
