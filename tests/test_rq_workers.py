"""`escalate worker`'s RQ classes: fewer heartbeats per job, never a shorter life for the worker's key."""

from __future__ import annotations

from redis import Redis
from rq import Queue, SimpleWorker

from worker.rq_workers import EscalateSimpleWorker


def _worker(url: str) -> EscalateSimpleWorker:
    connection = Redis.from_url(url)
    worker = EscalateSimpleWorker([Queue("hb", connection=connection)], connection=connection)
    worker.register_birth()
    return worker


def _beat(worker: EscalateSimpleWorker) -> bytes | None:
    return worker.connection.hget(worker.key, "last_heartbeat")


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


def test_after_a_shorter_pipelined_heartbeat_the_next_one_goes_out(redis_url):
    worker = _worker(redis_url)
    worker.heartbeat()
    with worker.connection.pipeline() as pipeline:
        worker.heartbeat(timeout=30, pipeline=pipeline)  # as RQ does with a job's timeout
        pipeline.execute()
    assert worker.connection.ttl(worker.key) <= 30
    worker.heartbeat()
    assert worker.connection.ttl(worker.key) > worker.worker_ttl


def _expires(connection: Redis) -> int:
    return int(connection.info("commandstats").get("cmdstat_expire", {}).get("calls", 0))


def test_the_worker_runs_every_job_with_fewer_expires_than_rqs_own(own_redis):
    connection = Redis.from_url(own_redis.url)
    counts = {}
    for kind in (SimpleWorker, EscalateSimpleWorker):
        queue = Queue(f"count-{kind.__name__}", connection=connection)
        jobs = [queue.enqueue(len, "x" * n) for n in range(20)]
        connection.config_resetstat()
        kind([queue], connection=connection).work(burst=True, with_scheduler=False)
        counts[kind] = _expires(connection)
        assert [job.return_value(refresh=True) for job in jobs] == list(range(20))
    assert counts[EscalateSimpleWorker] <= counts[SimpleWorker] - 2 * 20
