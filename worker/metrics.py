"""The service's Prometheus metrics and ``GET /metrics``.

Families (all prefixed ``escalate_``):

=====================================  ==========================================================
webhooks_total{source,outcome}         every POST to /webhooks/*: accepted, duplicate, ignored,
webhook_duration_seconds{source}       malformed, unauthorized, too_large, unavailable, error
queue_jobs{queue,state}                jobs queued, started, scheduled, deferred, failed, finished
queue_oldest_job_age_seconds{queue}    how long the next job has waited (0: queue empty)
queue_workers{queue}, queue_up         live RQ workers; whether Redis answered the scrape
jobs_total{kind,outcome}               job runs: processed, skipped, rate_limited, failed,
job_duration_seconds{kind,outcome}     failed_permanent (``failed`` is retried with backoff)
job_failures_total{kind,error}         failures by the error's type (AuthError, TransientError, …)
decisions_total{escalate,destination,  every assessment the rules made
  severity}
connector_calls_total{service,method,  answered calls to Zendesk and Jira (connector/metrics.py)
  status}, connector_call_duration_…
rate_limit_waits_total{service},       429 answers and the Retry-After seconds they asked for
rate_limit_wait_seconds_total{service}
=====================================  ==========================================================

Across processes (see connector/metrics.py): with ``PROMETHEUS_MULTIPROC_DIR`` set, counters and
histograms are written per process and ``/metrics`` adds up the directory (worker/metrics_dir.py); the
queue gauges are not kept anywhere but computed from Redis when scraped, so they are the same whichever
process or machine answers. Without it, everything lives in this process (inline mode, tests).

``ESCALATE_METRICS_TOKEN``, when set, is required as ``Authorization: Bearer …`` on ``/metrics``.
"""

from __future__ import annotations

import functools
import hmac
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, current_app, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from connector import metrics as connector_metrics  # first: sets up multi-process mode when configured
from connector.http.webhook_common import OUTCOME_KEY
from worker import logging_setup
from worker.store import AssessmentRecord

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

TOKEN_ENV = "ESCALATE_METRICS_TOKEN"
_REGISTRY_KEY = "escalate.metrics_registry"

WEBHOOKS = Counter(
    "escalate_webhooks",
    "Webhook deliveries received, by source and what became of them",
    ["source", "outcome"],
)
WEBHOOK_SECONDS = Histogram(
    "escalate_webhook_duration_seconds",
    "Time to answer a webhook (verify, dedupe, enqueue)",
    ["source"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
JOBS = Counter("escalate_jobs", "Job runs by event kind and outcome", ["kind", "outcome"])
JOB_SECONDS = Histogram(
    "escalate_job_duration_seconds",
    "Time one job run took, by event kind and outcome",
    ["kind", "outcome"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
JOB_FAILURES = Counter(
    "escalate_job_failures", "Job runs that raised, by event kind and the error's type", ["kind", "error"]
)
DECISIONS = Counter(
    "escalate_decisions",
    "Assessments made by the rules, by whether they escalate, where to and how severe",
    ["escalate", "destination", "severity"],
)

# Re-exported so one import shows every family.
CONNECTOR_CALLS = connector_metrics.CALLS
RATE_LIMIT_WAITS = connector_metrics.RATE_LIMIT_WAITS


# -- webhooks -----------------------------------------------------------------------------------


def instrument_webhook(source: str, endpoint: WSGIApplication) -> WSGIApplication:
    """Wrap a webhook endpoint (connector/http/webhook_common.py ``WebhookEndpoint``): count what became
    of each delivery (a POST: the endpoint names its outcome; a request that is not a POST is no
    delivery), time the answer, and give the request's log lines the sender's delivery id."""

    def instrumented(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        delivery = environ.get("HTTP_X_ZENDESK_WEBHOOK_INVOCATION_ID") or environ.get(
            "HTTP_X_ATLASSIAN_WEBHOOK_IDENTIFIER"
        )
        token = logging_setup.bind(delivery_id=delivery) if delivery else None
        answered = False
        try:
            # The endpoint answers in one piece (a list), so timing the call times the answer.
            answer = endpoint(environ, start_response)
            answered = True
            return answer
        finally:
            if token is not None:
                logging_setup.unbind(token)
            outcome = environ.get(OUTCOME_KEY, None if answered else "error")
            if outcome is not None:
                WEBHOOKS.labels(source, outcome).inc()
                WEBHOOK_SECONDS.labels(source).observe(time.perf_counter() - started)

    return instrumented


# -- jobs ---------------------------------------------------------------------------------------


def observe_job(execute: Callable[[Mapping[str, Any], Any], Any]) -> Callable[[Mapping[str, Any], Any], Any]:
    """Wrap ``worker.jobs.execute``: count and time each run, and give its log lines the ticket,
    delivery and job ids. Works the same inline and in an RQ work horse."""

    @functools.wraps(execute)
    def run(event: Mapping[str, Any], ctx: Any) -> Any:
        logging_setup.configure(getattr(ctx, "settings", None))  # idempotent; a fresh work horse needs it
        kind = str(event.get("kind") or "unknown") if isinstance(event, Mapping) else "unknown"
        started = time.perf_counter()
        with logging_setup.bound(**_job_fields(event)):
            try:
                outcome = execute(event, ctx)
            except Exception as exc:
                cause = exc.__cause__ if type(exc).__name__ == "PermanentFailure" and exc.__cause__ else exc
                label = "failed_permanent" if type(exc).__name__ == "PermanentFailure" else "failed"
                JOBS.labels(kind, label).inc()
                JOB_SECONDS.labels(kind, label).observe(time.perf_counter() - started)
                JOB_FAILURES.labels(kind, type(cause).__name__).inc()
                _fold_finished_processes()
                raise
        status = str(getattr(outcome, "status", "processed"))
        JOBS.labels(kind, status).inc()
        JOB_SECONDS.labels(kind, status).observe(time.perf_counter() - started)
        _fold_finished_processes()
        return outcome

    return run


def _fold_finished_processes() -> None:
    """Keep the multi-process directory small even where nothing scrapes it (worker/metrics_dir.py)."""
    path = connector_metrics.multiprocess_dir()
    if path is None:
        return
    try:
        from worker.metrics_dir import fold_if_due

        fold_if_due(path)
    except Exception:  # bookkeeping must never fail a job
        log.debug("folding the metrics directory failed", exc_info=True)


def _job_fields(event: Any) -> dict[str, Any]:
    if not isinstance(event, Mapping):
        return {}
    source, delivery = event.get("source"), event.get("delivery_id")
    job_id = None
    try:
        from rq import get_current_job

        job = get_current_job()
        job_id = job.id if job is not None else None
    except Exception:
        job_id = None
    if job_id is None and source and delivery:
        from worker.queue import job_id_for

        job_id = job_id_for(str(source), str(delivery))  # the id the job has (or would have) in RQ
    return {
        "ticket_id": event.get("ticket_id"),
        "issue_key": event.get("issue_key"),
        "delivery_id": delivery,
        "job_id": job_id,
    }


# -- decisions ----------------------------------------------------------------------------------


def count_decision(record: AssessmentRecord) -> None:
    """One decision the rules made, counted once the store has kept it (worker/assess.py)."""
    DECISIONS.labels(
        "true" if record.escalate else "false", record.destination or "none", record.severity or "none"
    ).inc()


# -- the queue, read at scrape time -------------------------------------------------------------


class QueueCollector:
    """Queue depth and age, computed from Redis (or the inline queue) when scraped."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def collect(self) -> Iterable[Metric]:
        jobs = GaugeMetricFamily(
            "escalate_queue_jobs", "Jobs by state, read from Redis when scraped", labels=["queue", "state"]
        )
        age = GaugeMetricFamily(
            "escalate_queue_oldest_job_age_seconds",
            "How long the next queued job has waited (0: nothing queued)",
            labels=["queue"],
        )
        workers = GaugeMetricFamily(
            "escalate_queue_workers", "RQ workers listening on the queue", labels=["queue"]
        )
        up = GaugeMetricFamily(
            "escalate_queue_up", "1 when the queue answered this scrape, else 0", labels=["queue"]
        )
        rq_queue = getattr(self.queue, "rq", None)
        if rq_queue is None:  # inline: the jobs wait in this process
            pending = getattr(self.queue, "_items", ())
            jobs.add_metric(["inline", "queued"], len(pending))
            up.add_metric(["inline"], 1)
            return [jobs, up]
        name = rq_queue.name
        try:
            for state, count in queue_counts(rq_queue).items():
                jobs.add_metric([name, state], count)
            age.add_metric([name], oldest_job_age(rq_queue))
            from rq import Worker

            workers.add_metric([name], Worker.count(queue=rq_queue))
            up.add_metric([name], 1)
            return [jobs, age, workers, up]
        except Exception as exc:
            log.warning("queue metrics unavailable: %s", type(exc).__name__)
            up.add_metric([name], 0)
            return [up]


def queue_counts(rq_queue: Any) -> dict[str, int]:
    """Jobs per state for an RQ queue; read-only (no registry clean-up on a scrape)."""
    from rq.registry import (
        DeferredJobRegistry,
        FailedJobRegistry,
        FinishedJobRegistry,
        ScheduledJobRegistry,
        StartedJobRegistry,
    )

    counts = {"queued": rq_queue.count}
    for state, registry in (
        ("started", StartedJobRegistry),
        ("scheduled", ScheduledJobRegistry),
        ("deferred", DeferredJobRegistry),
        ("failed", FailedJobRegistry),
        ("finished", FinishedJobRegistry),
    ):
        counts[state] = registry(queue=rq_queue).get_job_count(cleanup=False)
    return counts


def oldest_job_age(rq_queue: Any, now: datetime | None = None) -> float:
    """Seconds since the job at the head of the queue was enqueued."""
    for job_id in rq_queue.get_job_ids(0, 5):  # the head may have been deleted meanwhile
        job = rq_queue.fetch_job(job_id)
        if job is not None and job.enqueued_at is not None:
            enqueued = job.enqueued_at if job.enqueued_at.tzinfo else job.enqueued_at.replace(tzinfo=UTC)
            return max(0.0, ((now or datetime.now(UTC)) - enqueued).total_seconds())
    return 0.0


# -- the registry and the endpoint --------------------------------------------------------------


class _InProcess:
    """The default registry (this process's metrics), as one collector among others."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def build_registry(queue: Any = None) -> CollectorRegistry:
    """What ``/metrics`` shows: this process's metrics, or the multi-process directory's, plus the queue."""
    registry = CollectorRegistry(auto_describe=False)
    path = connector_metrics.multiprocess_dir()
    if path is not None:
        from worker.metrics_dir import DirectoryCollector

        registry.register(DirectoryCollector(path))
    else:
        registry.register(_InProcess())
    if queue is not None:
        registry.register(QueueCollector(queue))
    return registry


def authorized(header: str | None, token: str | None) -> bool:
    if not token:
        return True
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def metrics_view() -> Response:
    if not authorized(request.headers.get("Authorization"), os.environ.get(TOKEN_ENV)):
        return Response("metrics need a bearer token\n", status=401, headers={"WWW-Authenticate": "Bearer"})
    registry = current_app.extensions[_REGISTRY_KEY]
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def init_app(app: Flask, queue: Any = None) -> None:
    """``GET /metrics`` and the webhook counting, on an app from ``worker.app.create_app``."""
    app.extensions[_REGISTRY_KEY] = build_registry(queue)
    app.add_url_rule("/metrics", "metrics", metrics_view)
