"""The RQ worker classes `escalate worker` runs: RQ's own, with fewer Redis round trips per job.

Around every job RQ's worker loop makes about twenty round trips to Redis for its bookkeeping (20.1 a job
over 200 no-op jobs, tests/test_rq_workers.py counts them): a no-op job costs 5-8 ms on a 2-core machine,
a third of an event's budget at 50 events/s. These classes make 8.1 (the threaded one 7.3), by changes
that leave in Redis what RQ's own leave, but for the two differences named (a suspension takes up to a
second to stop a busy worker; the worker's key is not given a job's shorter expiry):

- **Heartbeats** (HSET and two EXPIREs): sent one by one by RQ, in one pipeline here; and one that would
  move the key's expiry by less than ``HEARTBEAT_SLACK`` seconds is skipped (the key then lives at most
  that much less than RQ asked for, on a TTL of minutes). The heartbeat RQ pipelines with a job's
  bookkeeping asks for the job's shorter TTL: here it keeps the longer life the key already has, so the
  listen after the job need not lengthen it again (a worker that dies mid-job is listed as long as one
  that dies listening).
- **The worker's state**: RQ writes "idle" after each job and again before each dequeue; a state the
  worker's key already holds is not written again. With threads it reads busy while any job runs.
- **Suspension** (`rq suspend`): looked up at most once per ``SUSPENSION_CHECK_SECONDS`` rather than before
  every job, so a suspension stops a busy worker within that time instead of at its next job.
- **The job's last heartbeat when it ends**: RQ writes it alone, then saves the whole job (that field
  included) in the next transaction. Without success or failure callbacks (ours have none) nothing runs
  in between, so it travels with that save.
- **Job timeouts in threads**: one watchdog thread for the process instead of a timer thread started
  (and woken again to be cancelled) for every job.
"""

from __future__ import annotations

import logging
import math
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
from rq.worker import WorkerStatus

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
        ttl = timeout or self.worker_ttl + 60
        moment = time.monotonic()
        if pipeline is not None:
            # RQ asks here for a job's expiry, shorter than a listening worker's: the key keeps the
            # longer life it already has, so the next listen need not lengthen it again (a round trip a
            # job). Whether or not the pipeline runs, the key lives at least until ``_alive_until``.
            super().heartbeat(max(ttl, math.ceil(self._alive_until - moment)), pipeline)  # type: ignore[misc]
            return
        wanted = moment + ttl
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
        # RQ runs the pipelines it writes the state in (a job's bookkeeping) at once.
        self._state_written = state

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


class _Watchdog:
    """One thread that raises each overdue job's timeout in the job's thread, for all the jobs of a
    process: RQ's timer penalty starts a thread per job (and wakes it again to cancel it), two thread
    switches and a thread's start for every job. Arming and disarming here take a lock; the thread wakes
    only when a deadline falls due or an earlier one is armed while it sleeps."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[InsistentTimerDeathPenalty, float] = {}
        self._sleeping_until = float("-inf")  # -inf: not asleep (it looks at every deadline anyway)
        self._thread: threading.Thread | None = None

    def arm(self, penalty: InsistentTimerDeathPenalty, seconds: float) -> None:
        at = time.monotonic() + seconds
        with self._cond:
            self._due[penalty] = at
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="escalate-job-timeouts", daemon=True)
                self._thread.start()
            elif at < self._sleeping_until:
                self._cond.notify()

    def disarm(self, penalty: InsistentTimerDeathPenalty) -> None:
        with self._cond:
            self._due.pop(penalty, None)

    def _watch(self) -> None:
        while True:
            with self._cond:
                moment = time.monotonic()
                overdue = [penalty for penalty, at in self._due.items() if at <= moment]
                for penalty in overdue:  # raised again until the job ends (InsistentTimerDeathPenalty)
                    self._due[penalty] = moment + TIMEOUT_REPEAT_SECONDS
                if not overdue:
                    following = min(self._due.values(), default=float("inf"))
                    self._sleeping_until = following
                    self._cond.wait(None if following == float("inf") else following - moment)
                    self._sleeping_until = float("-inf")
                    continue
            for penalty in overdue:
                try:
                    penalty.handle_death_penalty()
                except Exception:  # the watch goes on for the other jobs
                    logging.getLogger(__name__).exception("could not raise a job's timeout")


_watchdog = _Watchdog()


def _new_watchdog_in_child() -> None:
    # A forked child has none of its parent's threads, and the lock may have been held at the fork.
    global _watchdog
    _watchdog = _Watchdog()


os.register_at_fork(after_in_child=_new_watchdog_in_child)


class InsistentTimerDeathPenalty(TimerDeathPenalty):
    """RQ's timer penalty, raised again every ``TIMEOUT_REPEAT_SECONDS`` until the job ends. Raised into
    the job's thread wherever it is, a timeout can land in code that swallows exceptions (SQLAlchemy's
    pool logs and drops what a connection's reset raises): raised once, the job would then run on with
    no limit, holding one of the worker's threads. Never raised once the job has ended. The process's
    one ``_Watchdog`` thread keeps the time, not a timer thread of the job's own."""

    def __init__(self, timeout: Any, exception: type[BaseException] = JobTimeoutException, **kwargs: Any):
        super().__init__(timeout, exception, **kwargs)
        self._guard = threading.Lock()  # a raise as the job ends must not outlive it
        self._over = False

    def setup_death_penalty(self) -> None:
        if self._timeout > 0:  # RQ's -1: no timeout
            _watchdog.arm(self, self._timeout)

    def handle_death_penalty(self) -> None:
        with self._guard:
            if not self._over:
                super().handle_death_penalty()

    def cancel_death_penalty(self) -> None:
        with self._guard:
            self._over = True
        _watchdog.disarm(self)


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
    - **The worker's state** in Redis reads busy while any of its jobs runs, idle when none does: written
      when the first job starts and when the last one ends, not around every job.
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
        self._running = 0
        # Held while the count of running jobs moves and the state is written: the last job's "idle"
        # cannot land after the next job's "busy".
        self._state_lock = threading.RLock()

    def set_state(self, state: str, pipeline: Any = None) -> None:
        with self._state_lock:
            if state == WorkerStatus.IDLE and self._running:
                state = WorkerStatus.BUSY  # RQ's "idle" before each dequeue, while other jobs run
            super().set_state(state, pipeline)

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
        with self._state_lock:
            self._running += 1
        try:
            execution = self.prepare_execution(job)  # writes "busy" with the job's bookkeeping
            self._pool.submit(self._perform, job, queue, execution)
        except BaseException:
            self._job_left()
            raise

    def _perform(self, job: Any, queue: Any, execution: Any) -> None:
        try:
            self.perform_job(job, queue, execution)  # handles the job's own failures
        except Exception:
            self.log.exception("Worker %s: job %s failed outside the job itself", self.name, job.id)
        finally:
            self._job_left()

    def _job_left(self) -> None:
        try:
            with self._state_lock:
                self._running -= 1
                if not self._running:
                    self.set_state(WorkerStatus.IDLE)
        except Exception:  # Redis away: the next listen writes it
            self._state_written = None
            self.log.warning("Worker %s: could not mark itself idle", self.name, exc_info=True)
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
