"""The Redis queue end to end: outage and recovery, dedupe marks, the job's retry policy, the CLI."""

from __future__ import annotations

import argparse
import logging
import time
from datetime import UTC, datetime

import psycopg
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus, validate_job_id
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from rq.timeouts import JobTimeoutException
from sqlalchemy.exc import OperationalError

from connector.errors import AuthError, NotFoundError, RateLimited, TransientError
from connector.http.events import AcceptOutcome, EventKind, InboundEvent, Source
from connector.http.zendesk_webhook import TRIGGER_EVENT_TYPE
from tests.conftest_service import as_body, make_settings, service_of, zendesk_headers
from worker import cli_jobs, jobs
from worker import queue as queue_module
from worker.app import build_service, create_app
from worker.intake import MARK_PREFIX, describe_event
from worker.queue import job_id_for
from worker.store import DeliveryStatus

URL = "/webhooks/zendesk"
JOB_ID = "zendesk-8350205582"


def deliver(client, ticket_id: str = "42", invocation_id: str = "8350205582"):
    body = as_body({"type": TRIGGER_EVENT_TYPE, "ticket_id": ticket_id})
    return client.post(URL, data=body, headers=zendesk_headers(body, invocation_id=invocation_id))


@pytest.fixture
def worker_ctx(redis_app, monkeypatch):
    """Jobs run in this process (SimpleWorker) against the app's store and queue."""
    service = service_of(redis_app)
    monkeypatch.setattr(jobs, "_context", service.job_context())
    return service


def run_worker(service, *, with_scheduler: bool = False) -> None:
    rq_queue: Queue = service.queue.rq
    SimpleWorker([rq_queue], connection=rq_queue.connection).work(burst=True, with_scheduler=with_scheduler)


def release_scheduled(rq_queue: Queue) -> None:
    """Move every scheduled job to the queue now, as the scheduler would once its time comes."""
    registry = ScheduledJobRegistry(queue=rq_queue)
    for job_id in registry.get_job_ids():
        registry.remove(job_id)
        rq_queue.enqueue_job(Job.fetch(job_id, connection=rq_queue.connection))


def scheduled_in(rq_queue: Queue, job_id: str) -> float:
    registry = ScheduledJobRegistry(queue=rq_queue)
    assert job_id in registry.get_job_ids()
    return (registry.get_scheduled_time(job_id) - datetime.now(UTC)).total_seconds()


# -- outage --------------------------------------------------------------------------------------


def test_redis_down_answers_503_and_the_retry_is_accepted_once_it_is_back(own_redis, tmp_path, fake_pipeline):
    settings = make_settings(tmp_path, redis_url=own_redis.url)
    service = build_service(settings)
    client = create_app(settings, service=service).test_client()

    own_redis.stop()
    started = time.monotonic()
    response = deliver(client)
    assert response.status_code == 503
    assert time.monotonic() - started < 8  # well inside Zendesk's ~12 s
    assert 0 < int(response.headers["Retry-After"]) < 60  # Zendesk retries 503 only with a short one
    assert client.get("/readyz").status_code == 503

    own_redis.start()
    assert client.get("/readyz").status_code == 200
    retry = deliver(client)  # Zendesk's retry: same invocation id, fresh signature
    assert retry.status_code == 202
    assert service.queue.rq.get_job_ids() == [JOB_ID]
    assert service.queue.connection.exists(MARK_PREFIX + JOB_ID)
    assert deliver(client).status_code == 200
    assert len(service.queue.rq) == 1
    service.store.dispose()


def test_nothing_is_marked_when_the_enqueue_fails(own_redis, tmp_path, fake_pipeline):
    settings = make_settings(tmp_path, redis_url=own_redis.url)
    service = build_service(settings)
    client = create_app(settings, service=service).test_client()
    own_redis.stop()
    assert deliver(client).status_code == 503
    own_redis.start()
    assert not service.queue.connection.exists(MARK_PREFIX + JOB_ID)
    assert service.queue.rq.get_job_ids() == []
    service.store.dispose()


def test_an_enqueue_that_cannot_reach_redis_leaves_no_mark(redis_app, fake_pipeline, monkeypatch):
    service = service_of(redis_app)
    client = redis_app.test_client()

    def down(*args, **kwargs):
        raise RedisConnectionError("Connection reset by peer")

    with monkeypatch.context() as patch:
        patch.setattr(service.intake, "script", down)
        assert deliver(client).status_code == 503
    assert not service.queue.connection.exists(MARK_PREFIX + JOB_ID)
    assert deliver(client).status_code == 202  # the retry is accepted
    assert service.queue.rq.get_job_ids() == [JOB_ID]


def test_the_mark_is_the_scripts_last_write(redis_app, fake_pipeline):
    """A script failing part-way (here: the push, on a queue key of the wrong type) leaves no mark."""
    service = service_of(redis_app)
    redis = service.queue.connection
    redis.set(service.queue.rq.key, "not a list")
    with pytest.raises(ResponseError):
        service.intake.accept(_event("8350205582"))
    assert not redis.exists(MARK_PREFIX + JOB_ID)
    redis.delete(service.queue.rq.key, Job.key_for(JOB_ID))  # Redis is well again; the retry:
    assert service.intake.accept(_event("8350205582")) is AcceptOutcome.ENQUEUED
    assert redis.exists(MARK_PREFIX + JOB_ID) and service.queue.rq.get_job_ids() == [JOB_ID]


def test_an_error_inside_redis_answers_500_logs_it_and_counts_it(redis_app, fake_pipeline, caplog):
    """Not an outage (503) but a failure the sender should retry all the same: 500, with the traceback
    in the log and the outcome counted, and no mark left to turn the retry away."""
    from worker.metrics import WEBHOOKS

    errors = WEBHOOKS.labels("zendesk", "error")
    before = errors._value.get()
    redis = service_of(redis_app).queue.connection
    redis.set(service_of(redis_app).queue.rq.key, "not a list")
    with caplog.at_level(logging.ERROR):
        answer = deliver(redis_app.test_client())
    assert (answer.status_code, answer.get_json()) == (500, {"error": "internal error"})
    failed = [r for r in caplog.records if r.getMessage() == "zendesk webhook failed"]
    assert len(failed) == 1 and failed[0].exc_info[0] is ResponseError
    assert errors._value.get() == before + 1
    assert not redis.exists(MARK_PREFIX + JOB_ID)


def test_the_intake_stores_the_job_as_rq_itself_would(redis_app, fake_pipeline):
    """The intake writes the job hash in its own script; RQ must read it as one of its own (a guard
    for RQ upgrades: a field RQ adds or renames shows up here)."""
    service = service_of(redis_app)
    rq_queue = service.queue.rq
    redis = service.queue.connection
    event = _event("8350205582")
    assert service.intake.accept(event) is AcceptOutcome.ENQUEUED
    ours = redis.hgetall(Job.key_for(JOB_ID))
    ours_ttl = redis.ttl(Job.key_for(JOB_ID))

    twin = service.queue.build_job(event.to_dict(), "twin", describe_event(event))
    rq_queue.enqueue_job(twin, unique=True)
    theirs = redis.hgetall(Job.key_for("twin"))
    assert redis.ttl(Job.key_for("twin")) == ours_ttl
    moments = {b"created_at", b"enqueued_at"}
    assert set(ours) == set(theirs)
    assert {k: v for k, v in ours.items() if k not in moments} == {
        k: v for k, v in theirs.items() if k not in moments
    }
    assert redis.sismember(rq_queue.redis_queues_keys, rq_queue.key)
    assert rq_queue.get_job_ids() == [JOB_ID, "twin"]

    job = rq_queue.fetch_job(JOB_ID)
    assert (job.func_name, job.args, job.origin) == (queue_module.JOB_FUNC, (event.to_dict(),), rq_queue.name)
    assert job.get_status() == JobStatus.QUEUED
    assert job.retries_left == len(queue_module.TRANSIENT_RETRY_INTERVALS)
    assert (job.timeout, job.result_ttl, job.failure_ttl) == (
        queue_module.JOB_TIMEOUT,
        queue_module.RESULT_TTL,
        queue_module.FAILURE_TTL,
    )
    assert abs((datetime.now(UTC) - job.enqueued_at.replace(tzinfo=UTC)).total_seconds()) < 60


def _event(invocation_id: str) -> InboundEvent:
    return InboundEvent(
        source=Source.ZENDESK,
        delivery_id=invocation_id,
        kind=EventKind.EVALUATE_TICKET,
        event_type=TRIGGER_EVENT_TYPE,
        ticket_id=42,
        payload={"type": TRIGGER_EVENT_TYPE, "ticket_id": "42"},
    )


# -- dedupe ----------------------------------------------------------------------------------------


def test_the_mark_outlives_the_job(redis_app, fake_pipeline):
    client = redis_app.test_client()
    service = service_of(redis_app)
    assert deliver(client).status_code == 202
    # The job ran and RQ expired it: only the mark remembers the delivery.
    service.queue.rq.fetch_job(JOB_ID).delete()
    assert deliver(client).status_code == 200
    assert service.queue.rq.get_job_ids() == []


def test_an_existing_job_is_a_duplicate_even_without_its_mark(redis_app, fake_pipeline):
    client = redis_app.test_client()
    service = service_of(redis_app)
    assert deliver(client).status_code == 202
    service.queue.connection.delete(MARK_PREFIX + JOB_ID)
    assert deliver(client).status_code == 200
    assert service.queue.connection.exists(MARK_PREFIX + JOB_ID)  # written again
    assert service.queue.rq.get_job_ids() == [JOB_ID]


def test_job_ids_are_named_after_the_delivery_and_always_valid():
    assert job_id_for("zendesk", "8350205582") == "zendesk-8350205582"
    assert job_id_for("jira", "a1b2_c3-d4") == "jira-a1b2_c3-d4"
    odd = job_id_for("zendesk", "2b24ef10:19d4/4740 93cf")
    assert odd == job_id_for("zendesk", "2b24ef10:19d4/4740 93cf")
    assert odd != job_id_for("zendesk", "2b24ef10:19d4/4740 93cg")
    assert odd.startswith("zendesk-h")
    for job_id in (odd, job_id_for("jira", "x" * 500)):
        validate_job_id(job_id)


# -- the job -----------------------------------------------------------------------------------------


def test_the_worker_runs_the_job_once(redis_app, worker_ctx, fake_pipeline):
    assert deliver(redis_app.test_client()).status_code == 202
    run_worker(worker_ctx)
    assert [call["ticket_id"] for call in fake_pipeline.calls] == [42]
    job = worker_ctx.queue.rq.fetch_job(JOB_ID)
    assert job.get_status() == JobStatus.FINISHED
    assert job.return_value() == {"status": "processed", "result": {"handled": "8350205582"}}
    delivery = worker_ctx.store.get_delivery("zendesk", "8350205582")
    assert delivery.status is DeliveryStatus.PROCESSED

    # RQ delivers at least once: the same event run again does nothing.
    worker_ctx.queue.rq.enqueue_call(queue_module.JOB_FUNC, args=(job.args[0],), job_id="rerun")
    run_worker(worker_ctx)
    assert len(fake_pipeline.calls) == 1
    assert worker_ctx.queue.rq.fetch_job("rerun").return_value()["status"] == "skipped"


def test_transient_errors_are_retried_with_backoff(redis_app, worker_ctx, fake_pipeline):
    fake_pipeline.script = [TransientError("zendesk", "GET /api/v2/tickets/42.json answered 502", status=502)]
    deliver(redis_app.test_client())
    run_worker(worker_ctx)
    rq_queue = worker_ctx.queue.rq
    job = rq_queue.fetch_job(JOB_ID)
    assert job.get_status() == JobStatus.SCHEDULED
    assert job.retries_left == len(queue_module.TRANSIENT_RETRY_INTERVALS) - 1
    assert 5 < scheduled_in(rq_queue, JOB_ID) <= queue_module.TRANSIENT_RETRY_INTERVALS[0]
    assert "502" in job.meta["failure_reason"]
    assert worker_ctx.store.get_delivery("zendesk", "8350205582").status is DeliveryStatus.FAILED

    release_scheduled(rq_queue)
    run_worker(worker_ctx)
    assert rq_queue.fetch_job(JOB_ID).get_status() == JobStatus.FINISHED
    assert len(fake_pipeline.calls) == 2
    assert worker_ctx.store.get_delivery("zendesk", "8350205582").status is DeliveryStatus.PROCESSED


def test_a_rate_limit_reschedules_the_same_job_after_retry_after(redis_app, worker_ctx, fake_pipeline):
    fake_pipeline.script = [
        RateLimited("zendesk", "GET /api/v2/tickets/42.json answered 429", retry_after=29.2)
    ]
    deliver(redis_app.test_client())
    started = time.monotonic()
    run_worker(worker_ctx)
    assert time.monotonic() - started < 10  # rescheduled, not slept for 30 s
    rq_queue = worker_ctx.queue.rq
    job = rq_queue.fetch_job(JOB_ID)
    assert job.get_status() == JobStatus.SCHEDULED
    assert 25 < scheduled_in(rq_queue, JOB_ID) <= 30  # retry-after, rounded up to whole seconds
    assert job.meta["failure_reason"] == "rate limited 1 time(s); last retry-after 30s"
    assert rq_queue.get_job_ids() == []  # no second job: the same one waits
    assert worker_ctx.store.get_delivery("zendesk", "8350205582").status is DeliveryStatus.RECEIVED

    release_scheduled(rq_queue)
    run_worker(worker_ctx)
    assert rq_queue.fetch_job(JOB_ID).get_status() == JobStatus.FINISHED
    assert len(fake_pipeline.calls) == 2


def test_the_scheduler_brings_a_rate_limited_job_back_when_due(redis_app, worker_ctx, fake_pipeline):
    fake_pipeline.script = [RateLimited("jira", "429", retry_after=0.3)]
    deliver(redis_app.test_client())
    run_worker(worker_ctx)
    time.sleep(1.2)
    run_worker(worker_ctx, with_scheduler=True)
    assert worker_ctx.queue.rq.fetch_job(JOB_ID).get_status() == JobStatus.FINISHED
    assert len(fake_pipeline.calls) == 2


def test_rate_limited_too_often_fails_with_the_reason(redis_app, worker_ctx, fake_pipeline, monkeypatch):
    monkeypatch.setattr(jobs, "MAX_RATE_LIMIT_RESCHEDULES", 1)
    fake_pipeline.script = [
        RateLimited("jira", "429", retry_after=0.1),
        RateLimited("jira", "429", retry_after=0.1),
    ]
    deliver(redis_app.test_client())
    run_worker(worker_ctx)
    time.sleep(1.2)
    run_worker(worker_ctx, with_scheduler=True)
    rq_queue = worker_ctx.queue.rq
    assert JOB_ID in FailedJobRegistry(queue=rq_queue).get_job_ids()
    [row] = cli_jobs.failed_jobs(rq_queue)
    assert row["reason"].startswith("rate limited 2 time")


@pytest.mark.parametrize(
    "error",
    [
        AuthError("zendesk", "GET /api/v2/tickets/42.json answered 401", status=401),
        NotFoundError("zendesk", "GET /api/v2/tickets/42.json answered 404", status=404),
    ],
)
def test_permanent_errors_fail_at_once_with_the_reason(redis_app, worker_ctx, fake_pipeline, error):
    fake_pipeline.script = [error]
    deliver(redis_app.test_client())
    run_worker(worker_ctx)
    rq_queue = worker_ctx.queue.rq
    assert FailedJobRegistry(queue=rq_queue).get_job_ids() == [JOB_ID]
    assert ScheduledJobRegistry(queue=rq_queue).get_job_ids() == []
    [row] = cli_jobs.failed_jobs(rq_queue)
    assert row["id"] == JOB_ID
    assert row["func"] == queue_module.JOB_FUNC
    assert row["failed_at"]
    assert row["reason"] == jobs.describe(error)
    assert "ticket 42" in row["description"]
    delivery = worker_ctx.store.get_delivery("zendesk", "8350205582")
    assert delivery.status is DeliveryStatus.FAILED
    assert delivery.error == jobs.describe(error)


def test_exhausted_retries_land_in_the_failed_registry(redis_app, worker_ctx, fake_pipeline, monkeypatch):
    monkeypatch.setattr(queue_module, "TRANSIENT_RETRY_INTERVALS", (0, 0))
    fake_pipeline.script = [TransientError("jira", "timeout")] * 3
    deliver(redis_app.test_client())
    run_worker(worker_ctx)  # interval 0: retried at once, within this burst
    assert len(fake_pipeline.calls) == 3
    [row] = cli_jobs.failed_jobs(worker_ctx.queue.rq)
    assert row["reason"] == "TransientError: jira: timeout"


def _timed_out_inside_a_query() -> Exception:
    """What a job's timeout that lands in a query ends as: the driver's error, raised while the timeout
    was being handled (the connection's rollback), wrapped by SQLAlchemy."""
    try:
        try:
            try:
                raise JobTimeoutException("Task exceeded maximum timeout value (180 seconds)")
            except JobTimeoutException:
                raise psycopg.OperationalError(  # noqa: B904  the chain a rollback gives: context, not cause
                    "sending query failed: another command is already in progress"
                )
        except psycopg.OperationalError as busy:
            raise OperationalError("ROLLBACK", {}, busy) from busy
    except OperationalError as exc:
        return exc


def test_a_job_that_timed_out_inside_a_query_fails_with_the_timeout_first(
    redis_app, worker_ctx, fake_pipeline, monkeypatch
):
    monkeypatch.setattr(queue_module, "TRANSIENT_RETRY_INTERVALS", (0, 0))
    fake_pipeline.script = [_timed_out_inside_a_query() for _ in range(3)]
    deliver(redis_app.test_client())
    run_worker(worker_ctx)
    assert len(fake_pipeline.calls) == 3  # retried like any other transient failure
    [row] = cli_jobs.failed_jobs(worker_ctx.queue.rq)
    reason = row["reason"]
    assert reason.startswith("JobTimeoutException: Task exceeded maximum timeout value (180 seconds); then")
    assert "OperationalError" in reason and "another command is already in progress" in reason
    delivery = worker_ctx.store.get_delivery("zendesk", "8350205582")
    assert delivery.status is DeliveryStatus.FAILED and delivery.error == reason


# -- the CLI -----------------------------------------------------------------------------------------


def _cli(redis_url: str, monkeypatch, argv: list[str]) -> argparse.Namespace:
    monkeypatch.setenv("REDIS_URL", redis_url)
    parser = argparse.ArgumentParser()
    cli_jobs.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_jobs_failed_and_requeue_from_the_cli(
    redis_app, redis_url, worker_ctx, fake_pipeline, monkeypatch, capsys
):
    monkeypatch.setenv("ESCALATE_QUEUE", worker_ctx.queue.name)
    fake_pipeline.script = [AuthError("zendesk", "GET /api/v2/tickets/42.json answered 401", status=401)]
    deliver(redis_app.test_client())
    run_worker(worker_ctx)

    args = _cli(redis_url, monkeypatch, ["jobs", "failed"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert JOB_ID in out
    assert "reason: AuthError: zendesk: GET /api/v2/tickets/42.json answered 401" in out

    args = _cli(redis_url, monkeypatch, ["jobs", "requeue", JOB_ID, "no-such-job"])
    assert args.func(args) == 1  # one of them was not a failed job
    captured = capsys.readouterr()
    assert f"requeued {JOB_ID}" in captured.out
    assert "no-such-job" in captured.err

    run_worker(worker_ctx)  # the cause is fixed (the fake no longer fails)
    assert worker_ctx.queue.rq.fetch_job(JOB_ID).get_status() == JobStatus.FINISHED
    assert worker_ctx.store.get_delivery("zendesk", "8350205582").status is DeliveryStatus.PROCESSED
    args = _cli(redis_url, monkeypatch, ["jobs", "failed"])
    args.func(args)
    assert "no failed jobs" in capsys.readouterr().out


def test_requeue_all_gives_the_jobs_a_fresh_retry_budget(
    redis_app, redis_url, worker_ctx, fake_pipeline, monkeypatch
):
    monkeypatch.setenv("ESCALATE_QUEUE", worker_ctx.queue.name)
    monkeypatch.setattr(queue_module, "TRANSIENT_RETRY_INTERVALS", (0,))
    fake_pipeline.script = [TransientError("jira", "timeout")] * 2
    client = redis_app.test_client()
    deliver(client, invocation_id="1")
    run_worker(worker_ctx)
    assert len(cli_jobs.failed_jobs(worker_ctx.queue.rq)) == 1

    args = _cli(redis_url, monkeypatch, ["jobs", "requeue", "--all"])
    assert args.func(args) == 0
    job = worker_ctx.queue.rq.fetch_job("zendesk-1")
    assert job.retries_left == 1
    assert "failure_reason" not in job.meta
    run_worker(worker_ctx)
    assert job.get_status(refresh=True) == JobStatus.FINISHED


def test_a_failure_without_our_reason_shows_the_last_line_of_rqs_traceback(redis_app, worker_ctx):
    """A job that died before it could note why (RQ kept only its traceback, with its result)."""
    rq_queue: Queue = worker_ctx.queue.rq
    job = rq_queue.enqueue("builtins.int", "not a number", job_id="not-ours")
    run_worker(worker_ctx)
    assert job.get_status(refresh=True) == JobStatus.FAILED and "failure_reason" not in job.meta
    expected = "ValueError: invalid literal for int() with base 10: 'not a number'"
    assert cli_jobs.failure_reason(job) == expected


def test_job_commands_need_redis(monkeypatch, capsys):
    monkeypatch.delenv("REDIS_URL", raising=False)
    parser = argparse.ArgumentParser()
    cli_jobs.register(parser.add_subparsers(dest="command", required=True))
    for argv in (["jobs", "failed"], ["jobs", "requeue", "--all"], ["worker", "--burst"]):
        args = parser.parse_args(argv)
        assert args.func(args) == 2
    assert "REDIS_URL is not set" in capsys.readouterr().err
