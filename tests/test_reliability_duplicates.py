"""Zendesk delivers a webhook more than once: the same delivery twenty times (at once, and again after it
was processed) makes one job and one issue; another delivery about the same ticket changes nothing.

Through the real pipeline, Redis and the store on each backend; the worker is RQ's SimpleWorker in this
process. (Forged, stale, malformed and oversized requests are refused and enqueue nothing:
tests/test_webhook_zendesk.py, in both modes.)
"""

from __future__ import annotations

import threading

import pytest

from tests.conftest_service import as_body, zendesk_headers
from tests.test_e2e_harness import (
    OUTAGE,
    WEBHOOK,
    actions,
    build,
    drop_worker_context,
    one,
    run_simple_worker,
    use_worker_environment,
)
from worker.intake import MARK_PREFIX
from worker.store import EscalationState, TicketRef

pytest_plugins = ["tests.conftest_sandbox", "tests.conftest_service"]

JOB_ID = "zendesk-8350205582"


@pytest.fixture
def system(sandbox_state, store, redis_url, tmp_path, monkeypatch):
    built = build(sandbox_state, store, tmp_path, redis_url=redis_url)
    use_worker_environment(monkeypatch, built)
    yield built
    drop_worker_context()


def test_the_same_delivery_twenty_times_gives_one_job_and_one_issue(system):
    # Twenty copies of one delivery arrive at once (one body, one signature, one invocation id).
    body = as_body({"type": "escalate.ticket_changed", "version": 1, "ticket_id": str(OUTAGE)})
    headers = zendesk_headers(body)
    barrier = threading.Barrier(20)
    statuses: list[int] = []

    def deliver() -> None:
        client = system.app.test_client()
        barrier.wait()
        statuses.append(client.post(WEBHOOK, data=body, headers=headers).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 19 + [202]
    assert system.rq.get_job_ids() == [JOB_ID]

    run_simple_worker(system)

    issue = one(system.issues())
    assert len(system.creates()) == 1
    assert len(issue["remote_links"]) == 1
    assert len(system.our_notes(OUTAGE)) == 2  # the assessment and the link, once each
    escalation = one(system.store.escalations_for_ticket(TicketRef.zendesk(OUTAGE)))
    assert (escalation.jira_key, escalation.state) == (issue["key"], EscalationState.CREATED)

    # Zendesk retries the same delivery twenty more times after it was processed (and after RQ
    # dropped the finished job): the dedupe mark answers, nothing is queued.
    system.rq.fetch_job(JOB_ID).delete()
    assert system.service.queue.connection.exists(MARK_PREFIX + JOB_ID)
    assert {system.deliver(OUTAGE).status_code for _ in range(20)} == {200}
    assert len(system.rq) == 0

    # A different delivery about the same ticket (another update) is a new job, and changes nothing:
    # the escalation has its issue, the verdict is the same, so no note.
    assert system.deliver(OUTAGE, invocation_id="8350205583").status_code == 202
    run_simple_worker(system)
    assert one(system.issues())["key"] == issue["key"]
    assert len(system.creates()) == 1
    assert len(system.our_notes(OUTAGE)) == 2
    done = actions(system.store, OUTAGE)
    assert done.count("jira_create_issue") == 1 and done.count("assessment_note") == 1
    # Acted on once. Judged once or twice: the ticket changed only by our own note and link, which the
    # second delivery recognises as ours when both writes fell in one second (Zendesk's time resolution).
    assert 1 <= len(system.store.assessments(TicketRef.zendesk(OUTAGE))) <= 2
