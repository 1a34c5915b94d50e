"""The worker: connect, authenticate, reconnect, dispatch jobs, deliver results, publish events.

One :class:`Worker` runs as a task on an asyncio loop (the CLI's own, or a notebook kernel's). It never
does heavy work on that loop: job handlers run through a :mod:`~statsbot_nb.runner` (a process per heavy
job, a thread for quick ones), at most ``max_jobs`` heavy jobs at once, each as its own task, so pings,
progress and a quick ``list_models`` are answered while a model trains.

Frames go out through one sender task per connection (progress and results stay in order); results sit in
an :class:`~statsbot_nb.outbox.Outbox` until the server is known to have them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import importlib.util
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from . import __version__, protocol
from .config import default_machine_id, is_loopback_url, validate_ws_url
from .context import JobSettings
from .errors import BadJobError, ConfigError, JobCancelled, JobError, ProtocolError, TokenRejectedError
from .events import (
    Event,
    EventBus,
    JobAccepted,
    JobFailed,
    JobFinished,
    JobProgress,
    JobStarted,
    LogLine,
    StateChanged,
    WorkerState,
)
from .jobs import ACTIONS, ActionSpec, summarize, unknown_action_error
from .outbox import Outbox
from .retry import Backoff, describe_connect_error, is_fatal, proxy_for
from .runner import ProcessRunner, ThreadRunner

log = logging.getLogger("statsbot_nb.worker")
#: websockets logs every frame at DEBUG, the auth frame (with the token) included. Its connections log
#: through this logger, held at INFO so that a notebook's ``logging.basicConfig(level=DEBUG)`` never
#: prints a token.
_WS_LOG = logging.getLogger("statsbot_nb.websockets")
_WS_LOG.setLevel(logging.INFO)

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
#: Finished job records kept in ``Worker.jobs`` (their results stay re-sendable through the outbox).
MAX_JOB_RECORDS = 1000
#: Jobs queued or running at once; beyond this a job is answered at once with a failed result.
MAX_ACTIVE_JOBS = 256
REJECTED_HINT = "Get a fresh token with /connect in the StatsBot bot and connect again."


@dataclass
class JobRecord:
    """What the worker knows about one job; ``w.jobs[job_id]``."""

    job_id: str
    action: str
    params: dict[str, Any]
    status: JobStatus = "queued"
    progress: float = 0.0
    stage: str = "queued"
    message: str = ""
    eta: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    accepted_at: float = field(default_factory=time.time)
    started_at: float | None = None
    ended_at: float | None = None

    @property
    def finished(self) -> bool:
        """True once the job has an outcome."""
        return self.status in ("done", "failed", "cancelled")

    @property
    def duration(self) -> float | None:
        """Seconds from start to end (or until now while running)."""
        if self.started_at is None:
            return None
        return (self.ended_at or time.time()) - self.started_at


def _capabilities(max_jobs: int) -> dict[str, Any]:
    libs = {
        name: importlib.util.find_spec(name) is not None
        for name in ("sklearn", "xgboost", "lightgbm", "catboost", "tensorflow", "pyarrow")
    }
    return {"actions": sorted(ACTIONS), "libraries": libs, "max_jobs": max_jobs}


class Worker:
    """A StatsBot local worker.

    ``start()`` schedules it on the running loop; ``await run()`` runs it until :meth:`stop` or until the
    token is rejected (then :class:`TokenRejectedError` is raised). Observe it through ``events``,
    ``state`` and ``jobs``.
    """

    def __init__(
        self,
        token: str,
        url: str,
        *,
        settings: JobSettings,
        machine_id: str | None = None,
        max_jobs: int = 2,
        backoff: Backoff | None = None,
        actions: Mapping[str, ActionSpec] | None = None,
        process_runner: Any | None = None,
        thread_runner: Any | None = None,
        auth_timeout: float = 30.0,
        open_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        confirm_timeout: float = 30.0,
    ) -> None:
        if not isinstance(token, str) or not token.strip():
            raise TokenRejectedError("No token given. " + REJECTED_HINT)
        if not isinstance(max_jobs, int) or isinstance(max_jobs, bool) or max_jobs < 1:
            raise ConfigError(f"max_jobs must be a whole number of at least 1, not {max_jobs!r}.")
        self.url = validate_ws_url(url)
        self._proxy = None if is_loopback_url(self.url) else proxy_for(self.url)
        self.settings = settings
        self.machine_id = machine_id or default_machine_id()
        self.max_jobs = max_jobs
        self.events = EventBus()
        self.jobs: dict[str, JobRecord] = {}
        self.state: WorkerState = "idle"
        self.status_message = "Not started."
        self.user_id: int | None = None
        self.server_protocol = 1
        self._token = token.strip()
        self._session_token: str | None = None
        self._backoff = backoff or Backoff()
        self._actions = dict(ACTIONS if actions is None else actions)
        self._process_runner = process_runner or ProcessRunner()
        self._thread_runner = thread_runner or ThreadRunner()
        self._auth_timeout = auth_timeout
        self._open_timeout = open_timeout
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._confirm_timeout = confirm_timeout
        self._heavy_slots = asyncio.Semaphore(max_jobs)
        self._light_slots = asyncio.Semaphore(4)
        self._outbox = Outbox()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._send_queue: asyncio.Queue[tuple[str, str | None, str]] | None = None
        self._ws: ClientConnection | None = None
        self._stop = asyncio.Event()
        self._connected = asyncio.Event()
        self._ended = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._main_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopper: asyncio.Future[None] | None = None
        self.rejection: TokenRejectedError | None = None
        self.fatal_error: BaseException | None = None

    # ------------------------------------------------------------------ public API

    def start(self) -> asyncio.Task[None]:
        """Run the worker as a task on the running loop and return it (idempotent).

        The task is kept referenced by the worker; its errors end up in the state and the log.
        """
        if self._main_task is None:
            self._loop = asyncio.get_running_loop()
            self._set_state("connecting", f"Connecting to {self.url} ...")
            self._main_task = self._loop.create_task(self._run_quietly(), name="statsbot-worker")
            warm_up = getattr(self._process_runner, "warm_up", None)
            if callable(warm_up):  # start the forkserver now (seconds, off the loop): first job starts fast
                self._spawn(asyncio.to_thread(warm_up))
        return self._main_task

    def disconnect(self) -> concurrent.futures.Future[None] | asyncio.Future[None]:
        """Stop the worker from any thread; returns a future that completes once it has stopped."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("This worker was never started.")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._stopper = asyncio.ensure_future(self.stop())  # referenced: asyncio keeps weak refs only
            return self._stopper
        return asyncio.run_coroutine_threadsafe(self.stop(), loop)

    def update_settings(self, **changes: Any) -> JobSettings:
        """Change what jobs may do (allowed folders, data sharing); applies to jobs that start later."""
        self.settings = dataclasses.replace(self.settings, **changes)
        self._publish(LogLine("info", "Settings changed: " + ", ".join(sorted(changes))))
        return self.settings

    async def run(self) -> None:
        """Connect and serve until :meth:`stop`; raises :class:`TokenRejectedError` if the token is refused."""
        try:
            await self._connection_loop()
        finally:
            await self._shutdown()
        if self.rejection is not None:
            raise self.rejection
        if self.fatal_error is not None:
            raise self.fatal_error

    async def stop(self) -> None:
        """Stop: close the connection and cancel running jobs (their processes are killed)."""
        self._stop.set()
        # Cancel jobs first, while still connected, so the server gets their cancelled results instead
        # of waiting out its own timeout.
        jobs = list(self._tasks.values())
        for job in jobs:
            job.cancel()
        if jobs:
            await asyncio.gather(*jobs, return_exceptions=True)
        if self._send_queue is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._send_queue.join(), 2.0)
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        task = self._main_task
        if task is not None and task is not asyncio.current_task():
            with contextlib.suppress(BaseException):
                await task

    async def wait_connected(self, timeout: float | None = 30.0) -> None:
        """Wait until authenticated; raises TokenRejectedError, or TimeoutError with the current status."""
        waiter = asyncio.ensure_future(self._connected.wait())
        ender = asyncio.ensure_future(self._ended.wait())
        try:
            done, _ = await asyncio.wait({waiter, ender}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            ender.cancel()
        if self.rejection is not None:
            raise self.rejection
        if self._connected.is_set():
            return
        if self.fatal_error is not None:
            raise self.fatal_error
        if not done:
            raise TimeoutError(f"Not connected after {timeout} s: {self.status_message}")
        raise RuntimeError(f"The worker stopped: {self.status_message}")

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until no job is queued or running."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job (its process is killed); False if it is not active."""
        task = self._tasks.get(job_id)
        record = self.jobs.get(job_id)
        if task is None or task.done() or record is None or record.finished:
            return False
        task.cancel()
        return True

    @property
    def connected(self) -> bool:
        """True while authenticated on a live connection."""
        return self._connected.is_set()

    # ------------------------------------------------------------------ connection

    async def _run_quietly(self) -> None:
        try:
            await self.run()
        except TokenRejectedError:
            pass  # state "rejected" and the event already tell the user
        except Exception:
            log.exception("The worker stopped on an unexpected error")

    def _set_state(self, state: WorkerState, message: str, retry_in: float | None = None) -> None:
        self.state, self.status_message = state, message
        log.info("%s: %s", state, message)
        self._publish(
            StateChanged(
                state, message, retry_in=retry_in, machine_id=self.machine_id if state == "connected" else None
            )
        )

    def _publish(self, event: Event) -> None:
        self.events.publish(event)

    def _connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_size": protocol.MAX_FRAME_BYTES,
            "open_timeout": self._open_timeout,
            "ping_interval": self._ping_interval,
            "ping_timeout": self._ping_timeout,
            "close_timeout": 5,
            "max_queue": 64,
            "logger": _WS_LOG,
        }
        if is_loopback_url(self.url):
            kwargs["proxy"] = None  # loopback never goes through an HTTP proxy
        return kwargs

    async def _connection_loop(self) -> None:
        delays = self._backoff.delays()
        first = True
        while not self._stop.is_set():
            self._set_state("connecting" if first else "reconnecting", f"Connecting to {self.url} ...")
            first = False
            reason = f"The connection to {self.url} was closed."
            try:
                async with connect(self.url, **self._connect_kwargs()) as ws:
                    self._ws = ws  # so that stop() can interrupt the authentication too
                    if self._stop.is_set():
                        break
                    await self._authenticate(ws)
                    delays = self._backoff.delays()  # a good connection resets the backoff
                    await self._serve(ws)
            except TokenRejectedError as exc:
                self.rejection = exc
                self._set_state("rejected", str(exc))
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_fatal(exc):
                    self.fatal_error = exc
                    self._set_state("stopped", describe_connect_error(exc, self.url, self._proxy))
                    return
                reason = describe_connect_error(exc, self.url, self._proxy)
                log.debug("connection error", exc_info=True)
            finally:
                self._connected.clear()
                self._ws = None
            if self._stop.is_set():
                break
            delay = next(delays)
            self._set_state("reconnecting", f"{reason} Reconnecting in {delay:.1f} s.", retry_in=delay)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    async def _authenticate(self, ws: ClientConnection) -> None:
        token = self._session_token or self._token
        await ws.send(
            protocol.encode_auth(
                token, self.machine_id, worker_version=__version__, capabilities=_capabilities(self.max_jobs)
            )
        )
        deadline = time.monotonic() + self._auth_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("The server did not answer the authentication in time.")
            try:
                frame = await asyncio.wait_for(ws.recv(), remaining)
            except ConnectionClosed as exc:
                if exc.rcvd is not None and exc.rcvd.code == 1008:
                    self._reject_or_fallback("The server closed the connection during authentication")
                raise
            try:
                msg = protocol.parse_server_message(frame)
            except ProtocolError as exc:
                log.warning("Ignoring a malformed frame during authentication: %s", exc)
                continue
            if isinstance(msg, protocol.AuthFailed) or (isinstance(msg, protocol.AuthResponse) and not msg.success):
                error = msg.error if isinstance(msg, protocol.AuthFailed) else (msg.message or "refused")
                self._reject_or_fallback(f"The server rejected the token ({error})")
                raise ConnectionError("session token refused; retrying with the original token")
            if isinstance(msg, protocol.AuthResponse):
                self.user_id = msg.user_id
                self.server_protocol = msg.protocol
                if msg.session_token:
                    self._session_token = msg.session_token
                return
            log.debug("Ignoring %s before auth_response", msg.type)

    def _reject_or_fallback(self, what: str) -> None:
        """A refused session token falls back to the original token once; a refused token is final."""
        if self._session_token is not None:
            log.info("%s for the session token; retrying with the original token.", what)
            self._session_token = None
            return
        raise TokenRejectedError(f"{what}. {REJECTED_HINT}")

    async def _serve(self, ws: ClientConnection) -> None:
        if self._stop.is_set():
            return
        self._send_queue = asyncio.Queue()
        self._connected.set()
        who = f" (user {self.user_id})" if self.user_id is not None else ""
        self._set_state("connected", f"Connected to {self.url} as machine {self.machine_id}{who}.")
        sender = asyncio.create_task(self._sender(ws, self._send_queue), name="statsbot-sender")
        for job_id, frame in self._outbox.pending():
            self._send_queue.put_nowait(("result", job_id, frame))
        try:
            async for frame in ws:
                self._handle_frame(frame)
        finally:
            sender.cancel()
            with contextlib.suppress(BaseException):
                await sender
            self._send_queue = None

    async def _sender(self, ws: ClientConnection, queue: asyncio.Queue[tuple[str, str | None, str]]) -> None:
        """The only writer of a connection: frames leave in the order they were queued."""
        while True:
            kind, job_id, frame = await queue.get()
            try:
                await ws.send(frame)
            except ConnectionClosed:
                return
            finally:
                queue.task_done()
            if kind == "result" and job_id is not None and self.server_protocol < 2:
                self._spawn(self._confirm_by_ping(ws, job_id))

    async def _confirm_by_ping(self, ws: ClientConnection, job_id: str) -> None:
        """Without acks, a pong received after the result frame proves the server has it."""
        try:
            pong = await ws.ping()
            await asyncio.wait_for(pong, self._confirm_timeout)
        except (ConnectionClosed, asyncio.TimeoutError, RuntimeError):
            return  # stays pending; re-sent after the next connect
        if self._outbox.confirm(job_id):
            log.debug("Result for %s confirmed by ping", job_id)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _send(self, kind: str, job_id: str | None, frame: str) -> None:
        if self._send_queue is not None:
            self._send_queue.put_nowait((kind, job_id, frame))

    # ------------------------------------------------------------------ frames and jobs

    def _handle_frame(self, frame: str | bytes) -> None:
        try:
            msg = protocol.parse_server_message(frame)
        except BadJobError as exc:
            log.warning("Job %s is malformed: %s", exc.job_id, exc)
            self._fail_at_once(exc.job_id, "?", str(exc))
            return
        except ProtocolError as exc:
            log.warning("Skipping a malformed frame from the server: %s", exc)
            self._publish(LogLine("warning", f"Skipped a malformed frame from the server: {exc}"))
            return
        if isinstance(msg, protocol.Job):
            self._accept(msg)
        elif isinstance(msg, protocol.Cancel):
            if not self.cancel(msg.job_id):
                log.info("Server asked to cancel %s, which is not running", msg.job_id)
        elif isinstance(msg, protocol.Ack):
            self._outbox.confirm(msg.job_id)
        elif isinstance(msg, protocol.Connected):
            log.info("Server says: %s", msg.message)
        else:
            log.debug("Ignoring a %s frame", msg.type)

    def _accept(self, job: protocol.Job) -> None:
        if self._answer_again(job.job_id):
            return
        if len(self._tasks) >= MAX_ACTIVE_JOBS:
            self._fail_at_once(
                job.job_id,
                job.action,
                f"This worker already has {len(self._tasks)} jobs queued or running; "
                "send this one again when some have finished.",
            )
            return
        spec = self._actions.get(job.action)
        if spec is None:
            self._fail_at_once(job.job_id, job.action, unknown_action_error(job.action))
            return
        record = JobRecord(job.job_id, job.action, job.params)
        self.jobs[job.job_id] = record
        self._idle.clear()
        self._publish(JobAccepted(job.job_id, job.action, dict(job.params)))
        task = asyncio.create_task(self._run_job(record, spec), name=f"statsbot-job-{job.job_id}")
        self._tasks[job.job_id] = task

    def _answer_again(self, job_id: str) -> bool:
        """A job id seen before is never run twice; True when it needs nothing more (still running, or answered).

        A finished job's result is sent again while it is remembered (a malformed repeat of the frame must
        not replace it); after that, a failed result says the job already ran.
        """
        known = self.jobs.get(job_id)
        if known is not None and not known.finished:
            log.info("Job %s arrived again while still running; keeping the running one", job_id)
            return True
        frame = self._outbox.known(job_id)
        if frame is not None:
            log.info("Job %s arrived again; re-sending its result instead of running it twice", job_id)
            self._deliver(job_id, frame)
            return True
        if known is not None:  # finished long ago and its result forgotten
            log.info("Job %s arrived again after its result was confirmed; not running it twice", job_id)
            self._deliver(
                job_id,
                protocol.encode_result_error(
                    job_id,
                    f"Job {job_id} already ran on this worker and its result was delivered; it is not run "
                    "twice. Start a new job to run it again.",
                ),
            )
            return True
        return False

    def _fail_at_once(self, job_id: str, action: str, error: str) -> None:
        """Answer a job that cannot even start (unknown action, malformed) with a failed result."""
        if self._answer_again(job_id):
            return
        now = time.time()
        record = JobRecord(job_id, action, {}, status="failed", error=error, started_at=now, ended_at=now)
        self.jobs[job_id] = record
        self._prune_records()
        self._deliver(job_id, protocol.encode_result_error(job_id, error))
        self._publish(JobFailed(job_id, action, 0.0, error))

    async def _run_job(self, record: JobRecord, spec: ActionSpec) -> None:
        slots = self._heavy_slots if spec.isolated else self._light_slots
        runner = self._process_runner if spec.isolated else self._thread_runner
        frame: str
        try:
            async with slots:
                record.status, record.stage, record.started_at = "running", "starting", time.time()
                self._publish(JobStarted(record.job_id, record.action))
                self._on_progress(record, 0.0, f"Started {record.action}", "starting")
                data = await runner.run(
                    spec.target,
                    record.params,
                    self.settings,
                    lambda p, m, s: self._on_progress(record, p, m, s),
                    job_id=record.job_id,
                )
            record.status, record.result, record.progress = "done", data, 100.0
            frame = protocol.encode_result_ok(record.job_id, data)
        except (asyncio.CancelledError, JobCancelled) as exc:
            record.status = "cancelled"
            record.error = str(exc) if isinstance(exc, JobCancelled) and str(exc) else "The job was cancelled."
            frame = protocol.encode_result_error(record.job_id, record.error, cancelled=True)
        except JobError as exc:
            record.status, record.error = "failed", str(exc)
            frame = protocol.encode_result_error(record.job_id, record.error)
        except Exception as exc:
            log.exception("Job %s (%s) failed inside the worker", record.job_id, record.action)
            record.status = "failed"
            record.error = (
                f"The worker hit an internal error running {record.action} "
                f"({type(exc).__name__}); details are in the worker's local log."
            )
            frame = protocol.encode_result_error(record.job_id, record.error)
        record.ended_at = time.time()
        if record.started_at is None:
            record.started_at = record.ended_at
        self._deliver(record.job_id, frame)
        duration = record.duration or 0.0
        if record.status == "done":
            summary = summarize(record.action, record.result or {})
            record.message = summary
            self._publish(JobFinished(record.job_id, record.action, duration, summary, record.result or {}))
        else:
            record.message = record.error or ""
            self._publish(
                JobFailed(
                    record.job_id, record.action, duration, record.error or "", cancelled=record.status == "cancelled"
                )
            )
        self._tasks.pop(record.job_id, None)
        self._prune_records()
        if not self._tasks:
            self._idle.set()

    def _prune_records(self) -> None:
        """Keep ``jobs`` bounded in a long session: forget the oldest finished records beyond the cap."""
        excess = len(self.jobs) - MAX_JOB_RECORDS
        if excess <= 0:
            return
        for job_id in [j for j, r in self.jobs.items() if r.finished][:excess]:
            del self.jobs[job_id]

    def _on_progress(self, record: JobRecord, percent: float, message: str, stage: str) -> None:
        if record.finished:
            return
        record.progress, record.message, record.stage = percent, message, stage
        elapsed = time.time() - (record.started_at or time.time())
        record.eta = elapsed * (100.0 - percent) / percent if 1.0 <= percent < 100.0 else None
        self._publish(JobProgress(record.job_id, record.action, percent, stage, message, record.eta))
        self._send("progress", record.job_id, protocol.encode_progress(record.job_id, percent, message, status=stage))

    def _deliver(self, job_id: str, frame: str) -> None:
        self._outbox.add(job_id, frame)
        self._send("result", job_id, frame)

    async def _shutdown(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        for task in list(self._background):
            task.cancel()
        if hasattr(self._process_runner, "shutdown"):
            self._process_runner.shutdown()
        self._connected.clear()
        if self.state not in ("rejected", "stopped"):
            self._set_state("stopped", "Stopped.")
        self._ended.set()

    @property
    def pending_results(self) -> int:
        """How many results wait for the server to confirm them."""
        return len(self._outbox)
