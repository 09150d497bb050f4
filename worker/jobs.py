"""The job: one inbound event, run through the pipeline once, whatever RQ or Zendesk repeat.

``execute`` is the body shared by RQ and the inline queue: the delivery ledger in the store makes it
idempotent (RQ delivers at least once; a redelivery may arrive after the intake's dedupe mark
expired), and connector errors are sorted into the three ways a job can end badly:

- ``connector.errors.RateLimited``: wait for its ``retry_after`` (a reschedule, never a sleep);
- ``AuthError`` / ``NotFoundError`` / ``PermanentError``: fail now, with the reason, no retries;
- anything else, ``TransientError`` included: raise, and the queue retries with backoff.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rq import Retry, get_current_job
from rq.job import Job
from rq.timeouts import BaseTimeoutException

from connector import errors, http_client
from connector.http.events import InboundEvent
from worker.config import Settings
from worker.metrics import observe_job  # issue 7: job counts, durations, failures; log context
from worker.queue import InlineQueue, RedisQueue
from worker.store import DeliveryStatus, Store

log = logging.getLogger(__name__)

# A rate limit that lasts longer than this many reschedules is an outage: fail and let a person see it.
MAX_RATE_LIMIT_RESCHEDULES = 20
MIN_RESCHEDULE_SECONDS = 1


@dataclass
class JobContext:
    """What the pipeline gets besides the event: settings, the store, and the queue for more work."""

    settings: Settings
    store: Store
    queue: RedisQueue | InlineQueue
    pid: int = field(default_factory=os.getpid)


@dataclass(frozen=True)
class Outcome:
    status: str  # "processed" | "skipped" | "rate_limited"
    retry_after: float | None = None
    result: Any = None

    def as_result(self) -> dict[str, Any]:
        return {"status": self.status, "result": self.result}


class PermanentFailure(Exception):
    """The job cannot succeed by retrying; ``reason`` is what `escalate jobs failed` shows."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def describe(exc: BaseException) -> str:
    """The reason a job failed, as the delivery ledger and `escalate jobs failed` show it. A job's timeout
    is raised inside it wherever it is (RQ's death penalty): landing in a query, it surfaces as the
    database driver's or SQLAlchemy's error while the connection is put back; the timeout then comes
    first, since that is what an operator has to act on."""
    timeout = _timeout_behind(exc)
    if timeout is not None and timeout is not exc:
        return f"{_one(timeout)}; then, while unwinding, {_one(exc)}"
    return _one(exc)


def _one(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _timeout_behind(exc: BaseException) -> BaseException | None:
    """The job timeout among ``exc``, its causes and the exceptions it was raised while handling (both
    links of each: a cause can hide the context the timeout is in), if any."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        if isinstance(current, BaseTimeoutException):
            return current
        seen.add(id(current))
        todo += [e for e in (current.__context__, current.__cause__) if e is not None]
    return None


def classify(exc: BaseException) -> str:
    """'rate_limited', 'permanent' or 'transient' for an exception raised by the pipeline.

    Connector errors say which they are by type (connector/errors.py); anything else (a dropped
    connection below the connector, a database hiccup, a bug) is retried with backoff and ends in
    the failed registry with its traceback if it keeps failing.
    """
    if isinstance(exc, errors.RateLimited):
        return "rate_limited"
    if isinstance(exc, errors.ConnectorError) and not exc.retryable:
        return "permanent"  # AuthError, NotFoundError, PermanentError
    return "transient"


@observe_job  # issue 7: metrics and log context for every run, inline or in RQ
def execute(event: Mapping[str, Any], ctx: JobContext) -> Outcome:
    with ctx.store.pinned():  # one database connection for the job's reads and one-statement writes
        return _execute(event, ctx)


def _execute(event: Mapping[str, Any], ctx: JobContext) -> Outcome:
    try:
        inbound = InboundEvent.from_dict(event)
    except (KeyError, TypeError, ValueError) as exc:
        raise PermanentFailure(f"malformed event: {describe(exc)}") from exc
    source, delivery = inbound.source.value, inbound.delivery_id
    if not ctx.store.start_delivery(source, delivery, kind=inbound.kind.value, subject=inbound.subject):
        log.info("%s delivery %s already processed; skipping", source, delivery)
        return Outcome("skipped")
    try:
        # Imported here: the pipeline pulls in the rules and the connectors, which the receiver and
        # these jobs' own tests do not need.
        from worker.pipeline import handle_event

        result = handle_event(dict(event), ctx)
    except Exception as exc:
        kind = classify(exc)
        if kind == "rate_limited":
            delay = max(float(getattr(exc, "retry_after", 0) or 0), MIN_RESCHEDULE_SECONDS)
            ctx.store.finish_delivery(
                source, delivery, DeliveryStatus.RECEIVED, error=f"rate limited; retry after {delay:g}s"
            )
            return Outcome("rate_limited", retry_after=delay)
        reason = describe(exc)
        ctx.store.finish_delivery(source, delivery, DeliveryStatus.FAILED, error=reason)
        if kind == "permanent":
            raise PermanentFailure(reason) from exc
        raise
    ctx.store.finish_delivery(source, delivery, DeliveryStatus.PROCESSED)
    return Outcome("processed", result=result if _plain(result) else repr(result))


def process_event(event: dict[str, Any]) -> dict[str, Any] | Retry:
    """The RQ job (``worker.jobs.process_event``), enqueued by the intake with RQ's Retry for
    transient errors."""
    job = get_current_job()
    try:
        outcome = execute(event, worker_context())
    except PermanentFailure as exc:
        if job is not None:
            # No retries left: RQ puts the job straight into the failed registry with this traceback.
            job.retries_left = 0
            _note(job, exc.reason)
        raise
    except Exception as exc:
        if job is not None:
            _note(job, describe(exc))
        raise
    if outcome.retry_after is not None:
        seconds = max(math.ceil(outcome.retry_after), MIN_RESCHEDULE_SECONDS)
        if job is not None:
            count = (job.number_of_retries or 0) + 1
            _note(job, f"rate limited {count} time(s); last retry-after {seconds}s")
        # RQ 3 re-schedules a job that returns a Retry (same job id, via the scheduler), and fails
        # it once `max` is reached: the rate-limit wait without a sleep and without a second job.
        return Retry(max=MAX_RATE_LIMIT_RESCHEDULES, interval=seconds)
    return outcome.as_result()


_context: JobContext | None = None
_context_lock = threading.Lock()
_preloaded: Settings | None = None
# Jobs this process runs at once (`escalate worker --threads`): each may hold two database connections
# (its pinned one and a locking transaction's), so the pool is sized for them.
_threads = 1


def size_for_threads(threads: int) -> None:
    """Size what ``worker_context`` builds for ``threads`` concurrent jobs (the database pool, the HTTP
    clients' keep-alive connections); before the first job."""
    global _threads
    _threads = threads
    http_client.keep_connections_per_host(threads)


def _engine_options(url: str) -> dict[str, Any]:
    if _threads <= 1 or url.startswith("sqlite"):
        return {}
    return {"pool_size": max(5, 2 * _threads), "max_overflow": 10}


def preload() -> None:
    """Load, in a forking worker's main process, what every job needs and can inherit across the fork:
    the pipeline's modules, the ruleset and the symptom matcher's model. Opens no connection (database,
    HTTP, Redis): those are made per job process, after the fork, by ``worker_context``.

    RQ's ``Worker`` runs every job in a fresh fork of its main process (RQ docs, "Performance notes":
    preload what jobs import, before the fork). Without this each job imports the pipeline and loads
    the semantic model again, about 6 s per job on a 2-core machine (bench/bench_pipeline.py). Only
    loading happens here, no inference: torch's thread pool must start in the job's process.
    """
    global _preloaded
    import worker.pipeline  # noqa: F401  the rules and both connectors
    from worker.runtime import runtime_for

    settings = Settings.from_env()
    runtime = runtime_for(settings)
    load = getattr(runtime.matcher, "load", None)  # the semantic matcher's model; lexical has none
    if load is not None:
        load()
    # The symptom index too: each job then starts from this copy and reads only what changed. Its
    # database connection is closed again before the fork.
    from worker import symptom_index

    symptom_index.preload(settings.database_url, runtime.matcher)
    _preloaded = settings


def worker_context() -> JobContext:
    """The context of this worker process, built on first use (after RQ's fork, never before it:
    database connections must not be shared across processes)."""
    global _context
    context = _context
    if context is not None and context.pid == os.getpid():
        return context
    with _context_lock:  # a threaded worker's first jobs start together: one context for all
        if _context is None or _context.pid != os.getpid():
            settings = Settings.from_env()
            if settings == _preloaded:
                settings = _preloaded  # the same object: runtime_for finds the rules and model preloaded
            if settings.redis_url is None:
                raise PermanentFailure("REDIS_URL is not set in the worker's environment")
            _context = JobContext(
                settings=settings,
                store=Store.from_url(settings.database_url, **_engine_options(settings.database_url)),
                queue=RedisQueue.from_url(settings.redis_url, settings.queue_name),
            )
        return _context


def _note(job: Job, reason: str) -> None:
    job.meta["failure_reason"] = reason[:2000]
    try:
        job.save_meta()
    except Exception:  # the note is for people; losing it must not change the job's outcome
        log.warning("could not save the failure reason of job %s", job.id, exc_info=True)


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | dict)
