"""The public API is pinned: what ``statsbot_nb`` exports is a decision, not an accident.

Changing this set is an API change: update the test, README and the changelog together.
"""

from __future__ import annotations

import subprocess
import sys

import statsbot_nb

PUBLIC = {
    # functions
    "connect",
    "current_worker",
    "disconnect",
    "panel",
    "models",
    "model",
    "compare",
    "ledger",
    "load_ipython_extension",
    "unload_ipython_extension",
    "use_dask",
    "__version__",
    # the types users receive
    "Worker",
    "JobRecord",
    "JobSettings",
    "LocalModel",
    # the errors users catch
    "StatsbotError",
    "ProtocolError",
    "BadJobError",
    "TokenRejectedError",
    "ConfigError",
    "JobError",
    "AccessDenied",
    "JobCancelled",
    "ModelLookupError",
    "ModelNotFound",
    "AmbiguousModel",
}


def test_the_public_names_are_exactly_these() -> None:
    assert set(statsbot_nb.__all__) == PUBLIC
    assert len(statsbot_nb.__all__) == len(PUBLIC), "no name twice"


def test_every_public_name_resolves_to_the_object_users_receive() -> None:
    from statsbot_nb import core, errors, local, session, worker

    assert statsbot_nb.Worker is worker.Worker
    assert statsbot_nb.JobRecord is core.JobRecord
    assert statsbot_nb.LocalModel is local.LocalModel
    assert statsbot_nb.connect is session.connect
    from statsbot_nb import usedask

    assert statsbot_nb.use_dask is usedask.use_dask
    from statsbot_nb import ledgerdb, ledgerview

    assert statsbot_nb.ledger is ledgerview.read_ledger  # importing the ledger's modules never shadows it
    assert ledgerdb.Ledger is not None
    for name in ("StatsbotError", "ProtocolError", "BadJobError", "TokenRejectedError", "ConfigError", "JobError"):
        assert getattr(statsbot_nb, name) is getattr(errors, name)
        assert issubclass(getattr(statsbot_nb, name), statsbot_nb.StatsbotError)
    for name in ("AccessDenied", "JobCancelled"):
        assert issubclass(getattr(statsbot_nb, name), statsbot_nb.JobError)
    assert issubclass(statsbot_nb.ModelNotFound, statsbot_nb.ModelLookupError)
    assert issubclass(statsbot_nb.ModelNotFound, KeyError)  # model("x") failing reads like a dict lookup
    for name in PUBLIC:
        assert getattr(statsbot_nb, name) is not None, name


def test_exported_names_load_lazily() -> None:
    """``import statsbot_nb`` stays cheap: the worker, the store and the panel load on first use."""
    code = (
        "import sys, statsbot_nb\n"
        "print(sorted(m for m in ('statsbot_nb.worker', 'statsbot_nb.local', 'statsbot_nb.ui.panel', 'websockets')"
        " if m in sys.modules))\n"
        "statsbot_nb.Worker\n"
        "print('statsbot_nb.worker' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "True"]


def test_unknown_names_raise_attribute_error() -> None:
    try:
        statsbot_nb.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
