"""`escalate worker --threads N` (worker/rq_workers.EscalateThreadedWorker): up to N jobs at once in the
worker's process, each through RQ's own bookkeeping; timeouts in the job's thread; a warm shutdown that
lets the running jobs end. The whole pipeline under threads is covered by the killed-worker test
(tests/test_reliability_worker_killed.py) and bench/bench_pipeline.py --threads."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue, Worker, get_current_job
from rq.job import JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.timeouts import JobTimeoutException

from tests.test_e2e_harness import WorkerProcess
from worker import cli_jobs, jobs, rq_workers
from worker.rq_workers import EscalateThreadedWorker

ROOT = Path(__file__).resolve().parent.parent


# -- job functions (RQ imports them by name) ----------------------------------------------------------


def meet(redis_url: str, key: str, parties: int, patience: float) -> bool:
    """Arrive at a barrier and wait for ``parties`` jobs to arrive: True only if they ran at once."""
    client = Redis.from_url(redis_url)
    client.incr(key)
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        if int(client.get(key) or 0) >= parties:
            return True
        time.sleep(0.02)
    return False


def linger(seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # Python bytecode, which a timer's exception can interrupt
        time.sleep(0.01)
    return "done"


def fail() -> None:
    raise RuntimeError("this job fails on purpose")


def shrug_off_a_timeout(seconds: float) -> str:
    """Swallows the first timeout, as code it lands in may (SQLAlchemy's pool logs and drops what a
    connection's reset raises), and goes on."""
    with contextlib.suppress(JobTimeoutException):
        linger(seconds)
    return linger(seconds)


def worker_state_after(redis_url: str, seconds: float) -> str:
    """The state the running worker's key holds once this job has lingered ``seconds``."""
    linger(seconds)
    worker = get_current_job().worker_name
    return Redis.from_url(redis_url).hget(f"rq:worker:{worker}", "state").decode()


def timer_threads() -> int:
    """Timer threads alive while this job runs (RQ's timer penalty starts one per job)."""
    return sum(isinstance(thread, threading.Timer) for thread in threading.enumerate())


# -- in the test's process ----------------------------------------------------------------------------


def queue_of(redis_url: str) -> Queue:
    return Queue("threads", connection=Redis.from_url(redis_url))


def test_jobs_run_at_once_up_to_the_thread_count(redis_url):
    queue = queue_of(redis_url)
    together = [queue.enqueue(meet, redis_url, "three", 3, 10.0) for _ in range(3)]
    EscalateThreadedWorker([queue], connection=queue.connection, threads=3).work(burst=True)
    assert [job.return_value(refresh=True) for job in together] == [True, True, True]
    # Two threads cannot hold three jobs at once: the third arrives after the first two gave up.
    apart = [queue.enqueue(meet, redis_url, "apart", 3, 1.0) for _ in range(3)]
    EscalateThreadedWorker([queue], connection=queue.connection, threads=2).work(burst=True)
    assert [job.return_value(refresh=True) for job in apart] == [False, False, True]


def test_results_failures_and_registries_are_rqs(redis_url):
    queue = queue_of(redis_url)
    good = [queue.enqueue(linger, 0.2) for _ in range(4)]
    bad = queue.enqueue(fail)
    worker = EscalateThreadedWorker([queue], connection=queue.connection, threads=3)
    worker.work(burst=True)  # returns once the running jobs have ended

    assert [job.get_status(refresh=True) for job in good] == [JobStatus.FINISHED] * 4
    assert [job.return_value() for job in good] == ["done"] * 4
    assert bad.get_status(refresh=True) == JobStatus.FAILED
    assert "this job fails on purpose" in bad.latest_result().exc_string
    assert FailedJobRegistry(queue=queue).get_job_ids() == [bad.id]
    assert StartedJobRegistry(queue=queue).get_job_ids() == []
    assert worker.executions == {}
    worker.refresh()  # the counts as kept in Redis
    assert worker.successful_job_count == 4 and worker.failed_job_count == 1


def test_a_job_past_its_timeout_fails_in_its_own_thread_and_the_others_finish(redis_url):
    queue = queue_of(redis_url)
    slow = queue.enqueue(linger, 30, job_timeout=1)
    quick = queue.enqueue(linger, 0.1)
    started = time.monotonic()
    EscalateThreadedWorker([queue], connection=queue.connection, threads=2).work(burst=True)
    assert time.monotonic() - started < 20  # the timeout ended it, not its 30 s
    assert slow.get_status(refresh=True) == JobStatus.FAILED
    assert "JobTimeoutException" in slow.latest_result().exc_string
    assert quick.get_status(refresh=True) == JobStatus.FINISHED


def test_a_job_that_swallows_its_timeout_is_timed_out_again(redis_url, monkeypatch):
    monkeypatch.setattr(rq_workers, "TIMEOUT_REPEAT_SECONDS", 0.5)
    queue = queue_of(redis_url)
    stubborn = queue.enqueue(shrug_off_a_timeout, 30, job_timeout=1)
    quick = [queue.enqueue(linger, 0.1) for _ in range(3)]
    started = time.monotonic()
    EscalateThreadedWorker([queue], connection=queue.connection, threads=2).work(burst=True)
    assert time.monotonic() - started < 20  # raised again half a second on, not after 60 s
    assert stubborn.get_status(refresh=True) == JobStatus.FAILED
    assert "JobTimeoutException" in stubborn.latest_result().exc_string
    # The thread it held runs the next jobs, and no repeat reaches them once it has ended.
    time.sleep(1.5)
    assert [job.get_status(refresh=True) for job in quick] == [JobStatus.FINISHED] * 3


def test_the_state_reads_busy_while_any_job_runs_and_idle_once_none_does(redis_url):
    queue = queue_of(redis_url)
    long = queue.enqueue(worker_state_after, redis_url, 1.0)
    quick = [queue.enqueue(linger, 0.05) for _ in range(3)]
    worker = EscalateThreadedWorker([queue], connection=queue.connection, threads=2)
    worker.work(burst=True)
    assert [job.get_status(refresh=True) for job in quick] == [JobStatus.FINISHED] * 3
    # The main thread went back to the queue after the quick jobs and found it empty: RQ's "idle" then
    # would be wrong while the long job runs.
    assert long.return_value(refresh=True) == "busy"
    assert queue.connection.hget(worker.key, "state") == b"idle"  # the last job's end


def test_job_timeouts_are_kept_by_one_thread_not_a_timer_a_job(redis_url):
    queue = queue_of(redis_url)
    jobs_ = [queue.enqueue(timer_threads, job_timeout=60) for _ in range(6)]
    EscalateThreadedWorker([queue], connection=queue.connection, threads=2).work(burst=True)
    assert [job.return_value(refresh=True) for job in jobs_] == [0] * 6
    watchers = [thread for thread in threading.enumerate() if thread.name == "escalate-job-timeouts"]
    assert len(watchers) == 1


def test_the_first_jobs_share_one_context_with_a_pool_sized_for_them(monkeypatch, redis_url):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    monkeypatch.setattr(jobs, "_context", None)
    monkeypatch.setattr(jobs, "_threads", 1)
    jobs.size_for_threads(6)
    start = threading.Barrier(6)
    seen = []

    def first_job() -> None:
        start.wait()
        seen.append(jobs.worker_context())

    threads = [threading.Thread(target=first_job) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len({id(context) for context in seen}) == 1
        assert seen[0].store.engine.pool.size() == 12  # a pinned and a locking connection each
    finally:
        seen[0].store.dispose()
        jobs._context = None


# -- the command ----------------------------------------------------------------------------------


def run_cli(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser()
    cli_jobs.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["worker", "--threads", "0"], None, "threads must be 1 to 16, not 0"),
        (["worker", "--threads", "17"], None, "threads must be 1 to 16, not 17"),
        (["worker"], "many", "ESCALATE_WORKER_THREADS must be a whole number"),
        (["worker", "--fork", "--threads", "2"], None, "--fork runs one job at a time"),
    ],
)
def test_the_worker_refuses_a_thread_count_it_cannot_run(monkeypatch, capsys, redis_url, argv, env, message):
    monkeypatch.setenv("REDIS_URL", redis_url)
    if env is not None:
        monkeypatch.setenv("ESCALATE_WORKER_THREADS", env)
    assert run_cli(argv) == 2
    assert message in capsys.readouterr().err


def worker_env(redis_url: str, queue: Queue, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'w.sqlite3'}",
        "ESCALATE_QUEUE": queue.name,
        "ESCALATE_WORKER_THREADS": "2",
        "PYTHONPATH": str(ROOT),
    }


def wait_started(queue: Queue, count: int) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(StartedJobRegistry(queue=queue).get_job_ids()) < count:
        time.sleep(0.05)


@pytest.mark.slow
def test_a_warm_shutdown_lets_the_running_jobs_end(redis_url, tmp_path):
    queue = queue_of(redis_url)
    worker = WorkerProcess(worker_env(redis_url, queue, tmp_path), burst=False, log=tmp_path / "worker.log")
    try:
        running = [queue.enqueue(linger, 3) for _ in range(2)]
        waiting = queue.enqueue(linger, 0.1)
        wait_started(queue, 2)
        assert sorted(StartedJobRegistry(queue=queue).get_job_ids()) == sorted(j.id for j in running)
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
    finally:
        worker.stop()
    assert [job.get_status(refresh=True) for job in running] == [JobStatus.FINISHED] * 2, worker.output()
    # Taken by no thread, the third job is still queued for the next worker.
    assert waiting.get_status(refresh=True) == JobStatus.QUEUED
    assert StartedJobRegistry(queue=queue).get_job_ids() == []


@pytest.mark.slow
def test_a_cold_shutdown_ends_the_worker_at_once_and_leaves_its_jobs_to_rq(redis_url, tmp_path):
    queue = queue_of(redis_url)
    worker = WorkerProcess(worker_env(redis_url, queue, tmp_path), burst=False, log=tmp_path / "worker.log")
    try:
        long = queue.enqueue(linger, 60)
        wait_started(queue, 1)
        worker.process.send_signal(signal.SIGTERM)  # warm: waits for the job
        time.sleep(1.5)  # RQ ignores a second signal within a second of the first
        worker.process.send_signal(signal.SIGTERM)  # cold
        assert worker.wait(timeout=20) == 0
    finally:
        worker.stop()
    output = worker.output()
    assert "cold shut down" in output, output
    # The worker unregistered; its job is left as a killed worker's is, for RQ to give back.
    assert Worker.all(queue=queue) == [], output
    assert long.get_status(refresh=True) == JobStatus.STARTED
    assert StartedJobRegistry(queue=queue).get_job_ids() == [long.id]
