"""End-to-end events per second per worker: signed Zendesk webhooks for sandbox tickets, queued on a real
Redis, run by real worker processes through the whole pipeline (fetch the case from the sandbox Zendesk,
judge it, keep the assessment, tell the agent, create and link Jira issues where the rules say so).

    python bench/bench_pipeline.py                               # `escalate worker` (jobs in its process)
    python bench/bench_pipeline.py --worker fork                 # `escalate worker --fork` (a fork per job)
    python bench/bench_pipeline.py --worker simple --events 600  # `rq worker -w SimpleWorker`

Options: --workers N (processes), --database postgresql|sqlite, --mode steady|changed|fresh, --redis-url URL
(default: a private redis-server on a spare port), --events N (measured events), --backlog N (the store
starts with the history of a service that has run for a while: N closed escalations of three tickets each,
ten assessments, deliveries and audit entries per escalation; PostgreSQL only), --latency-ms MS (the sandbox
answers each measured call that much later, as the real services do), --profile FILE (the first
worker under cProfile: where its time goes, not a figure).

What runs where: the sandbox (Zendesk and Jira) in one process, each worker in its own, Redis and
PostgreSQL as servers, this script (webhook intake through the Flask app in-process, then waiting) —
all on the same machine, so the sandbox's CPU is taken from the workers'. The figures are therefore a
floor for a deployment where Zendesk and Jira are remote.

- ``--mode steady`` (default): a warm-up round judges every seeded ticket once (first notes, tags and
  the issues the rules auto-create); the measured events then arrive again for those tickets without
  the tickets changing (repeated triggers, one update's several event-subscription events, the echo of
  our own note): each is answered from the last assessment, for one ticket read.
- ``--mode changed``: each measured event is about a different ticket that was judged once before the
  clock and then changed (its priority set, through Zendesk's API): a full re-judgement, as for a
  customer's reply or an agent's edit; the verdict stays, so no new note.
- ``--mode fresh``: each measured event is about a new ticket (a seeded one's copy with a line of its
  own, so its text is embedded anew; created in the sandbox before the clock starts): first judgement,
  internal note and tags every time, joining its problem's group, and a Jira issue with its remote link
  and ticket link for the critical ones.

Events per second = measured jobs / (last job ended - first job started), from RQ's own timestamps;
per worker = that divided by the number of worker processes. Job time is RQ's started→ended per job.
Worker CPU per event: the workers' CPU time over the measured phase divided by the events; on a shared host
whose cores vary in speed it moves less from run to run than events/s does.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import requests
from _common import (
    ROOT,
    SEEDED_TICKETS,
    WEBHOOK_SECRET,
    CpuMeter,
    SandboxProcess,
    database,
    load_average,
    machine,
    percentile,
    pids_matching,
    print_machine,
    redis_server,
    signed_headers,
    stop_process,
    trigger_body,
)
from rq.job import Job, JobStatus

from worker.app import create_app
from worker.cli_jobs import DEFAULT_WORKER_THREADS
from worker.config import Settings

TARGET_PER_WORKER = 50.0
DONE = {JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED}


# A service's past, in bulk: closed escalations of three tickets each, with the assessments, deliveries
# and audit entries a history that long leaves. Ticket ids "past-<n>" never meet the sandbox's.
BACKLOG_SQL = (
    "INSERT INTO escalations (destination, state, severity, jira_key, created_at, updated_at,"
    " state_changed_at) SELECT (ARRAY['engineering','product','security','leadership'])[g % 4 + 1],"
    " (ARRAY['closed','dismissed','customer_updated'])[g % 3 + 1], 'high',"
    " CASE WHEN g % 3 <> 1 THEN 'PAST-' || g END, now() - g * interval '1 min', now(), now()"
    " FROM generate_series(1, :n) g",
    "INSERT INTO escalation_tickets (escalation_id, ticket_source, ticket_id, destination, is_open, role,"
    " linked_at) SELECT e.id, 'zendesk', 'past-' || ((e.id * 7 + k) % (:n * 2)), e.destination, false,"
    " 'primary', e.created_at FROM escalations e, generate_series(0, 2) k WHERE e.jira_key LIKE 'PAST-%'"
    " OR e.state = 'dismissed'",
    "INSERT INTO escalation_tracking (escalation_id, missed_intervals, updated_at)"
    " SELECT id, 0, now() FROM escalations",
    "INSERT INTO deliveries (source, delivery_id, kind, subject, status, attempts, received_at, processed_at)"
    " SELECT 'zendesk', 'past-' || g, 'trigger', 'past-' || (g % (:n * 2)), 'processed', 1,"
    " now() - g * interval '1 s', now() - g * interval '1 s' FROM generate_series(1, :n * 10) g",
    "INSERT INTO assessments (ticket_source, ticket_id, assessed_at, escalate, decision, trace,"
    " ruleset_version) SELECT 'zendesk', 'past-' || (g % (:n * 2)), now() - g * interval '1 s', false,"
    " '{\"verdict\": \"Stays with support\"}', '{}', 'past' FROM generate_series(1, :n * 10) g",
    "INSERT INTO audit_log (at, target, action, subject, outcome, actor, escalation_id, detail)"
    " SELECT now() - g * interval '1 s', 'zendesk', 'assessment_note', 'past-' || (g % (:n * 2)), 'ok',"
    " 'rules', NULL, '{}' FROM generate_series(1, :n * 10) g",
    "ANALYZE",
)


def fill_backlog(database_url: str, escalations: int) -> None:
    from sqlalchemy import text

    from worker.store.engine import make_engine

    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            for sql in BACKLOG_SQL:
                connection.execute(text(sql), {"n": escalations})
    finally:
        engine.dispose()


def worker_command(
    kind: str, redis_url: str, queue: str, profile: Path | None = None, threads: int | None = None
) -> list[str]:
    escalate = [sys.executable, "-c", "import sys; from worker.cli import main; sys.exit(main())", "worker"]
    if profile is not None:  # cProfile writes its file when the worker stops at the end of the run
        escalate = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "worker.cli", "worker"]
    if threads is not None:
        escalate += ["--threads", str(threads)]
    if kind == "escalate":
        # The production command: RQ's SimpleWorker with its scheduler, preloaded (worker/cli_jobs.py).
        return escalate
    if kind == "fork":
        # The same with a fork per job (RQ's Worker), for isolation.
        return [*escalate, "--fork"]
    rq = shutil.which("rq") or str(Path(sys.executable).with_name("rq"))
    return [rq, "worker", "--worker-class", "rq.worker.SimpleWorker", "--with-scheduler", "--url", redis_url,
            "--logging_level", "WARNING", queue]


def deliver(client, ticket_ids: list[int], run: str) -> list[str]:
    """One signed webhook per ticket id, through the app; returns the job ids."""
    job_ids = []
    for n, ticket_id in enumerate(ticket_ids):
        body = trigger_body(ticket_id)
        invocation = f"{run}-{n}"
        answer = client.post("/webhooks/zendesk", data=body, headers=signed_headers(body, invocation))
        if answer.status_code != 202:
            raise RuntimeError(f"webhook for ticket {ticket_id} answered {answer.status_code}")
        job_ids.append(f"zendesk-{invocation}")
    return job_ids


def wait_done(connection, job_ids: list[str], timeout: float) -> list[Job]:
    """The jobs once all are done. Only those not yet done are read again: reading them all five times a
    second would take Redis (and a core) from the worker being measured."""
    deadline = time.monotonic() + timeout
    last_report = 0.0
    done: dict[str, Job] = {}
    pending = list(job_ids)
    while True:
        for job in Job.fetch_many(pending, connection=connection):
            if job is not None and job.get_status(refresh=False) in DONE:
                done[job.id] = job
        pending = [i for i in pending if i not in done]
        if not pending:
            return [done[i] for i in job_ids]
        now = time.monotonic()
        if now > deadline:
            raise RuntimeError(f"only {len(done)} of {len(job_ids)} jobs done after {timeout:g} s")
        if now - last_report > 10:
            print(f"  ... {len(done)}/{len(job_ids)} done", flush=True)
            last_report = now
        time.sleep(0.2)


def fresh_tickets(sandbox: SandboxProcess, count: int) -> list[int]:
    """``count`` new tickets in the sandbox, each a copy of a seeded one (subject, description,
    requester, type, priority, tags, SLA) whose description ends with a line of its own, created before
    the clock starts: the same problem in a text the encoder has not seen, so each is embedded anew as a
    real new report would be (an exact copy's embedding would come from the matcher's cache)."""
    state = sandbox.state("zendesk")
    seeds = [t for t in state["tickets"]
             if t["id"] in SEEDED_TICKETS and t["status"] not in ("solved", "closed")]
    created = []
    for n in range(count):
        seed = seeds[n % len(seeds)]
        fields = ("subject", "description", "requester_id", "type", "priority", "tags", "slas")
        copy = {k: seed[k] for k in fields if k in seed}
        copy["description"] = f"{copy.get('description') or ''}\n\nReport {n + 1} of this from our team."
        answer = requests.post(f"{sandbox.zendesk_url}/_sandbox/tickets", json=copy, timeout=10)
        answer.raise_for_status()
        created.append(int(answer.json()["ticket"]["id"]))
    return created


def change_tickets(sandbox: SandboxProcess, ticket_ids: list[int]) -> None:
    """An agent's edit of each ticket through Zendesk's API (a new ``updated_at``, the same problem)."""
    from connector.sandbox.common import ZENDESK_EMAIL, ZENDESK_TOKEN

    session = requests.Session()
    session.auth = (f"{ZENDESK_EMAIL}/token", ZENDESK_TOKEN)
    time.sleep(1.1)  # Zendesk's times have whole seconds: the change must not share the judged one's
    for ticket_id in ticket_ids:
        answer = session.put(f"{sandbox.zendesk_url}/api/v2/tickets/{ticket_id}.json",
                             json={"ticket": {"priority": "high"}}, timeout=10)
        answer.raise_for_status()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300, help="measured events (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default: %(default)s)")
    parser.add_argument("--worker", choices=["escalate", "fork", "simple"], default="escalate",
                        help="escalate: `escalate worker` (production); fork: `escalate worker --fork`; "
                        "simple: `rq worker -w SimpleWorker` (RQ's own command, not preloaded)")
    parser.add_argument("--threads", type=int, default=None,
                        help="jobs each `escalate worker` runs at once (its --threads; default: the "
                        f"command's, {DEFAULT_WORKER_THREADS}, or 1 with --worker fork)")
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--mode", choices=["steady", "changed", "fresh"], default="steady")
    parser.add_argument("--redis-url", help="an existing Redis (default: a private redis-server)")
    parser.add_argument("--backlog", type=int, default=0, metavar="N",
                        help="start from a store holding N past escalations and their history (PostgreSQL)")
    parser.add_argument("--latency-ms", type=int, default=0, metavar="MS",
                        help="the sandbox answers every measured Zendesk and Jira call this much later, as "
                        "the real services do (100-300 ms): how many threads a worker needs, not its CPU")
    parser.add_argument("--timeout", type=float, default=1800, help="give up after this many seconds")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="run the (first) worker under cProfile and write its stats to FILE "
                        "(read with `python -m pstats FILE`); slows the worker, so not for figures")
    args = parser.parse_args()
    if args.threads is not None and args.worker != "escalate":
        parser.error("--threads is `escalate worker`'s: use it with --worker escalate")
    threads = (args.threads or DEFAULT_WORKER_THREADS) if args.worker == "escalate" else 1
    if args.backlog and args.database != "postgresql":
        parser.error("--backlog fills the store with PostgreSQL's generate_series: use --database postgresql")

    info = machine()
    print_machine(info)
    kind = f"{args.worker} worker" + (f" with {threads} threads" if threads > 1 else "")
    print(f"pipeline: {args.events} events, mode {args.mode}, {args.workers} x {kind}, "
          f"{args.database}{f' with a backlog of {args.backlog} escalations' if args.backlog else ''}, "
          f"Redis {'given' if args.redis_url else 'private redis-server'}, "
          "sandbox in its own process on this machine"
          + (f", answering {args.latency_ms} ms late once measuring" if args.latency_ms else ""))

    sandbox = SandboxProcess()
    workers: list[subprocess.Popen] = []
    logs = []
    with redis_server(args.redis_url) as redis_url, database(args.database) as database_url:
        try:
            sandbox.start()
            seeded = {i["key"] for i in sandbox.state("jira")["issues"]}
            queue = f"bench-{uuid.uuid4().hex[:8]}"
            settings = Settings(zendesk_webhook_secret=WEBHOOK_SECRET, redis_url=redis_url,
                                database_url=database_url, queue_name=queue)
            app = create_app(settings)  # migrates the database
            if args.backlog:
                started = time.monotonic()
                fill_backlog(database_url, args.backlog)
                took = time.monotonic() - started
                print(f"backlog: {args.backlog} escalations and their history, filled in {took:.1f} s")
            service = app.extensions["escalate"]
            client = app.test_client()
            connection = service.queue.connection
            env = {**os.environ, **sandbox.environment(), "REDIS_URL": redis_url,
                   "DATABASE_URL": database_url, "ESCALATE_QUEUE": queue, "HF_HUB_OFFLINE": "1",
                   "PYTHONPATH": str(ROOT)}
            for n in range(args.workers):
                path = Path(tempfile.gettempdir()) / f"escalate-bench-worker-{queue}-{n}.log"
                log = path.open("w")
                logs.append(log)
                profile = args.profile.resolve() if args.profile and n == 0 else None
                command = worker_command(args.worker, redis_url, queue, profile, args.threads)
                workers.append(subprocess.Popen(command, cwd=ROOT,
                                                env=env, stdout=log, stderr=subprocess.STDOUT))

            print(f"warm-up: one event per seeded ticket ({len(SEEDED_TICKETS)})", flush=True)
            started = time.monotonic()
            warm = wait_done(connection, deliver(client, list(SEEDED_TICKETS), "warm"), args.timeout)
            print(f"  warm-up took {time.monotonic() - started:.1f} s")
            if args.mode == "fresh":
                targets = fresh_tickets(sandbox, args.events)
            elif args.mode == "changed":
                targets = fresh_tickets(sandbox, args.events)
                print(f"judging {len(targets)} new tickets once, then changing them", flush=True)
                wait_done(connection, deliver(client, targets, "first"), args.timeout)
                change_tickets(sandbox, targets)
            else:
                targets = [SEEDED_TICKETS[n % len(SEEDED_TICKETS)] for n in range(args.events)]
            redis_port = connection.connection_pool.connection_kwargs.get("port")
            groups = {"workers": [w.pid for w in workers], "sandbox": [sandbox.process.pid],
                      "redis": pids_matching("redis-server", f":{redis_port}")}
            if args.database == "postgresql":
                groups["postgres"] = pids_matching("postgres: ", database_url.rsplit("/", 1)[-1])
            if args.latency_ms:
                sandbox.slow_down(args.latency_ms)
            with CpuMeter(groups) as meter:
                jobs = wait_done(connection, deliver(client, targets, "run"), args.timeout)
        finally:
            for process in workers:
                stop_process(process, timeout=30)
            for log in logs:
                log.close()
        created = [i for i in sandbox.state("jira")["issues"] if i["key"] not in seeded]
        sandbox.stop()
        results = {j.id: j.return_value() for j in jobs if j.get_status(refresh=False) == JobStatus.FINISHED}

    failed = [j for j in jobs + warm if j.get_status(refresh=False) != JobStatus.FINISHED]
    starts = [j.started_at for j in jobs if j.started_at]
    ends = [j.ended_at for j in jobs if j.ended_at]
    window = (max(ends) - min(starts)).total_seconds()
    durations = [(j.ended_at - j.started_at).total_seconds() * 1000
                 for j in jobs if j.started_at and j.ended_at]
    rate = len(jobs) / window
    per_worker = rate / args.workers
    outcomes: dict[str, int] = {}
    for job in jobs:
        result = results.get(job.id)
        key = result.get("status", "?") if isinstance(result, dict) else "failed"
        outcomes[key] = outcomes.get(key, 0) + 1
    print()
    print(f"load average at the end: {load_average()} (anything else running on the machine shows here)")
    print(f"events measured:      {len(jobs)} ({', '.join(f'{k} {v}' for k, v in sorted(outcomes.items()))})")
    print(f"window:               {window:.2f} s (first job started -> last job ended)")
    print(f"events/s:             {rate:.1f} total, {per_worker:.1f} per worker "
          f"({args.workers} x {args.worker}{f', {threads} threads' if threads > 1 else ''})")
    print(f"job time (RQ):        p50 {percentile(durations, 50):.0f} ms, "
          f"p99 {percentile(durations, 99):.0f} ms")
    keys = ", ".join(sorted(i["key"] for i in created))
    print(f"jira issues created:  {len(created)} ({keys})")
    print(f"CPU (cores):          {meter.summary()}")
    print(f"worker CPU per event: {meter.per_item_ms('workers', len(jobs)):.1f} ms")
    if failed:
        result = failed[0].latest_result()
        trace = ((result.exc_string if result is not None else None) or "").strip()[-500:]
        print(f"FAILED JOBS: {len(failed)}; first: {failed[0].id}: {trace}")
    verdict = "met" if per_worker >= TARGET_PER_WORKER and not failed else "NOT met"
    print(f"target >= {TARGET_PER_WORKER:g} events/s per worker: {verdict}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
