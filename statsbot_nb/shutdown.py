"""Whether the interpreter is exiting, for work that must then neither start nor report a failure.

A worker or panel on a background loop (terminal IPython, a script) can still be running when the main
thread ends. ``threading``'s shutdown marks the main thread stopped before it shuts the thread pools
down, so from then on ``asyncio.to_thread`` fails with "cannot schedule new futures after shutdown".
That failure is the interpreter going away, not news for the user: it is logged at debug level only.
"""

from __future__ import annotations

import sys
import threading


def exiting() -> bool:
    """True once the main thread has finished or the interpreter began finalising."""
    return sys.is_finalizing() or not threading.main_thread().is_alive()


__all__ = ["exiting"]
