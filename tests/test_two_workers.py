"""Two `escalate worker` processes on one Redis take a burst of webhook deliveries: every event is
processed exactly once (none twice, none lost), and what it does to Zendesk and Jira happens once.

Real processes (the `escalate worker` command, forking an RQ work horse per job), the real pipeline against
the sandbox Zendesk and Jira, PostgreSQL as the shared store, an isolated Redis database. The evidence is
the store's delivery ledger (one processed row, one attempt, per delivery), its assessments (one per
delivery), the internal notes on the sandbox's tickets and the issues in the sandbox's Jira.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from rq import Queue, Worker
from rq.job import Job
from rq.registry import FailedJobRegistry
from sqlalchemy import text

from connector.http.zendesk_webhook import TRIGGER_EVENT_TYPE
from tests.conftest_service import as_body, make_settings, service_of, zendesk_headers
from tests.test_metrics import lexical_rules
from worker.app import create_app
from worker.queue import job_id_for, redis_connection
from worker.store import DeliveryStatus, Store

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "escalate-two-workers"
TICKETS = 40
# What the new tickets say, in turn: a how-to question (stays in support), an outage (critical,
# escalated to engineering automatically) and a security report (escalated to security automatically).
KINDS = (
    ("question", "normal", "How do I export my invoices as PDF?", "Where can I find the invoice export?"),
    (
        "incident",
        "urgent",
        "Production is down for all users",
        "Production is down: every page answers 500 errors.",
    ),
    (
        "incident",
        "high",
        "Possible data breach",
        "We see unauthorized access to our account from unknown IPs.",
    ),
)


@pytest.fixture
def pg_store(_pg_store: Store) -> Iterator[Store]:
    with _pg_store.engine.begin() as connection:
        connection.execute(
            text(
                "TRUNCATE deliveries, assessments, escalations, escalation_tickets, audit_log "
                "RESTART IDENTITY CASCADE"
            )
        )
    yield _pg_store


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "worker"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # warm shutdown: finish the job in hand
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_two_workers_process_a_burst_once_each(tmp_path, sandbox_state, redis_url, pg_url, pg_store):
    zendesk = sandbox_state.zendesk_state
    tickets = []
    for i in range(TICKETS):
        kind, priority, subject, description = KINDS[i % len(KINDS)]
        ticket = zendesk.add_ticket(
            subject=f"{subject} (#{i})",
            description=description,
            type=kind,
            priority=priority,
            requester_id=1006,
        )
        tickets.append(ticket["id"])

    sandbox_env = sandbox_state.environment()
    rules = lexical_rules(tmp_path)
    worker_env = {
        **os.environ,
        **sandbox_env,
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": redis_url,
        "DATABASE_URL": pg_url,
        "ESCALATE_QUEUE": QUEUE,
        "ESCALATE_RULES": rules,
        "ESCALATE_AUTO_MIGRATE": "0",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    logs = [tmp_path / "worker-1.log", tmp_path / "worker-2.log"]
    workers = [start_worker(worker_env, log) for log in logs]
    app = None
    try:
        connection = redis_connection(redis_url)
        queue = Queue(QUEUE, connection=connection)
        deadline = time.monotonic() + 60
        while Worker.count(queue=queue) < 2:
            assert all(w.poll() is None for w in workers), _tails(logs)
            assert time.monotonic() < deadline, "the workers did not register: " + _tails(logs)
            time.sleep(0.2)

        settings = make_settings(
            tmp_path,
            redis_url=redis_url,
            database_url=pg_url,
            queue_name=QUEUE,
            rules_path=rules,
            auto_migrate=False,
        )
        app = create_app(settings)
        client = app.test_client()
        # The burst: one delivery per ticket, and Zendesk's retries of every fourth one mixed in.
        answers: Counter[int] = Counter()
        for i, ticket_id in enumerate(tickets):
            body = as_body({"type": TRIGGER_EVENT_TYPE, "ticket_id": str(ticket_id)})
            headers = zendesk_headers(body, invocation_id=f"burst-{ticket_id}")
            answers[client.post("/webhooks/zendesk", data=body, headers=headers).status_code] += 1
            if i % 4 == 0:
                answers[client.post("/webhooks/zendesk", data=body, headers=headers).status_code] += 1
        assert answers == {202: TICKETS, 200: TICKETS // 4}

        deliveries = [f"burst-{t}" for t in tickets]
        deadline = time.monotonic() + 300
        while True:
            rows = [pg_store.get_delivery("zendesk", d) for d in deliveries]
            if all(r is not None and r.status is DeliveryStatus.PROCESSED for r in rows):
                break
            assert all(w.poll() is None for w in workers), _tails(logs)
            assert time.monotonic() < deadline, (
                f"{sum(1 for r in rows if r and r.status is DeliveryStatus.PROCESSED)}"
                f"/{TICKETS} processed: " + _tails(logs)
            )
            time.sleep(0.5)
    finally:
        for w in workers:
            stop(w)

    # None lost, none twice: one processed row and one attempt per delivery, one assessment each.
    assert [r.attempts for r in rows] == [1] * TICKETS, _tails(logs)
    with pg_store.engine.connect() as db:
        per_delivery = dict(
            db.execute(
                text(
                    "SELECT d.delivery_id, count(a.id) FROM deliveries d "
                    "LEFT JOIN assessments a ON a.delivery_ref = d.id GROUP BY d.delivery_id"
                )
            ).all()
        )
        recorded_keys = set(
            db.execute(text("SELECT jira_key FROM escalations WHERE jira_key IS NOT NULL")).scalars()
        )
        escalated_tickets = set(
            db.execute(text("SELECT DISTINCT ticket_id FROM escalation_tickets")).scalars()
        )
    assert per_delivery == {d: 1 for d in deliveries}
    # Zendesk: every ticket got its assessment note, and no note twice.
    notes = [[n["body"] for n in zendesk.internal_notes(t)] for t in tickets]
    assert all(notes), "a ticket without its assessment note"
    twice = {t: [b for b in set(n) if n.count(b) > 1] for t, n in zip(tickets, notes, strict=True)}
    assert not any(twice.values()), f"notes written twice: { {t: b for t, b in twice.items() if b} }"
    # Jira: no issue created twice (each carries its escalation's idempotency label once), and every
    # issue created is the one recorded on its escalation.
    created = [
        i
        for i in sandbox_state.jira_state.dump()["issues"]
        if any(label.startswith("escalate-zendesk-") for label in i["labels"])
    ]
    labels = [next(lb for lb in i["labels"] if lb.startswith("escalate-zendesk-")) for i in created]
    assert created and len(set(labels)) == len(labels)
    assert {i["key"] for i in created} == recorded_keys
    escalating = {str(t) for i, t in enumerate(tickets) if i % len(KINDS) != 0}
    assert escalating <= escalated_tickets  # (older tickets with the same symptom may join them)
    # Both workers took part; no job failed.
    jobs = [Job.fetch(job_id_for("zendesk", d), connection=connection) for d in deliveries]
    assert len({job.worker_name for job in jobs}) == 2
    assert FailedJobRegistry(queue=queue).count == 0
    if app is not None:
        service_of(app).store.dispose()


def _tails(logs: list[Path]) -> str:
    return "\n".join(
        f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for log in logs if log.exists()
    )
