"""The login service's unit files for every platform: golden files, round trips and systemd's own verifier.

Paths with spaces, quotes, ``%``, ``$``, ``&`` and ``<`` are rendered for systemd (``%%``/``$$`` escaping and
quoting in ExecStart), launchd (XML-escaped plist) and Task Scheduler (XML-escaped, Windows-quoted
arguments). Golden files live in ``tests/golden/``; ``UPDATE_GOLDEN=1`` rewrites them (review the diff).
Beyond the golden text, each rendering is parsed back by an independent reader (plistlib, ElementTree and
the Windows command-line rules, ``systemd-analyze verify``) and must give the exact command.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from statsbot_nb.errors import ServiceError
from statsbot_nb.service.launchd import render_plist
from statsbot_nb.service.schtasks import check_expansion, render_task_xml
from statsbot_nb.service.spec import ServiceSpec
from statsbot_nb.service.systemd import render_unit, view_from_show

GOLDEN = Path(__file__).parent / "golden"
ODD_HOME = "/home/ann/Stats Bot 'x' \"y\" 50% $HOME & <z>"
POSIX = {
    "plain": ServiceSpec("/usr/bin/python3", "/home/ann/.statsbot"),
    "odd": ServiceSpec("/opt/My Tools 100% $HOME/venv/bin/python3", ODD_HOME),
    "quoted": ServiceSpec('/opt/My "Tools" \\ 100% $HOME/bin/python3', "/home/ann/.statsbot"),
}
WINDOWS = {
    "plain": ServiceSpec(
        r"C:\Users\Ann\AppData\Local\Programs\Python\Python311\pythonw.exe", r"C:\Users\Ann\.statsbot", windows=True
    ),
    "odd": ServiceSpec(
        r"C:\Program Files\Ann's Tools & 100% $x\pythonw.exe", 'C:\\Users\\Ann Lee\\Stats "Bot" 50% $HOME <z>\\', True
    ),
}
TASK_USER = "WORKGROUP\\Ann <Lee> & Co"


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="")
    assert path.exists(), f"{path} is missing: run with UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(encoding="utf-8"), f"{name} changed; if on purpose, UPDATE_GOLDEN=1 and review"


@pytest.mark.parametrize("name", sorted(POSIX))
def test_systemd_unit_golden(name: str):
    _golden(f"systemd-{name}.service", render_unit(POSIX[name]))


@pytest.mark.parametrize("name", sorted(POSIX))
def test_launchd_plist_golden_and_round_trip(name: str):
    spec = POSIX[name]
    data = render_plist(spec)
    _golden(f"launchd-{name}.plist", data.decode("utf-8"))
    agent = plistlib.loads(data)
    assert agent["ProgramArguments"] == spec.argv
    assert agent["KeepAlive"] == {"SuccessfulExit": False} and agent["RunAtLoad"] is True
    assert agent["WorkingDirectory"] == spec.home


def windows_argv(line: str) -> list[str]:
    """Split a command line by the Microsoft C runtime rules (what Python on Windows does), independently."""
    args: list[str] = []
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n:
            break
        word, quoted = "", False
        while i < n and (quoted or line[i] not in " \t"):
            slashes = 0
            while i < n and line[i] == "\\":
                slashes += 1
                i += 1
            if i < n and line[i] == '"':
                word += "\\" * (slashes // 2)
                if slashes % 2:
                    word += '"'
                else:
                    quoted = not quoted
                i += 1
            else:
                word += "\\" * slashes
                if i < n and (quoted or line[i] not in " \t"):
                    word += line[i]
                    i += 1
        args.append(word)
    return args


@pytest.mark.parametrize("name", sorted(WINDOWS))
def test_task_scheduler_xml_golden_and_round_trip(name: str):
    spec = WINDOWS[name]
    text = render_task_xml(spec, TASK_USER)
    _golden(f"schtasks-{name}.xml", text)
    ns = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}
    root = ET.fromstring(text)
    assert root.findtext("t:Actions/t:Exec/t:Command", namespaces=ns) == spec.interpreter
    assert windows_argv(root.findtext("t:Actions/t:Exec/t:Arguments", namespaces=ns) or "") == spec.argv[1:]
    assert root.findtext("t:Actions/t:Exec/t:WorkingDirectory", namespaces=ns) == spec.home
    assert root.findtext("t:Triggers/t:LogonTrigger/t:UserId", namespaces=ns) == TASK_USER
    assert root.findtext("t:Settings/t:RestartOnFailure/t:Count", namespaces=ns) == "5"


def test_windows_argv_reader_is_not_a_mirror():
    # the reader above knows the rules on its own: a few hand-made lines
    assert windows_argv('a "b c" d\\"e "f\\\\" g') == ["a", "b c", 'd"e', "f\\", "g"]


def test_percent_names_of_defined_variables_are_refused_for_task_scheduler():
    spec = ServiceSpec(r"C:\%USERPROFILE%\pythonw.exe", r"C:\home", windows=True)
    with pytest.raises(ServiceError, match="Task Scheduler would replace %USERPROFILE%"):
        check_expansion(spec, {"USERPROFILE": r"C:\Users\Ann"})
    check_expansion(WINDOWS["odd"], {"USERPROFILE": r"C:\Users\Ann", "x": "1"})  # a lone % stays as it is


@pytest.mark.parametrize(
    ("interpreter", "home", "words"),
    [
        ("python3", "/home/ann", "must be absolute"),
        ("/usr/bin/python3", "/home/ann\nExecStartPre=/bin/rm -rf ~", "control character"),
    ],
)
def test_unusable_paths_are_refused_with_a_sentence(interpreter: str, home: str, words: str):
    with pytest.raises(ServiceError, match=words):
        ServiceSpec(interpreter, home)


def test_no_unit_carries_a_token_or_an_environment():
    for spec in POSIX.values():
        unit = render_unit(spec)
        assert "Environment" not in unit and "token" not in unit.split("[Service]")[1].lower()
        assert "EnvironmentVariables" not in render_plist(spec).decode()


def _verify(unit: Path, runtime: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime))
    return subprocess.run(
        ["systemd-analyze", "--user", "verify", str(unit)], capture_output=True, text=True, env=env, timeout=60
    )


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed (apt: systemd)")
def test_systemd_analyze_verifies_units_for_odd_paths(tmp_path: Path):
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    plain_dir = tmp_path / "My Tools 100% $HOME"
    quoted_dir = tmp_path / 'My "Tools" \\ 50%'
    for folder in (plain_dir, quoted_dir):
        folder.mkdir()
        (folder / "python3").symlink_to(sys.executable)
    home = str(tmp_path / ODD_HOME.lstrip("/").replace("/", "_"))
    for folder in (plain_dir, quoted_dir):
        unit = tmp_path / "statsbot-worker.service"
        unit.write_text(render_unit(ServiceSpec(str(folder / "python3"), home)))
        done = _verify(unit, runtime)
        assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    # the verifier is discriminating: the quoted executable written plainly is refused
    bad = tmp_path / "bad.service"
    bad.write_text(f'[Service]\nExecStart="{str(quoted_dir / "python3").replace(chr(92), chr(92) * 2)}" -V\n')
    refused = _verify(bad, runtime)
    assert refused.returncode != 0 and "special characters" in refused.stderr


def test_systemd_show_output_becomes_a_view():
    running = view_from_show(
        "LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=4242\n"
        "ExecMainStartTimestamp=@1700000000\nNRestarts=1\nResult=success\nExecMainStatus=0\n",
        True,
    )
    assert (running.running, running.pid, running.since, running.restarts) == (True, 4242, 1700000000.0, 1)
    waiting = view_from_show("ActiveState=activating\nSubState=auto-restart\nMainPID=0\nNRestarts=2\n", True)
    assert waiting.running is False and "restarts it" in waiting.detail
    failed = view_from_show("ActiveState=failed\nSubState=failed\nResult=exit-code\nExecMainStatus=1\n", True)
    assert failed.running is False and "gave up" in failed.detail
