"""`escalate jobs failed|requeue`, `escalate worker` and `escalate db upgrade|downgrade|current|prune`.

The main CLI calls ``register(subparsers)``; every command sets ``func``, called with the parsed
arguments and returning the exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.worker import BaseWorker

from worker import jobs, logging_setup
from worker import queue as job_queue
from worker.config import Settings
from worker.rq_workers import EscalateSimpleWorker, EscalateThreadedWorker, EscalateWorker
from worker.store import Store, migrate, retention

THREADS_ENV = "ESCALATE_WORKER_THREADS"
# Four jobs at once: on 2 cores, first judgements 46-47/s a worker instead of 35 with one, re-judgements
# 70 instead of 61 (bench/bench_pipeline.py --threads); the process is busy a whole core by then against a
# local sandbox. Against Zendesk's and Jira's real answer times a job mostly waits, and a worker scales with
# its threads, its HTTP and database pools sized to match (worker.jobs.size_for_threads): with every call
# answered 150 ms late (--latency-ms 150), 5.9 first judgements/s with 4 threads, 11.4 with 8, 18.1 with 16
# (half a core), but 16.9 with 32: the tickets of one outage then queue for their group's turn to carry
# its news to Jira (worker/rollup.py, ``carrying``) and the waits grow past what more threads add.
DEFAULT_WORKER_THREADS = 4
MAX_WORKER_THREADS = 16


def register(subparsers: Any) -> None:
    jobs = subparsers.add_parser("jobs", help="inspect and re-queue background jobs (needs REDIS_URL)")
    jobs_commands = jobs.add_subparsers(dest="jobs_command", required=True, metavar="COMMAND")

    failed = jobs_commands.add_parser("failed", help="list failed jobs with the reason they failed")
    failed.add_argument("--limit", type=int, default=100, help="show at most this many (newest first)")
    failed.add_argument("--json", action="store_true", help="one JSON object per line")
    failed.set_defaults(func=cmd_jobs_failed)

    requeue = jobs_commands.add_parser("requeue", help="put failed jobs back on the queue")
    which = requeue.add_mutually_exclusive_group(required=True)
    which.add_argument("job_ids", nargs="*", default=[], metavar="JOB_ID", help="a job id from `jobs failed`")
    which.add_argument("--all", action="store_true", help="every failed job")
    requeue.set_defaults(func=cmd_jobs_requeue)

    worker = subparsers.add_parser("worker", help="run an RQ worker, with its scheduler, on the job queue")
    worker.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    worker.add_argument(
        "--queue", action="append", metavar="NAME", help="queue to work (default: ESCALATE_QUEUE)"
    )
    worker.add_argument(
        "--fork",
        action="store_true",
        default=os.environ.get("ESCALATE_WORKER_FORK", "").strip().lower() in ("1", "true", "yes", "on"),
        help="run each job in a forked process (RQ's Worker; env ESCALATE_WORKER_FORK=1): isolation at about "
        "a third of the throughput; by default jobs run in the worker process itself (RQ's SimpleWorker)",
    )
    worker.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="run up to N jobs at once, each in a thread of this process (env ESCALATE_WORKER_THREADS, "
        f"default {DEFAULT_WORKER_THREADS}, at most {MAX_WORKER_THREADS}): a job mostly waits for Zendesk, "
        "Jira and the database, and another runs meanwhile; 1 with --fork",
    )
    worker.add_argument(
        "--max-jobs",
        type=int,
        default=None,
        help="exit after this many jobs, for the supervisor to start a fresh process (bounds slow leaks)",
    )
    worker.set_defaults(func=cmd_worker)

    db = subparsers.add_parser("db", help="database schema migrations")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = db_commands.add_parser("upgrade", help="migrate the schema to the latest (or given) revision")
    upgrade.add_argument("revision", nargs="?", default="head")
    upgrade.set_defaults(func=cmd_db_upgrade)
    downgrade = db_commands.add_parser(
        "downgrade", help="migrate the schema back to REVISION ('base': empty)"
    )
    downgrade.add_argument("revision")
    downgrade.set_defaults(func=cmd_db_downgrade)
    current = db_commands.add_parser("current", help="show the schema's revision and the latest one")
    current.set_defaults(func=cmd_db_current)
    prune = db_commands.add_parser(
        "prune",
        help="delete deliveries, assessments and audit entries past their retention window "
        "(RQ's cron runs it daily with `escalate followthrough cron`)",
    )
    for kind, (variable, default) in retention.WINDOWS_ENV.items():
        prune.add_argument(
            f"--{kind}-days",
            type=int,
            default=None,
            metavar="DAYS",
            help=f"keep {kind} this many days, 0 for ever (default: ${variable}, else {default})",
        )
    prune.add_argument("--batch", type=int, default=retention.DEFAULT_BATCH, help="ids per transaction")
    prune.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")
    prune.set_defaults(func=cmd_db_prune)


# -- jobs ---------------------------------------------------------------------------------------


def _queue(settings: Settings) -> Queue | None:
    if settings.redis_url is None:
        print(
            "REDIS_URL is not set: jobs run inline in the web process and there is no job queue.",
            file=sys.stderr,
        )
        return None
    return Queue(settings.queue_name, connection=job_queue.redis_connection(settings.redis_url))


def failure_reason(job: Job) -> str:
    """The reason our job recorded, else the last line of the traceback RQ kept."""
    reason = job.meta.get("failure_reason") if isinstance(job.meta, dict) else None
    if reason:
        return str(reason)
    result = job.latest_result()  # RQ 2+ keeps the traceback with the result (job.exc_info is deprecated)
    trace = ((result.exc_string if result is not None else None) or "").strip()
    return trace.splitlines()[-1] if trace else "(no reason recorded)"


def failed_jobs(queue: Queue, limit: int = 100) -> list[dict[str, Any]]:
    registry = FailedJobRegistry(queue=queue)
    ids = registry.get_job_ids(0, max(limit, 1) - 1, desc=True)
    rows = []
    for job_id, job in zip(ids, Job.fetch_many(ids, connection=queue.connection), strict=True):
        if job is None:
            continue
        ended: datetime | None = job.ended_at
        rows.append(
            {
                "id": job_id,
                "func": job.func_name,
                "failed_at": ended.isoformat(timespec="seconds") if ended else None,
                "description": job.description,
                "reason": failure_reason(job),
            }
        )
    return rows


def cmd_jobs_failed(args: argparse.Namespace) -> int:
    queue = _queue(Settings.from_env())
    if queue is None:
        return 2
    rows = failed_jobs(queue, args.limit)
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    if not rows:
        print("no failed jobs")
        return 0
    for row in rows:
        print(f"{row['id']}  {row['failed_at'] or '-'}  {row['func']}")
        print(f"    {row['description']}")
        print(f"    reason: {row['reason']}")
    return 0


def requeue_jobs(queue: Queue, job_ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """Re-queue failed jobs with a fresh retry budget; returns (requeued, not found)."""
    registry = FailedJobRegistry(queue=queue)
    done, missing = [], []
    for job_id in job_ids:
        try:
            job = Job.fetch(job_id, connection=queue.connection)
        except NoSuchJobError:
            missing.append(job_id)
            continue
        # A person re-queued it after fixing the cause: it gets the normal backoff and rate-limit
        # budget again, and the old reason goes.
        job.retries_left = len(job_queue.TRANSIENT_RETRY_INTERVALS)
        job.number_of_retries = 0
        if job.meta.pop("failure_reason", None) is not None:
            job.save_meta()  # an emptied meta is not written by the requeue's save
        try:
            registry.requeue(job)
        except InvalidJobOperation:
            missing.append(job_id)
            continue
        done.append(job_id)
    return done, missing


def cmd_jobs_requeue(args: argparse.Namespace) -> int:
    queue = _queue(Settings.from_env())
    if queue is None:
        return 2
    ids = FailedJobRegistry(queue=queue).get_job_ids() if args.all else list(args.job_ids)
    done, missing = requeue_jobs(queue, ids)
    for job_id in done:
        print(f"requeued {job_id}")
    for job_id in missing:
        print(f"not a failed job: {job_id}", file=sys.stderr)
    if args.all and not ids:
        print("no failed jobs")
    return 1 if missing else 0


# -- worker -------------------------------------------------------------------------------------


def cmd_worker(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if settings.redis_url is None:
        print(
            "REDIS_URL is not set: jobs run inline in the web process; no worker is needed.", file=sys.stderr
        )
        return 2
    try:
        threads = worker_threads(args.threads, fork=args.fork)
    except ValueError as exc:
        print(f"escalate worker: {exc}", file=sys.stderr)
        return 2
    logging_setup.configure(settings)
    if settings.auto_migrate:
        # Before the worker forks its job processes, and with an engine that is gone before then.
        store = Store.from_url(settings.database_url)
        store.upgrade()
        store.dispose()
    if not args.fork and threads > 1:
        jobs.size_for_threads(threads)  # before anything builds a pool
    # Load the pipeline, the rules, the model and the symptom index once, here: with --fork, RQ forks a
    # process per job and every job would pay about 5 s to load them again (bench/bench_pipeline.py).
    jobs.preload()
    # A plain connection: RQ sets the socket timeouts its blocking dequeue needs.
    connection = Redis.from_url(settings.redis_url)
    names = args.queue or [settings.queue_name]
    # Without a fork per job, a job reuses the process's database pool, HTTP keep-alive connections and
    # in-memory symptom index (about 3x the events per second, bench/bench_pipeline.py). What the fork
    # would isolate is covered elsewhere: RQ's job timeout still applies (SIGALRM in this process), a
    # crashed or killed worker's job is given back by RQ's abandoned-job handling, and --max-jobs bounds
    # leaks.
    queues = [Queue(name, connection=connection) for name in names]
    if args.fork:
        worker: BaseWorker = EscalateWorker(queues, connection=connection)
    elif threads > 1:
        worker = EscalateThreadedWorker(queues, connection=connection, threads=threads)
    else:
        worker = EscalateSimpleWorker(queues, connection=connection)
    # The scheduler runs Retry intervals and rate-limit reschedules; without it they never fire.
    worker.work(burst=args.burst, with_scheduler=True, max_jobs=args.max_jobs)
    return 0


def worker_threads(given: int | None, *, fork: bool = False) -> int:
    """The jobs a worker runs at once: ``--threads``, else ESCALATE_WORKER_THREADS, else the default
    (one with ``--fork``, which runs each job in a process of its own)."""
    if given is None:
        raw = os.environ.get(THREADS_ENV, "").strip()
        try:
            given = int(raw) if raw else None
        except ValueError:
            raise ValueError(f"{THREADS_ENV} must be a whole number, not {raw!r}") from None
    if given is None:
        return 1 if fork else DEFAULT_WORKER_THREADS
    if not 1 <= given <= MAX_WORKER_THREADS:
        raise ValueError(f"threads must be 1 to {MAX_WORKER_THREADS}, not {given}")
    if fork and given > 1:
        raise ValueError(f"--fork runs one job at a time: drop --threads and {THREADS_ENV}")
    return given


# -- db -----------------------------------------------------------------------------------------


def _store() -> Store:
    return Store.from_url(Settings.from_env().database_url)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    store = _store()
    try:
        store.upgrade(args.revision)
        print(f"database at revision {migrate.current_revision(store.engine)}")
    finally:
        store.dispose()
    return 0


def cmd_db_downgrade(args: argparse.Namespace) -> int:
    store = _store()
    try:
        migrate.downgrade(store.engine, args.revision)
        print(f"database at revision {migrate.current_revision(store.engine) or 'base (empty)'}")
    finally:
        store.dispose()
    return 0


def cmd_db_current(args: argparse.Namespace) -> int:
    store = _store()
    try:
        current = migrate.current_revision(store.engine)
    finally:
        store.dispose()
    head = migrate.head_revision()
    print(f"current: {current or 'base (empty)'}")
    print(f"latest:  {head}")
    return 0 if current == head else 1


def cmd_db_prune(args: argparse.Namespace) -> int:
    try:
        windows = retention.Windows.from_env(
            deliveries=args.deliveries_days, assessments=args.assessments_days, audit=args.audit_days
        )
        if args.batch < 1:
            raise ValueError("--batch must be at least 1")
    except ValueError as exc:
        print(f"escalate db prune: {exc}", file=sys.stderr)
        return 2
    store = _store()
    try:
        counts = retention.prune(
            store.engine, windows, now=datetime.now(UTC), batch=args.batch, dry_run=args.dry_run
        )
    finally:
        store.dispose()
    verb = "would delete" if args.dry_run else "deleted"
    for kind in retention.WINDOWS_ENV:
        days = getattr(windows, kind)
        if days == 0:
            print(f"{kind}: kept for ever")
        else:
            print(f"{kind}: {verb} {counts[kind]} older than {days} days")
    return 0
