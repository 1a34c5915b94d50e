"""``%load_ext statsbot_nb`` and the ``%statsbot`` line magic (the only module besides ui/ importing IPython).

%statsbot                                  show the control panel
%statsbot connect --token T [--url U]      start the worker (the token is never echoed)
%statsbot status | jobs | models           print the state, recent jobs, local models
%statsbot allow DIR                        let jobs use DIR too
%statsbot disconnect                       stop the worker
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any

from . import session
from .config import models_dir, statsbot_home
from .errors import StatsbotError
from .ml.store import list_models

USAGE = __doc__.split("\n\n", 1)[1].rstrip()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # never SystemExit inside a kernel
        raise StatsbotError(f"{message}\n{USAGE}")


def _parser() -> _Parser:
    parser = _Parser(prog="%statsbot", add_help=False)
    sub = parser.add_subparsers(dest="command")
    connect = sub.add_parser("connect", add_help=False)
    connect.add_argument("--token")
    connect.add_argument("--url")
    connect.add_argument("--allow", action="append", default=[])
    connect.add_argument("--share-data", action="store_true")
    connect.add_argument("--privacy", choices=("strict", "standard", "share"), default=None)
    connect.add_argument("--max-jobs", type=int, default=2)
    for name in ("status", "jobs", "models", "disconnect", "panel", "help"):
        sub.add_parser(name, add_help=False)
    allow = sub.add_parser("allow", add_help=False)
    allow.add_argument("folder")
    return parser


def statsbot_magic(line: str) -> Any:
    """The ``%statsbot`` line magic."""
    from .ui import text

    try:
        args = _parser().parse_args(shlex.split(line))
    except (StatsbotError, ValueError) as exc:
        print(exc)
        return None
    command = args.command or "panel"
    worker = session.current_worker()
    try:
        if command == "panel":
            from .ui.panel import panel

            return panel()
        if command == "help":
            print(USAGE)
        elif command == "connect":
            worker = session.connect(
                args.token,
                args.url,
                allow=args.allow,
                share_data=args.share_data,
                privacy=args.privacy,
                max_jobs=args.max_jobs,
            )
            print(
                f"Connecting to {worker.url} as machine {worker.machine_id} ... "
                "(`%statsbot status` or the panel shows progress)"
            )
        elif command == "status":
            print(text.status_text(worker))
        elif command == "jobs":
            print(text.jobs_text(worker.jobs.values()) if worker else "No worker yet.")
        elif command == "models":
            print(text.models_text(list_models(models_dir(statsbot_home()))))
        elif command == "allow":
            from .ui.panel import panel

            print(panel().allow_folder(args.folder))
        elif command == "disconnect":
            session.disconnect()
            print("Disconnecting." if worker else "No worker to disconnect.")
    except StatsbotError as exc:
        print(f"Error: {exc}")
    return None


def load(ipython: Any) -> None:
    """Register ``%statsbot``, capture the kernel's loop and show the panel (once per kernel)."""
    session.capture_main_loop()
    ipython.register_magic_function(statsbot_magic, magic_kind="line", magic_name="statsbot")
    from IPython.display import display

    from .ui.panel import panel

    display(panel())


def unload(ipython: Any) -> None:
    """Stop the worker, close the panel and remove ``%statsbot``."""
    session.disconnect()
    from .ui.panel import close_panel

    close_panel()
    ipython.magics_manager.magics["line"].pop("statsbot", None)
