"""Redis down: the webhook answers 503 (a status Zendesk retries) and records nothing; once Redis is back,
Zendesk's retry of the same delivery is accepted, a real `escalate worker` processes it, and the issue
exists. Redis here is a server this test starts on a spare port and stops (``own_redis``), never the
machine's shared one.

(tests/test_queue_redis.py covers accept + enqueue after the outage; this follows the job through.)
"""

from __future__ import annotations

import pytest
from rq.job import JobStatus

from tests.test_e2e_harness import OUTAGE, build, lexical_rules, one, run_worker_process
from worker.intake import MARK_PREFIX
from worker.store import DeliveryStatus, EscalationState, TicketRef

pytest_plugins = ["tests.conftest_sandbox", "tests.conftest_service"]

pytestmark = pytest.mark.slow

JOB_ID, DELIVERY = "zendesk-8350205582", "8350205582"


@pytest.mark.parametrize("store", ["postgresql"], indirect=True)
def test_with_redis_down_the_webhook_answers_503_and_the_retry_is_processed(
    own_redis, sandbox_state, store, tmp_path
):
    system = build(sandbox_state, store, tmp_path, redis_url=own_redis.url, rules=lexical_rules(tmp_path))
    client = system.app.test_client()

    own_redis.stop()
    refused = system.deliver(OUTAGE, client=client)
    assert refused.status_code == 503
    assert 0 < int(refused.headers["Retry-After"]) < 60  # short: Zendesk retries 503 with a short one
    assert client.get("/readyz").status_code == 503
    assert system.store.get_delivery("zendesk", DELIVERY) is None  # nothing recorded anywhere

    own_redis.start()  # an empty Redis: nothing of the refused attempt survived, nothing needed to
    assert client.get("/readyz").status_code == 200
    retry = system.deliver(OUTAGE, client=client)  # Zendesk's retry: same invocation id, new signature
    assert retry.status_code == 202
    assert system.rq.get_job_ids() == [JOB_ID]

    run_worker_process(system, tmp_path / "worker.log")

    assert system.rq.fetch_job(JOB_ID).get_status() == JobStatus.FINISHED
    issue = one(system.issues())
    assert f"zendesk-{OUTAGE}" in issue["labels"]
    assert len(issue["remote_links"]) == 1
    escalation = one(system.store.escalations_for_ticket(TicketRef.zendesk(OUTAGE)))
    assert (escalation.jira_key, escalation.state) == (issue["key"], EscalationState.CREATED)
    assert any(issue["key"] in note["body"] for note in system.our_notes(OUTAGE))
    assert system.store.get_delivery("zendesk", DELIVERY).status is DeliveryStatus.PROCESSED
    # Zendesk may still deliver it once more: a duplicate now.
    assert system.service.queue.connection.exists(MARK_PREFIX + JOB_ID)
    assert system.deliver(OUTAGE, client=client).status_code == 200
    assert len(system.rq) == 0
