"""Jira misbehaving during a hand-off, through the real pipeline, Redis and RQ (SimpleWorker in this
process, one burst per step, the scheduler's role played by the test so no one waits for a clock):

- a 429 reschedules the same job after its Retry-After, without sleeping and without a second job,
  and the retry creates the issue once;
- a storm of 500s is retried with the backoff policy, then fails where people look (`escalate jobs
  failed`, the delivery, the audit log) with Jira's answer as the reason; re-queued after the storm,
  the job creates the issue once.
"""

from __future__ import annotations

import pytest
from rq.job import JobStatus
from rq.registry import FailedJobRegistry

from tests.test_e2e_harness import (
    OUTAGE,
    actions,
    build,
    drop_worker_context,
    one,
    run_simple_worker,
    use_worker_environment,
)
from worker import cli, cli_jobs
from worker.queue import TRANSIENT_RETRY_INTERVALS
from worker.store import DeliveryStatus, EscalationState, TicketRef

pytest_plugins = ["tests.conftest_sandbox", "tests.conftest_service"]

JOB_ID, DELIVERY = "zendesk-8350205582", "8350205582"
CREATE = "/rest/api/3/issue"


@pytest.fixture
def system(sandbox_state, store, redis_url, tmp_path, monkeypatch):
    built = build(sandbox_state, store, tmp_path, redis_url=redis_url)
    use_worker_environment(monkeypatch, built)
    yield built
    drop_worker_context()


def create_statuses(system) -> list[int]:
    return [entry["status"] for entry in system.creates()]


def test_a_jira_429_reschedules_the_job_after_retry_after(system):
    system.sandbox.jira_state.faults.add(prefix=CREATE, methods=["POST"], status=429, retry_after=7, count=1)
    assert system.deliver(OUTAGE).status_code == 202

    run_simple_worker(system)

    job = system.rq.fetch_job(JOB_ID)
    assert job.get_status() == JobStatus.SCHEDULED
    assert 0 < system.scheduled_in(JOB_ID) <= 7  # Jira's Retry-After (the transient backoff starts at 10)
    assert job.meta["failure_reason"] == "rate limited 1 time(s); last retry-after 7s"
    assert len(system.rq) == 0  # the same job waits; no second one
    assert create_statuses(system) == [429]  # one attempt: no client retried or slept in-process
    assert system.issues() == []
    escalation = one(system.store.escalations_for_ticket(TicketRef.zendesk(OUTAGE)))
    assert escalation.jira_key is None
    assert actions(system.store, OUTAGE, "jira") == ["jira_create_started", "jira_create_failed"]
    delivery = system.store.get_delivery("zendesk", DELIVERY)
    assert (delivery.status, delivery.error) == (DeliveryStatus.RECEIVED, "rate limited; retry after 7s")

    assert system.release_scheduled() == [JOB_ID]
    run_simple_worker(system)

    assert system.rq.fetch_job(JOB_ID).get_status() == JobStatus.FINISHED
    issue = one(system.issues())
    assert create_statuses(system) == [429, 201]
    escalation = one(system.store.escalations_for_ticket(TicketRef.zendesk(OUTAGE)))
    assert (escalation.jira_key, escalation.state) == (issue["key"], EscalationState.CREATED)
    assert len(system.our_notes(OUTAGE)) == 2  # the assessment once, the link once
    assert system.store.get_delivery("zendesk", DELIVERY).status is DeliveryStatus.PROCESSED


def test_a_jira_500_storm_is_retried_with_backoff_then_fails_with_the_reason(system, capsys):
    faults = system.sandbox.jira_state.faults
    faults.add(prefix=CREATE, methods=["POST"], status=500, count=None)  # until cleared
    assert system.deliver(OUTAGE).status_code == 202

    delays = []
    for _ in TRANSIENT_RETRY_INTERVALS:
        run_simple_worker(system)
        assert system.rq.fetch_job(JOB_ID).get_status() == JobStatus.SCHEDULED
        delays.append(system.scheduled_in(JOB_ID))
        assert system.release_scheduled() == [JOB_ID]
    run_simple_worker(system)  # the last retry fails too

    # Retried on the backoff schedule, every attempt refused by Jira, then failed.
    for delay, interval in zip(delays, TRANSIENT_RETRY_INTERVALS, strict=True):
        assert interval / 2 < delay <= interval
    attempts = 1 + len(TRANSIENT_RETRY_INTERVALS)
    assert create_statuses(system) == [500] * attempts
    assert system.rq.fetch_job(JOB_ID).get_status() == JobStatus.FAILED
    assert FailedJobRegistry(queue=system.rq).get_job_ids() == [JOB_ID]

    # Visible, with the reason: the failed-jobs listing, the delivery, the audit log.
    reason = "TransientError: jira: POST /rest/api/3/issue answered 500"
    row = one(cli_jobs.failed_jobs(system.rq))
    assert row["id"] == JOB_ID and row["reason"].startswith(reason)
    assert f"ticket {OUTAGE}" in row["description"]
    capsys.readouterr()
    assert cli.main(["jobs", "failed"]) == 0
    assert f"reason: {reason}" in capsys.readouterr().out
    delivery = system.store.get_delivery("zendesk", DELIVERY)
    assert delivery.status is DeliveryStatus.FAILED and delivery.error.startswith(reason)
    audited = system.store.actions(target="jira", subject=str(OUTAGE))
    failures = [a for a in audited if a.action == "jira_create_failed"]
    assert len(failures) == attempts and all("500" in (a.error or "") for a in failures)
    escalation = one(system.store.escalations_for_ticket(TicketRef.zendesk(OUTAGE)))
    assert (escalation.jira_key, escalation.state) == (None, EscalationState.SUGGESTED)
    assert system.issues() == []

    # The storm passes; an operator re-queues the job: one issue, no duplicate notes.
    faults.clear()
    assert cli_jobs.requeue_jobs(system.rq, [JOB_ID]) == ([JOB_ID], [])
    run_simple_worker(system)
    assert system.rq.fetch_job(JOB_ID).get_status() == JobStatus.FINISHED
    issue = one(system.issues())
    assert one(system.store.escalations_for_ticket(TicketRef.zendesk(OUTAGE))).jira_key == issue["key"]
    assert len(system.our_notes(OUTAGE)) == 2
