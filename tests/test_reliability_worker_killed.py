"""A worker killed (SIGKILL) in the worst place: Jira has created the issue, the key is not recorded yet.

The hand-off commits an intent before calling Jira and recovers through the issue's idempotency label
(worker/handoff.py). Here a real `escalate worker` is killed while its create request is in flight (the
sandbox Jira answers it slowly, and finishes creating the issue after the worker is gone); RQ gives the
abandoned job back once the dead worker's registration would have expired (the test moves the clock),
and a fresh worker process finishes the job: exactly one issue, and the escalation records it.

With Jira's search lagging behind (as Jira Cloud's does), the fresh worker cannot see the issue by its
label yet: it must neither create a second one nor give up, but reschedule until the intent's window
has passed or the search shows the issue.
"""

from __future__ import annotations

import pytest
from rq.job import JobStatus

from tests.test_e2e_harness import (
    OUTAGE,
    WorkerProcess,
    actions,
    build,
    lexical_rules,
    one,
    run_worker_process,
    wait_until,
)
from worker import handoff
from worker.store import DeliveryStatus, EscalationState, TicketRef

pytest_plugins = ["tests.conftest_sandbox", "tests.conftest_service"]

pytestmark = pytest.mark.slow

JOB_ID, DELIVERY = "zendesk-8350205582", "8350205582"


@pytest.mark.parametrize("store", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    ("search_lag", "threads"),
    [(False, "1"), (True, "1"), (False, "3")],
    ids=["search-current", "search-lagging", "search-current-threads"],
)
def test_a_worker_killed_after_jira_created_the_issue_leaves_exactly_one_issue(
    sandbox_state, store, redis_url, tmp_path, search_lag, threads
):
    system = build(sandbox_state, store, tmp_path, redis_url=redis_url, rules=lexical_rules(tmp_path))
    system.env["ESCALATE_WORKER_THREADS"] = threads  # `escalate worker --threads 3`: the job in a thread
    jira = sandbox_state.jira_state
    ref = TicketRef.zendesk(OUTAGE)
    if search_lag:
        jira.configure(search_delay_s=3600)  # a new issue stays out of JQL results until the test says
    # Jira takes its time over the create: the worker is killed while the request is in flight.
    jira.faults.add(prefix="/rest/api/3/issue", methods=["POST"], latency_ms=2500, count=1)

    assert system.deliver(OUTAGE).status_code == 202
    worker = WorkerProcess(system.env, burst=False, log=tmp_path / "killed-worker.log")
    try:
        # The intent is committed before Jira is called; the fault is consumed once Jira has the request.
        wait_until(lambda: "jira_create_started" in actions(system.store, OUTAGE, "jira"), timeout=90)
        wait_until(lambda: not jira.faults.as_list(), timeout=10)
        worker.kill()
    finally:
        worker.stop()

    # Jira finishes the create it received; nobody is left to record the key.
    created = wait_until(lambda: system.issues(), timeout=10)
    key = one(created)["key"]
    escalation = one(system.store.escalations_for_ticket(ref))
    assert escalation.jira_key is None
    assert escalation.state is EscalationState.SUGGESTED
    assert "jira_create_issue" not in actions(system.store, OUTAGE, "jira")
    job = system.rq.fetch_job(JOB_ID)
    assert job.get_status() == JobStatus.STARTED  # as the dead worker left it
    assert system.store.get_delivery("zendesk", DELIVERY).status is DeliveryStatus.PROCESSING

    # The dead worker's heartbeat expires: RQ retries the abandoned job (its Retry policy, the first
    # interval; the scheduler would release it then, the test does so now).
    system.abandon_started()
    assert system.release_scheduled() == [JOB_ID]

    if search_lag:
        run_worker_process(system, tmp_path / "worker-2.log")
        # The label search does not show the issue yet and the intent is recent: no second create, no
        # failure, the job looks again soon (the intent's first job may still be at it), well before
        # the window ends.
        job = system.rq.fetch_job(JOB_ID)
        assert job.get_status() == JobStatus.SCHEDULED
        assert 0 < system.scheduled_in(JOB_ID) <= 0.25 * handoff.INTENT_WINDOW_SECONDS
        assert job.meta["failure_reason"].startswith("rate limited 1 time(s)")
        assert len(system.issues()) == 1
        assert len(system.creates()) == 1
        assert system.store.open_escalation(ref, "engineering").jira_key is None
        delivery = system.store.get_delivery("zendesk", DELIVERY)
        assert delivery.status is DeliveryStatus.RECEIVED
        assert delivery.error.startswith("rate limited")
        # Jira's search catches up before the window ends.
        jira.configure(search_delay_s=0)
        assert system.release_scheduled() == [JOB_ID]

    run_worker_process(system, tmp_path / "worker-3.log")

    # Exactly one issue, and the escalation records it, linked both ways.
    issue = one(system.issues())
    assert issue["key"] == key
    assert len(system.creates()) == 1  # only the killed worker's request ever reached Jira
    escalation = one(system.store.escalations_for_ticket(ref))
    assert escalation.jira_key == key
    assert escalation.state is EscalationState.CREATED
    done = actions(system.store, OUTAGE, "jira")
    assert done.count("jira_create_started") == 1 and done.count("jira_create_issue") == 1
    assert len(issue["remote_links"]) == 1
    assert len([n for n in system.our_notes(OUTAGE) if key in n["body"]]) == 1
    assert len(system.our_notes(OUTAGE)) == 2  # the assessment (once, before the kill) and the link
    assert system.rq.fetch_job(JOB_ID).get_status() == JobStatus.FINISHED
    assert system.store.get_delivery("zendesk", DELIVERY).status is DeliveryStatus.PROCESSED


def test_a_job_that_finds_an_unconfirmed_intent_looks_again_soon_then_less_often():
    window, soon = handoff.INTENT_WINDOW_SECONDS, handoff.INTENT_RECHECK_SECONDS
    assert handoff.recheck_after(0) == handoff.recheck_after(2) == soon
    assert handoff.recheck_after(20) == 20  # as long again as the intent is old
    assert handoff.recheck_after(200) == window - 200  # never past the window
    assert handoff.recheck_after(window - 0.2) == 1.0
    # From a fresh intent, the looks reach the window in a handful of reschedules.
    age, looks = 0.0, 0
    while age < window:
        age += handoff.recheck_after(age)
        looks += 1
    assert looks <= 8
