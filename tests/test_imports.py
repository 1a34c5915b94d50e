"""Importing statsbot_nb is cheap and side-effect free."""

from __future__ import annotations

import subprocess
import sys


def test_plain_import_pulls_in_no_notebook_or_ml_stack():
    code = (
        "import sys, statsbot_nb, statsbot_nb.worker, statsbot_nb.cli, statsbot_nb.server, statsbot_nb.session\n"
        "bad = [m for m in ('IPython', 'ipywidgets', 'pandas', 'sklearn', 'matplotlib') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_server_never_imports_the_worker():
    code = (
        "import sys, statsbot_nb.server\n"
        "print('statsbot_nb.worker' in sys.modules, 'statsbot_nb.runner' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_public_names_exist():
    import statsbot_nb
    import statsbot_nb.server

    for module in (statsbot_nb, statsbot_nb.server):
        for name in module.__all__:
            assert hasattr(module, name), name
