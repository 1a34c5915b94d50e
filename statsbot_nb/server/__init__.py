"""The reference StatsBot job server (for the demo, the notebooks and the tests).

It speaks the same protocol as today's StatsBot server plus our extensions, and never imports the worker.
"""

from __future__ import annotations

from .core import JobServer
from .records import JobHandle, JobResult, ServerEvent, WorkerInfo

__all__ = ["JobHandle", "JobResult", "JobServer", "ServerEvent", "WorkerInfo"]
