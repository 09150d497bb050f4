"""The RQ worker classes `escalate worker` runs: RQ's own, with fewer Redis round trips per job.

Around every job RQ's worker loop makes about twenty round trips to Redis for its bookkeeping (20.1 a job
over 200 no-op jobs, tests/test_rq_workers.py counts them): a no-op job costs 5-8 ms on a 2-core machine,
a third of an event's budget at 50 events/s. These classes make 9.1, by four changes that leave in Redis
what RQ's own leave (the one difference: a suspension takes up to a second to stop a busy worker):

- **Heartbeats** (HSET and two EXPIREs): sent one by one by RQ, in one pipeline here; and one that would
  move the key's expiry by less than ``HEARTBEAT_SLACK`` seconds is skipped (the key then lives at most
  that much less than RQ asked for, on a TTL of minutes). A heartbeat inside a pipeline (RQ sets the job's
  timeout there) is never skipped, and one that asks for a later expiry always goes out.
- **The worker's state**: RQ writes "idle" after each job and again before each dequeue; a state the
  worker's key already holds is not written again.
- **Suspension** (`rq suspend`): looked up at most once per ``SUSPENSION_CHECK_SECONDS`` rather than before
  every job, so a suspension stops a busy worker within that time instead of at its next job.
- **The job's last heartbeat when it ends**: RQ writes it alone, then saves the whole job (that field
  included) in the next transaction. Without success or failure callbacks (ours have none) nothing runs
  in between, so it travels with that save.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rq import SimpleWorker, Worker
from rq.exceptions import StopRequested
from rq.timeouts import JobTimeoutException, TimerDeathPenalty, UnixSignalDeathPenalty
from rq.utils import now

HEARTBEAT_SLACK = 1.0
SUSPENSION_CHECK_SECONDS = 1.0
# How long a job past its timeout may go on after each raise (see InsistentTimerDeathPenalty).
TIMEOUT_REPEAT_SECONDS = 10.0


class LeanBookkeeping:
    """Cuts the round trips named in the module's docstring; mixed in before RQ's worker class."""

    worker_ttl: int
    connection: Any
    # The earliest the worker's key can expire, by the heartbeats sent (monotonic clock).
    _alive_until = 0.0
    # The state last written outside a pipeline (None: not known to be in Redis).
    _state_written: str | None = None
    _suspension_checked_at = float("-inf")

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        wanted = time.monotonic() + (timeout or self.worker_ttl + 60)
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)  # type: ignore[misc]
            # Its expiry may be shorter than the last one, and lands only if the pipeline runs: count
            # the earlier of the two.
            self._alive_until = min(self._alive_until, wanted)
            return
        if wanted - self._alive_until < HEARTBEAT_SLACK:
            return
        with self.connection.pipeline(transaction=False) as batch:
            super().heartbeat(timeout, batch)  # type: ignore[misc]
            batch.execute()
        self._alive_until = wanted

    def set_state(self, state: str, pipeline: Any = None) -> None:
        if pipeline is None and state == self._state_written:
            self._state = state  # what RQ's get_state() returns
            return
        super().set_state(state, pipeline)  # type: ignore[misc]
        self._state_written = state if pipeline is None else None

    def check_for_suspension(self, burst: bool) -> None:
        if time.monotonic() - self._suspension_checked_at < SUSPENSION_CHECK_SECONDS:
            return
        super().check_for_suspension(burst)  # type: ignore[misc]
        self._suspension_checked_at = time.monotonic()

    def handle_execution_ended(self, job: Any, queue: Any, heartbeat_ttl: int) -> None:
        if job.success_callback is not None or job.failure_callback is not None:
            # A callback runs before the job is saved: keep RQ's heartbeat for it.
            super().handle_execution_ended(job, queue, heartbeat_ttl)  # type: ignore[misc]
            return
        job.ended_at = now()
        job.last_heartbeat = job.ended_at  # saved with the job's outcome, in RQ's next transaction


class InsistentUnixSignalDeathPenalty(UnixSignalDeathPenalty):
    """RQ's SIGALRM penalty, raised again every ``TIMEOUT_REPEAT_SECONDS`` until the job ends (an
    interval timer instead of a single alarm): see ``InsistentTimerDeathPenalty``."""

    def setup_death_penalty(self) -> None:
        signal.signal(signal.SIGALRM, self.handle_death_penalty)
        if self._timeout > 0:  # RQ's -1: no timeout
            signal.setitimer(signal.ITIMER_REAL, self._timeout, TIMEOUT_REPEAT_SECONDS)

    def cancel_death_penalty(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)


class InsistentTimerDeathPenalty(TimerDeathPenalty):
    """RQ's timer penalty, raised again every ``TIMEOUT_REPEAT_SECONDS`` until the job ends. Raised into
    the job's thread wherever it is, a timeout can land in code that swallows exceptions (SQLAlchemy's
    pool logs and drops what a connection's reset raises): raised once, the job would then run on with
    no limit, holding one of the worker's threads. Never raised once the job has ended."""

    def __init__(self, timeout: Any, exception: type[BaseException] = JobTimeoutException, **kwargs: Any):
        super().__init__(timeout, exception, **kwargs)
        self._guard = threading.Lock()  # a timer firing as the job ends must not outlive it
        self._over = False

    def handle_death_penalty(self) -> None:
        with self._guard:
            if self._over:
                return
            super().handle_death_penalty()
            self._timer = threading.Timer(TIMEOUT_REPEAT_SECONDS, self.handle_death_penalty)
            self._timer.daemon = True
            self._timer.start()

    def cancel_death_penalty(self) -> None:
        with self._guard:
            self._over = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


class EscalateSimpleWorker(LeanBookkeeping, SimpleWorker):
    """Jobs in the worker's own process, one at a time (`escalate worker --threads 1`)."""

    death_penalty_class = InsistentUnixSignalDeathPenalty


class EscalateWorker(LeanBookkeeping, Worker):
    """A fork per job (`escalate worker --fork`)."""


class EscalateThreadedWorker(LeanBookkeeping, SimpleWorker):
    """Up to ``threads`` jobs at once in the worker's own process (`escalate worker --threads N`).

    A job spends most of its time waiting for Zendesk, Jira, PostgreSQL and the model (which runs outside
    the GIL); another job's Python runs meanwhile. The main thread takes a job only when a thread is free
    (a job never waits in this process's hands), hands it to that thread with its RQ execution, and goes
    back to the queue; each thread runs RQ's own ``perform_job``, so registries, results, retries and
    failures are RQ's. What changes with threads:

    - **Job timeouts** are raised in the job's thread by a timer (RQ's ``TimerDeathPenalty``, raised again
      until the job ends): SIGALRM reaches only the main thread. Like SIGALRM, it interrupts Python code,
      not a blocking call in C.
    - **Shutdown**: a warm shutdown (SIGTERM) stops taking jobs and waits for those running; a cold one
      (a second SIGTERM) waits for nothing, and RQ gives the running jobs back as abandoned, as for a
      killed worker. ``--max-jobs`` and burst mode end after the running jobs too.
    - **The worker's state** in Redis reads busy while it has a job and idle while it listens, which with
      threads can be both at once: it shows what the main thread does.
    """

    death_penalty_class = InsistentTimerDeathPenalty

    def __init__(self, *args: Any, threads: int = 2, **kwargs: Any) -> None:
        if threads < 1:
            raise ValueError("threads must be at least 1")
        super().__init__(*args, **kwargs)
        self.threads = threads
        self._free = threading.BoundedSemaphore(threads)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="escalate-job")
        self._cold = False

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        # A free thread first: a job taken from the queue starts at once. While every thread is busy the
        # worker keeps its key alive (a job may run for minutes).
        while not self._free.acquire(timeout=max(self.worker_ttl / 3, 1)):
            self.heartbeat()
        if self._stop_requested:  # a warm shutdown asked while every thread was busy: take no more
            self._free.release()
            raise StopRequested()
        try:
            result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        except BaseException:
            self._free.release()
            raise
        if result is None:
            self._free.release()
        return result

    def execute_job(self, job: Any, queue: Any) -> None:
        try:
            execution = self.prepare_execution(job)
            self._pool.submit(self._perform, job, queue, execution)
        except BaseException:
            self._free.release()
            raise

    def _perform(self, job: Any, queue: Any, execution: Any) -> None:
        try:
            self.perform_job(job, queue, execution)  # handles the job's own failures
        except Exception:
            self.log.exception("Worker %s: job %s failed outside the job itself", self.name, job.id)
        finally:
            self._free.release()

    def request_force_stop(self, signum: int, frame: Any) -> None:
        try:
            super().request_force_stop(signum, frame)
        except SystemExit:  # not a signal repeated within a second, which RQ ignores
            self._cold = True
            raise

    def teardown(self) -> None:
        # Warm: the running jobs end first, then the worker unregisters. Cold (a second SIGTERM, maybe
        # while waiting for them): it unregisters and the process ends at once, the running jobs with
        # it; RQ gives them back as abandoned, as for a killed worker. Python's exit would otherwise wait
        # for the job threads.
        try:
            if not self._cold:
                self._pool.shutdown(wait=True)
        finally:
            super().teardown()
            if self._cold:
                logging.shutdown()
                os._exit(0)
