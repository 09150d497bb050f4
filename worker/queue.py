"""Where the work goes: an RQ queue on Redis, or, with REDIS_URL unset, a thread in this process.

Both take the same event dict and run the same job body (worker.jobs.execute) with the same policy:
transient errors back off and retry, a rate limit waits for its retry-after (rescheduled, never a
sleep), permanent errors fail at once with their reason.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from redis import Redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry as RedisRetry
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError
from rq.job import Job
from rq.utils import utcformat

from connector.http.events import IntakeUnavailable

if TYPE_CHECKING:
    from worker.jobs import JobContext

log = logging.getLogger(__name__)

JOB_FUNC = "worker.jobs.process_event"
# Backoff for transient errors, in seconds: five retries over about 22 minutes.
TRANSIENT_RETRY_INTERVALS = (10, 30, 60, 300, 900)
# A job runs well inside RQ's default 180 s; a stuck call to Zendesk or Jira should not hold a worker.
JOB_TIMEOUT = 300
RESULT_TTL = 24 * 3600
# Failed jobs stay visible (and re-queueable) for two weeks.
FAILURE_TTL = 14 * 24 * 3600
RETRY_AFTER_SECONDS = 10

REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError)
_JOB_ID_SAFE = re.compile(r"[A-Za-z0-9_-]{1,100}")


class QueueUnavailable(IntakeUnavailable):
    """Redis (or, inline, the database) cannot take the job: the webhook answers 503 + Retry-After."""

    def __init__(self, message: str = "queue unavailable", retry_after: int = RETRY_AFTER_SECONDS) -> None:
        super().__init__(message, retry_after)


def job_id_for(source: str, delivery_id: str) -> str:
    """The RQ job id for a delivery: named after it, and the same for every retry of it.

    RQ allows only letters, digits, '_' and '-'; other ids are hashed (prefixed 'h' so a hashed id
    never collides with a sender's literal one of the same shape).
    """
    if _JOB_ID_SAFE.fullmatch(delivery_id):
        return f"{source}-{delivery_id}"
    return f"{source}-h{hashlib.sha256(delivery_id.encode('utf-8')).hexdigest()[:40]}"


def redis_connection(url: str) -> Redis:
    """A Redis client for the web process: fails fast, so a webhook answers 503 well within
    Zendesk's ~12 s instead of hanging (the worker gets RQ's own timeouts)."""
    return Redis.from_url(
        url,
        socket_connect_timeout=2,
        socket_timeout=3,
        retry=RedisRetry(ExponentialBackoff(cap=0.5, base=0.1), 1),
        health_check_interval=30,
    )


class RedisQueue:
    def __init__(self, connection: Redis, name: str) -> None:
        self.connection = connection
        self.rq = Queue(name, connection=connection)

    @classmethod
    def from_url(cls, url: str, name: str) -> RedisQueue:
        return cls(redis_connection(url), name)

    @property
    def name(self) -> str:
        return self.rq.name

    def build_job(self, event: dict[str, Any], job_id: str, description: str) -> Job:
        """The RQ job for an event, with the service's retry, timeout and TTL policy; not in Redis yet.

        ``submit`` enqueues it through RQ; the webhook intake writes it together with its dedupe mark
        in one script (worker/intake.py). Either way the policy is this one.
        """
        return self.rq.create_job(
            JOB_FUNC,
            args=(event,),
            job_id=job_id,
            description=description,
            retry=Retry(max=len(TRANSIENT_RETRY_INTERVALS), interval=list(TRANSIENT_RETRY_INTERVALS)),
            timeout=JOB_TIMEOUT,
            result_ttl=RESULT_TTL,
            failure_ttl=FAILURE_TTL,
        )

    @functools.cached_property
    def _template(self) -> tuple[Job, dict[str, Any]]:
        """``queued_fields``' template: one job built through RQ with the policy as it stands at the first
        webhook, and the hash ``Job.save`` would write for it (None values are left out, as there). One
        value, so a concurrent request never sees the job without its fields."""
        job = self.build_job({}, "template", "")
        return job, {k: v for k, v in job.to_dict().items() if v is not None}

    def queued_fields(self, event: dict[str, Any], description: str) -> list[Any]:
        """The hash RQ's ``Job.save`` would write for ``build_job(event, …)`` queued now, flattened (field,
        value, field, value, …) for the intake script's HSET, so an RQ worker reads the job as if RQ had
        enqueued it.

        What RQ would store differs from job to job only in the call's data, the description and the
        moments, so one job built through RQ is the template for the rest: building a job and its
        dict through RQ each time was a tenth of a webhook's CPU (RQ's serializer lookup alone is a
        Protocol isinstance check). tests/test_queue_redis.py compares the result with RQ's own
        enqueue field by field, which catches a field a new RQ adds or renames.
        """
        template, template_fields = self._template
        now = utcformat(datetime.now(UTC))
        call = (template.func_name, None, (event,), {})
        fields = {
            **template_fields,
            "created_at": now,
            "enqueued_at": now,
            "description": description,
            "data": zlib.compress(template.serializer.dumps(call)),
        }
        return [item for pair in fields.items() for item in pair]

    def submit(self, event: dict[str, Any], job_id: str, description: str) -> bool:
        """Enqueue the job; False when a job with this id already exists (a duplicate delivery).

        ``unique=True`` is RQ's atomic check-and-enqueue (one Lua script), so 20 concurrent copies
        of a delivery make one job. Raises QueueUnavailable when Redis cannot be reached.
        """
        try:
            self.rq.enqueue_job(self.build_job(event, job_id, description), unique=True)
        except DuplicateJobError:
            return False
        except REDIS_ERRORS as exc:
            raise QueueUnavailable(f"redis unavailable: {exc}") from exc
        return True

    def ping(self) -> None:
        self.connection.ping()


@dataclass
class _Pending:
    event: dict[str, Any]
    job_id: str
    failures: int = 0
    reschedules: int = 0


class InlineQueue:
    """The embedded default: one background thread per process runs the jobs, in order.

    A thread rather than running inside the request: the job calls Zendesk and Jira, which can take
    longer than the ~12 s Zendesk waits for an answer, and a slow answer makes Zendesk retry a
    delivery we already have. The cost is that work in flight is lost if the process dies; the
    delivery row stays 'received' or 'processing' in the store, visible. Use Redis in production.
    """

    def __init__(self, context: Callable[[], JobContext]) -> None:
        self._context = context
        self._items: list[_Pending] = []
        self._cond = threading.Condition()
        self._busy = 0  # submitted and not finished, including those waiting on a timer
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, event: dict[str, Any], job_id: str, description: str) -> bool:
        self._put(_Pending(event, job_id), new=True)
        return True

    def ping(self) -> None:
        """Nothing to reach: the queue is this process."""

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every submitted job has finished (tests, shutdown); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._busy == 0, timeout)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _put(self, item: _Pending, *, new: bool = False) -> None:
        with self._cond:
            if self._closed:
                raise QueueUnavailable("inline queue closed")
            if new:
                self._busy += 1
            self._items.append(item)
            # Started on first use, so a process that forks (gunicorn) starts its own thread.
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="escalate-inline-jobs", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _done(self) -> None:
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()

    def _later(self, delay: float, item: _Pending) -> None:
        timer = threading.Timer(delay, self._resubmit, (item,))
        timer.daemon = True
        timer.start()

    def _resubmit(self, item: _Pending) -> None:
        try:
            self._put(item)
        except QueueUnavailable:
            # Closed while the job waited (shutdown): its delivery stays visible in the store.
            log.warning("job %s dropped: the inline queue closed before its retry", item.job_id)
            self._done()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._items or self._closed)
                if self._closed and not self._items:
                    return
                item = self._items.pop(0)
            self._run(item)

    def _run(self, item: _Pending) -> None:
        from worker.jobs import MAX_RATE_LIMIT_RESCHEDULES, PermanentFailure, execute

        try:
            outcome = execute(item.event, self._context())
        except PermanentFailure as exc:
            log.error("job %s failed permanently: %s", item.job_id, exc.reason)
            self._done()
            return
        except Exception as exc:
            if item.failures >= len(TRANSIENT_RETRY_INTERVALS):
                log.exception("job %s failed after %d retries", item.job_id, item.failures)
                self._done()
                return
            delay = TRANSIENT_RETRY_INTERVALS[item.failures]
            item.failures += 1
            log.warning("job %s failed (%s); retry %d in %ss", item.job_id, exc, item.failures, delay)
            self._later(delay, item)
            return
        if outcome.retry_after is not None:
            if item.reschedules >= MAX_RATE_LIMIT_RESCHEDULES:
                log.error("job %s still rate limited after %d reschedules", item.job_id, item.reschedules)
                self._done()
                return
            item.reschedules += 1
            self._later(outcome.retry_after, item)
            return
        self._done()
