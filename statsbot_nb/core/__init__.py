"""The worker's decisions as a pure state machine (sans-I/O): events in, actions out.

:class:`WorkerCore` owns every decision the worker makes — authentication and the session-token fallback,
reconnect delays, duplicate job ids, job limits and slots, cancellation, the outbox of unconfirmed
results, confirm-by-ping for servers without acks, what the journal must record and when — and nothing
else. It has no socket, task, thread or clock: the driver (:mod:`statsbot_nb.worker`) feeds it events with
the current time and carries out the actions it returns, in order. That order is part of the contract: a
:class:`ReserveJob` comes before its :class:`StartJob`, a :class:`JournalResult` before the result's
:class:`SendFrame`, so a crash between any two actions loses nothing (see :mod:`statsbot_nb.journal`).

Connections are numbered; every frame the core asks to send names its connection, so a frame decided for
a connection that has since dropped is never sent on the next one. Tested by calling it
(``tests/test_core.py``, and ``tests/test_core_properties.py`` where Hypothesis drives random interleavings).

Modules: :mod:`.vocabulary` (records, events, actions), :mod:`.limits` (caps and sentences),
:mod:`.machine` (the entry point and the connection), :mod:`.jobbook` (job decisions).
"""

from __future__ import annotations

from .limits import REJECTED_HINT, RESTARTED, STOPPING, JobStatus
from .machine import WorkerCore
from .vocabulary import (
    Action,
    Approval,
    AskChanged,
    CancelJob,
    CancelRequested,
    CloseConnection,
    ConnectionLost,
    ConnectionOpened,
    CoreConfig,
    Ended,
    Event,
    Finish,
    FrameReceived,
    JobEnded,
    JobProgressed,
    JobRecord,
    JobReserved,
    JournalConfirmed,
    JournalResult,
    JournalStarted,
    Log,
    OpenConnection,
    PongReceived,
    Publish,
    ReserveJob,
    ScheduleTimer,
    SendFrame,
    SendPing,
    Start,
    StartJob,
    StopRequested,
    TimerFired,
    bounded_params,
)

__all__ = [
    "REJECTED_HINT",
    "RESTARTED",
    "STOPPING",
    "Action",
    "Approval",
    "AskChanged",
    "CancelJob",
    "CancelRequested",
    "CloseConnection",
    "ConnectionLost",
    "ConnectionOpened",
    "CoreConfig",
    "Ended",
    "Event",
    "Finish",
    "FrameReceived",
    "JobEnded",
    "JobProgressed",
    "JobRecord",
    "JobReserved",
    "JobStatus",
    "JournalConfirmed",
    "JournalResult",
    "JournalStarted",
    "Log",
    "OpenConnection",
    "PongReceived",
    "Publish",
    "ReserveJob",
    "ScheduleTimer",
    "SendFrame",
    "SendPing",
    "Start",
    "StartJob",
    "StopRequested",
    "TimerFired",
    "WorkerCore",
    "bounded_params",
]
