"""The control panel and the magics without a browser: real widgets (no frontend), a real server."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import ClassVar

import pytest
from comm import base_comm

import statsbot_nb
from statsbot_nb import session
from statsbot_nb.server import JobServer
from statsbot_nb.ui import panel as panel_module
from statsbot_nb.ui.panel import ControlPanel


class RecordingComm(base_comm.BaseComm):
    """A comm that records every message a widget would send to the frontend."""

    sent: ClassVar[list[dict]] = []

    def publish_msg(self, msg_type: str, data=None, metadata=None, buffers=None, **keys) -> None:
        RecordingComm.sent.append({"msg_type": msg_type, "data": data})


@pytest.fixture(autouse=True)
def recording_comm(monkeypatch: pytest.MonkeyPatch):
    import comm

    RecordingComm.sent = []
    monkeypatch.setattr(comm, "create_comm", lambda *a, **k: RecordingComm(*a, **k))
    yield RecordingComm.sent


@pytest.fixture(autouse=True)
async def fresh_session(home: Path):
    """Each test gets its own session state (current worker, panel, captured loop)."""
    session.capture_main_loop()
    yield
    worker = session.current_worker()
    if worker is not None and worker.state not in ("stopped", "rejected"):
        await asyncio.wait_for(worker.stop(), 10)
    panel_module.close_panel()
    session._current = None
    session._main_loop = None


async def _until(predicate, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_connect_button_clears_token_and_connects(reference: JobServer, recording_comm):
    p = statsbot_nb.panel()
    token = reference.issue_token()
    p.token.set_state({"value": token})  # as when the frontend sends what the user typed
    p.url.value = reference.url
    before = len(recording_comm)
    p.connect_button.click()
    assert p.token.value == "", "the token must be cleared as soon as it is read"
    assert p.token.get_state()["value"] == ""
    after_click = recording_comm[before:]
    assert {"method": "update", "state": {"value": ""}, "buffer_paths": []} in [m["data"] for m in after_click]
    worker = statsbot_nb.current_worker()
    assert worker is not None and p.worker is worker
    await worker.wait_connected(timeout=10)
    await _until(lambda: "connected" in p.status.value)
    assert "test-machine" not in p.status.value  # machine id is the host name here
    assert "Connected to" in p.status.value
    assert not any(token in repr(m) for m in recording_comm[before:]), "no message after Connect has the token"


async def test_widget_callback_from_another_thread_runs_on_main_loop(reference: JobServer):
    p = statsbot_nb.panel()
    p.token.value = reference.issue_token()
    p.url.value = reference.url
    main = asyncio.get_running_loop()

    def subshell() -> None:  # like JupyterLab's comm subshell: another thread with its own loop
        loop = asyncio.new_event_loop()
        loop.run_until_complete(asyncio.sleep(0))
        p.connect_button.click()
        loop.close()

    thread = threading.Thread(target=subshell)
    thread.start()
    thread.join()
    await _until(lambda: statsbot_nb.current_worker() is not None)
    worker = statsbot_nb.current_worker()
    await worker.wait_connected(timeout=10)
    assert worker._loop is main


async def test_progress_rows_cancel_log_and_text(reference: JobServer, settings, make_worker):
    worker = make_worker(reference.url, reference.issue_token(), max_jobs=2)
    p = ControlPanel(worker, refresh_interval=0.05, max_log_rows=3)
    worker.start()
    await worker.wait_connected(timeout=10)
    for _ in range(5):
        await reference.run_job("list_models", {}, timeout=20)
    await _until(lambda: "older job(s)" in p.log.value)
    assert p.log.value.count("class='statsbot-logrow'") == 3  # the 3 newest
    assert p.log.value.count("statsbot-logolder") == 1  # and one summary line
    handle = reference.submit("sleep", {"seconds": 30})
    await _until(lambda: handle.job_id in p._rows and p._rows[handle.job_id].bar.value > 0)
    row = p._rows[handle.job_id]
    assert "sleeping" in row.detail.value and "s left" in row.detail.value
    row.cancel.click()
    result = await asyncio.wait_for(handle, 10)
    assert result.cancelled
    await _until(lambda: handle.job_id not in p._rows and "cancelled" in p.log.value)
    text = repr(p)
    assert text.startswith("StatsBot worker - connected")
    assert "sleep" in text and "cancelled" in text
    bundle = p._repr_mimebundle_()
    assert bundle["text/plain"] == text and "application/vnd.jupyter.widget-view+json" in bundle
    p.close()


async def test_folders_and_sharing_switch_update_the_worker(reference: JobServer, tmp_path: Path, make_worker):
    token = reference.issue_token()
    worker = make_worker(reference.url, token, actions=None)
    p = ControlPanel(worker)
    worker.start()
    await worker.wait_connected(timeout=10)
    extra = tmp_path / "elsewhere"
    extra.mkdir()
    (extra / "t.csv").write_text("a,b\n1,2\n")
    refused = await reference.run_job("file_info", {"file_path": str(extra / "t.csv")}, timeout=20)
    assert not refused.success and "outside the folders" in refused.error
    assert "Jobs may now use" in p.allow_folder(str(extra))
    assert worker.settings.allowed_dirs == (extra.resolve(),)
    allowed = await reference.run_job("file_info", {"file_path": str(extra / "t.csv")}, timeout=20)
    assert allowed.success and allowed.data["exists"] is True
    assert "not an existing folder" in p.allow_folder(str(tmp_path / "missing"))
    p.disallow_folder(str(extra.resolve()))
    assert worker.settings.allowed_dirs == ()
    denied = await reference.run_job("load_data", {"file_path": str(extra / "t.csv")}, timeout=20)
    assert not denied.success
    p.privacy.value = "share"
    assert worker.settings.share_data is True and worker.settings.privacy == "share"
    p.privacy.value = "strict"
    assert worker.settings.privacy == "strict" and not worker.settings.share_data
    p.refresh_sent()
    assert "file_info" in p.sent.value and "auth (token withheld)" in p.sent.value
    assert token not in p.sent.value
    p.close()


async def test_magics_in_an_ipython_shell(reference: JobServer, capsys, home: Path):
    from IPython.testing.globalipapp import start_ipython

    ip = start_ipython()
    ip.run_line_magic("load_ext", "statsbot_nb")
    assert "statsbot" in ip.magics_manager.magics["line"]
    ip.run_line_magic("statsbot", f"connect --token {reference.issue_token()} --url {reference.url}")
    worker = statsbot_nb.current_worker()
    await worker.wait_connected(timeout=10)
    await reference.run_job("list_models", {}, timeout=20)
    capsys.readouterr()
    ip.run_line_magic("statsbot", "status")
    status = capsys.readouterr().out
    assert "StatsBot worker - connected" in status and "Jobs: 1 done" in status
    ip.run_line_magic("statsbot", "jobs")
    assert "list_models" in capsys.readouterr().out
    ip.run_line_magic("statsbot", "models")
    assert "No models" in capsys.readouterr().out
    ip.run_line_magic("statsbot", f"allow {home.parent}")
    assert "Jobs may now use" in capsys.readouterr().out
    ip.run_line_magic("statsbot", "bogus")
    assert "invalid choice" in capsys.readouterr().out
    ip.run_line_magic("statsbot", f"connect --token t --url {reference.url} --max-jobs 0")
    assert "Error: max_jobs must be a whole number of at least 1" in capsys.readouterr().out
    assert statsbot_nb.current_worker() is worker
    p = statsbot_nb.panel()
    p.token.set_state({"value": "t"})
    p.url.value = "ws://[::1/ws"
    p.connect_button.click()
    assert "malformed" in p.status.value and p.token.value == ""
    assert statsbot_nb.current_worker() is worker
    ip.run_line_magic("load_ext", "statsbot_nb")  # loading twice starts no second worker
    assert statsbot_nb.current_worker() is worker
    ip.run_line_magic("unload_ext", "statsbot_nb")
    await _until(lambda: worker.state == "stopped")
    assert "statsbot" not in ip.magics_manager.magics["line"]


def test_sync_helpers_refuse_on_the_loop_thread_and_work_in_scripts(home: Path, tmp_path: Path):
    import subprocess
    import sys

    script = tmp_path / "script.py"
    script.write_text(
        "import asyncio, threading\n"
        "from statsbot_nb import session\n"
        "from statsbot_nb.server import JobServer\n"
        "import statsbot_nb\n"
        "ready, answered, finish = threading.Event(), threading.Event(), threading.Event(); box = {}\n"
        "async def serve():\n"
        "    async with JobServer() as s:\n"
        "        box['url'], box['token'] = s.url, s.issue_token(); ready.set()\n"
        "        box['result'] = await s.run_job('list_models', {}, timeout=60); answered.set()\n"
        "        while not finish.is_set():\n"  # keep serving until the script has looked at the state
        "            await asyncio.sleep(0.05)\n"
        "t = threading.Thread(target=lambda: asyncio.run(serve())); t.start(); ready.wait(30)\n"
        "w = statsbot_nb.connect(token=box['token'], url=box['url'])\n"
        "session.wait_connected_sync(w, 30)\n"
        "print('state', w.state)\n"
        "answered.wait(60)\n"
        "session.wait_idle_sync(w, 30)\n"
        "print('result', box['result'].success)\n"
        "finish.set(); t.join(60)\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert "state connected" in out.stdout and "result True" in out.stdout, (
        f"exit {out.returncode}\nstdout:\n{out.stdout}\nstderr:\n{out.stderr}"
    )


async def test_sync_helper_on_the_loop_thread_refuses(reference: JobServer):
    worker = statsbot_nb.connect(token=reference.issue_token(), url=reference.url)
    with pytest.raises(RuntimeError, match=r"await w\.wait_connected"):
        session.wait_connected_sync(worker)
    await worker.wait_connected(timeout=10)


async def test_connect_without_a_token_takes_the_one_typed_in_the_panel(reference: JobServer):
    p = statsbot_nb.panel()
    p.token.set_state({"value": reference.issue_token()})
    worker = statsbot_nb.connect(url=reference.url)
    assert p.token.value == ""
    await worker.wait_connected(timeout=10)


async def test_the_panel_asks_before_running_and_runs_what_the_user_allows(reference, make_worker):
    """Ask-before-running in the panel: the job waits with its description; Allow runs it, Deny refuses it."""
    from statsbot_nb.ui.panel import ControlPanel

    worker = make_worker(reference.url, reference.issue_token(), ask=True)
    panel = ControlPanel(worker)
    worker.start()
    await worker.wait_connected(timeout=10)
    assert panel.ask.value is True
    allowed = reference.submit("list_models")
    denied = reference.submit("list_models")
    for _ in range(200):
        panel._refresh()
        if len(panel._approvals) == 2:
            break
        await asyncio.sleep(0.02)
    rows = [panel._approvals[allowed.job_id], panel._approvals[denied.job_id]]
    assert "List your saved models" in rows[0].label.value
    assert not allowed.done
    rows[0].box.children[1].click()  # Allow
    rows[1].box.children[2].click()  # Deny
    first = await asyncio.wait_for(asyncio.shield(allowed.future), 10)
    second = await asyncio.wait_for(asyncio.shield(denied.future), 10)
    assert first.success and not second.success and "declined" in (second.error or "")
    panel._refresh()
    assert panel._approvals == {}


async def test_keep_running_stores_a_fresh_token_and_says_what_the_service_manager_answered(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The panel's login-service section: the token typed for the service is cleared at once and stored
    (0600) with the panel's server and privacy; what the service manager answered is shown as a sentence
    (here no manager can be reached, as in a container), never a traceback."""
    import json
    import stat

    runtime = tmp_path / "run-none"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={runtime / 'no-bus'}")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    p = statsbot_nb.panel()
    keep = p.keep_running
    keep.install_clicked()
    assert "fresh token" in keep.status.value  # nothing typed: nothing done
    p.url.value = "ws://127.0.0.1:9/ws"
    p.privacy.value = "strict"
    keep.token.set_state({"value": "service-token-123"})
    keep.install_button.click()
    assert keep.token.value == "", "the token must be cleared as soon as it is read"
    keep.token.set_state({"value": "another-token"})  # a second click while the first request runs
    keep.install_button.click()
    assert keep.token.value == "" and "was not used" in keep.status.value
    await _until(lambda: keep.busy is not None and keep.busy.done(), 60)
    shown = keep.status.value
    assert "service-token-123" not in shown and "Traceback" not in shown
    assert "#cf222e" in shown and len(shown) > 80, shown  # the manager could not be reached: said in words
    stored = home / "service" / "login.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    saved = json.loads(stored.read_text())
    assert "service-token-123" in stored.read_text() and "ws://127.0.0.1:9/ws" in json.dumps(saved)
    assert "strict" in json.dumps(saved)
    assert not (tmp_path / "config" / "systemd" / "user" / "statsbot-worker.service").exists()
    keep.remove_button.click()
    await _until(lambda: keep.busy.done(), 60)
    assert "Traceback" not in keep.status.value and keep.status.value
