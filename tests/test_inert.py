"""Text from the server reaches terminals and log files inert: no escapes, no forged lines, bounded."""

from __future__ import annotations

import logging

from statsbot_nb.cli import event_printer
from statsbot_nb.events import JobAccepted, JobFailed
from statsbot_nb.inert import InertFormatter, inert

EVIL = "train\x1b]52;c;ZXZpbA==\x07\x1b[2J\r\n12:00:00 ok     forged line\u202egnp.exe\x9b31m"


def test_inert_escapes_every_control_and_direction_character_visibly() -> None:
    shown = inert(EVIL, 1000)
    assert all(ord(ch) >= 0x20 and not 0x7F <= ord(ch) <= 0x9F for ch in shown)
    assert "\u202e" not in shown and "\\u202e" in shown
    assert "\\x1b]52;c;ZXZpbA==\\x07" in shown and "\\r\\n" in shown
    assert inert("plain text, ünïcödé") == "plain text, ünïcödé"


def test_inert_caps_length_without_escaping_megabytes() -> None:
    shown = inert("x" * 10_000_000, 300)
    assert len(shown) == 300 and shown.endswith("…")


def test_the_cli_prints_server_text_inert() -> None:
    lines: list[str] = []
    printer = event_printer(lines.append, verbose=True)
    printer(JobAccepted("job_1", EVIL, {"file_path": "/data/x\nFAKE.csv"}))
    printer(JobFailed("job_1", EVIL, 0.1, "Unknown action: " + EVIL))
    assert len(lines) == 2
    for line in lines:
        assert "\x1b" not in line and "\n" not in line and "\r" not in line and "\u202e" not in line
    assert "\\x1b" in lines[1]


def test_log_lines_cannot_be_forged() -> None:
    formatter = InertFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord("statsbot_nb.worker", logging.INFO, __file__, 1, "Job %s", (EVIL,), None)
    text = formatter.format(record)
    assert "\n" not in text and "\x1b" not in text and text.startswith("INFO Job train")
