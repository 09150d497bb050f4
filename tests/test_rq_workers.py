"""`escalate worker`'s RQ classes: fewer Redis round trips per job, the same outcome in Redis as RQ's own."""

from __future__ import annotations

import time

import pytest
from redis import Redis
from redis.connection import Connection
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested
from rq.job import JobStatus
from rq.registry import FailedJobRegistry
from rq.suspension import resume, suspend

from tests.test_threaded_worker import linger, shrug_off_a_timeout
from worker import rq_workers
from worker.rq_workers import EscalateSimpleWorker


class CountingConnection(Connection):
    """A redis-py connection that counts what it sends: one call per command or pipeline, a round trip."""

    sent = 0

    def send_packed_command(self, command, check_health=True):  # type: ignore[no-untyped-def]
        CountingConnection.sent += 1
        super().send_packed_command(command, check_health)


def _worker(url: str) -> EscalateSimpleWorker:
    connection = Redis.from_url(url)
    worker = EscalateSimpleWorker([Queue("hb", connection=connection)], connection=connection)
    worker.register_birth()
    return worker


def _beat(worker: EscalateSimpleWorker) -> bytes | None:
    return worker.connection.hget(worker.key, "last_heartbeat")


def _calls(connection: Redis, command: str) -> int:
    return int(connection.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def test_a_heartbeat_that_moves_the_expiry_by_under_a_second_is_skipped(redis_url):
    worker = _worker(redis_url)
    worker.heartbeat()
    first = _beat(worker)
    assert first is not None and worker.connection.ttl(worker.key) > worker.worker_ttl
    worker.connection.hset(worker.key, "last_heartbeat", "marker")
    worker.heartbeat()
    assert _beat(worker) == b"marker"  # skipped: the key lives on as long
    worker.heartbeat(timeout=worker.worker_ttl + 600)
    assert _beat(worker) != b"marker"  # a later expiry goes out
    assert worker.connection.ttl(worker.key) > worker.worker_ttl + 500


def test_a_jobs_shorter_pipelined_heartbeat_keeps_the_longer_life_and_the_next_listen_sends_none(own_redis):
    worker = _worker(own_redis.url)
    connection = worker.connection
    worker.heartbeat()
    with connection.pipeline() as pipeline:
        worker.heartbeat(timeout=30, pipeline=pipeline)  # as RQ does with a job's heartbeat TTL
        pipeline.execute()
    assert connection.ttl(worker.key) > worker.worker_ttl  # not cut to the job's 30 s
    connection.config_resetstat()
    worker.heartbeat()  # the listen after the job
    assert _calls(connection, "expire") == 0
    with connection.pipeline() as pipeline:  # a job's heartbeat asking for more than the key has
        worker.heartbeat(timeout=worker.worker_ttl + 600, pipeline=pipeline)
        pipeline.execute()
    assert connection.ttl(worker.key) > worker.worker_ttl + 500


def test_a_state_the_key_holds_is_not_written_again(own_redis):
    worker = _worker(own_redis.url)
    connection = worker.connection
    connection.config_resetstat()
    worker.set_state("idle")
    worker.set_state("idle")
    assert _calls(connection, "hset") == 1
    assert worker.get_state() == "idle" and connection.hget(worker.key, "state") == b"idle"
    with connection.pipeline() as pipeline:  # as RQ marks the worker busy with a job's bookkeeping
        worker.set_state("busy", pipeline=pipeline)
        pipeline.execute()
    worker.set_state("idle")
    assert connection.hget(worker.key, "state") == b"idle"
    assert _calls(connection, "hset") == 3


def test_a_suspension_stops_the_worker_within_the_check_interval(redis_url, monkeypatch):
    monkeypatch.setattr(rq_workers, "SUSPENSION_CHECK_SECONDS", 0.2)
    worker = _worker(redis_url)
    worker.check_for_suspension(burst=True)  # not suspended: goes on
    suspend(worker.connection)
    try:
        worker.check_for_suspension(burst=True)  # checked a moment ago: not looked up again yet
        worker._suspension_checked_at -= 0.2  # the interval has passed
        with pytest.raises(StopRequested):
            worker.check_for_suspension(burst=True)
    finally:
        resume(worker.connection)


def test_a_suspended_worker_takes_no_job(redis_url):
    connection = Redis.from_url(redis_url)
    queue = Queue("suspended", connection=connection)
    queue.empty()
    job = queue.enqueue(len, "abc")
    suspend(connection)
    try:
        assert EscalateSimpleWorker([queue], connection=connection).work(burst=True) is False
        assert job.get_status(refresh=True) == "queued"
    finally:
        resume(connection)
        queue.empty()


def test_the_worker_runs_every_job_in_fewer_round_trips_than_rqs_own(own_redis):
    connection = Redis.from_url(own_redis.url, connection_class=CountingConnection)
    counts = {}
    for kind in (SimpleWorker, EscalateSimpleWorker):
        queue = Queue(f"count-{kind.__name__}", connection=connection)
        jobs = [queue.enqueue(len, "x" * n) for n in range(20)]
        connection.config_resetstat()
        CountingConnection.sent = 0
        kind([queue], connection=connection).work(burst=True, with_scheduler=False)
        counts[kind] = CountingConnection.sent
        assert [job.return_value(refresh=True) for job in jobs] == list(range(20))
        for job in jobs:  # what RQ keeps of a finished job is all there
            job.refresh()
            assert job.get_status() == "finished"
            assert job.started_at is not None and job.ended_at is not None and job.ended_at >= job.started_at
            assert job.last_heartbeat is not None and job.last_heartbeat >= job.started_at
        assert len(queue.finished_job_registry) == 20
    # RQ's own: about twenty a job (20.1 over 200 jobs); these: about eight (8.1). Over these 20 jobs,
    # the worker's start included: 433 against 183 (203 when each job's heartbeat cut the key's life).
    assert counts[EscalateSimpleWorker] <= counts[SimpleWorker] - 12 * 20


def test_a_failing_job_is_kept_with_its_end_and_reason(own_redis):
    connection = Redis.from_url(own_redis.url)
    queue = Queue("failing", connection=connection)
    job = queue.enqueue("operator.truediv", 1, 0)
    EscalateSimpleWorker([queue], connection=connection).work(burst=True, with_scheduler=False)
    job.refresh()
    assert job.get_status() == "failed"
    assert job.id in FailedJobRegistry(queue=queue)
    assert job.ended_at is not None and job.last_heartbeat == job.ended_at
    assert "ZeroDivisionError" in (job.latest_result().exc_string or "")


def test_a_job_that_swallows_its_timeout_is_timed_out_again(redis_url, monkeypatch):
    """SIGALRM's penalty, as the threads' timer: raised again until the job ends, and not after."""
    monkeypatch.setattr(rq_workers, "TIMEOUT_REPEAT_SECONDS", 0.5)
    connection = Redis.from_url(redis_url)
    queue = Queue("alarm", connection=connection)
    stubborn = queue.enqueue(shrug_off_a_timeout, 30, job_timeout=1)
    after = queue.enqueue(linger, 1.5)  # longer than a repeat: none may reach it
    started = time.monotonic()
    EscalateSimpleWorker([queue], connection=connection).work(burst=True)
    assert time.monotonic() - started < 20  # raised again half a second on, not after 60 s
    assert stubborn.get_status(refresh=True) == JobStatus.FAILED
    assert "JobTimeoutException" in stubborn.latest_result().exc_string
    assert after.get_status(refresh=True) == JobStatus.FINISHED
