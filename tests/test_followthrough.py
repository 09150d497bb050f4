"""Engineering's progress back to support, and follow-through on the cadence of POLICY.md §7.

The whole service runs (sandbox Zendesk and Jira, the app in Redis mode, an RQ worker). The scheduled
check is enqueued by RQ's cron scheduler and run by the worker; its clock is set by the test (the
scheduler passes ``now`` to the job), never by sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rq.registry import FailedJobRegistry

from tests.followup_env import (
    HOOLI,
    MASSIVE,
    WEBHOOKS,
    WONKA,
    comment_event,
    database_url,
    open_desk,
    status_event,
)
from worker import followthrough
from worker.store import EscalationState


@pytest.fixture(params=["sqlite", "postgresql"])
def desk(request, sandbox_state, redis_url, tmp_path, monkeypatch):
    url = database_url(request, tmp_path)
    with open_desk(sandbox_state, redis_url, tmp_path, monkeypatch, database_url=url) as d:
        yield d


@pytest.fixture
def problem(desk):
    """A critical escalation with three customers' tickets under one issue."""
    tickets = [desk.ticket(HOOLI, *WEBHOOKS[0]), desk.ticket(WONKA, *WEBHOOKS[1])]
    for t in tickets:
        desk.deliver(t)
    tickets.append(desk.ticket(MASSIVE, *WEBHOOKS[2]))
    desk.deliver(tickets[-1])
    escalation = desk.escalation(tickets[0])
    assert escalation.severity == "critical" and sorted(int(t.id) for t in escalation.tickets) == tickets
    return tickets, escalation


def check_at(desk, now: datetime) -> None:
    """What RQ's cron scheduler does when the check is due, with the check's clock set to ``now``."""
    queue = desk.service.queue.rq
    scheduler = followthrough.cron_scheduler(queue.connection, queue.name, now=now.isoformat())
    assert [job.func_name for job in scheduler.enqueue_jobs()] == [followthrough.JOB_FUNC]
    desk.work()


# -- progress from Jira ------------------------------------------------------------------------------------


def test_a_status_change_notes_every_linked_ticket_once(desk, problem):
    tickets, escalation = problem
    key = escalation.jira_key
    desk.jira.set_status(key, "In Progress")
    moved = status_event(key, "To Do", "In Progress", "indeterminate")
    desk.jira_event(moved, identifier="status-1")
    desk.jira_event(moved, identifier="status-1")  # Jira's retry of the same delivery
    for t in tickets:
        assert len(desk.notes(t, f"Jira {key} moved from To Do to In Progress")) == 1
    assert desk.store.escalation(escalation.id).state is EscalationState.ACKNOWLEDGED
    assert desk.store.tracking(escalation.id).jira_status == "In Progress"

    desk.jira.set_status(key, "Done")
    desk.jira_event(status_event(key, "In Progress", "Done", "done"), identifier="status-2")
    for t in tickets:
        told = desk.notes(t, "update the customer")
        assert len(told) == 1
        assert followthrough.CUSTOMER_UPDATE_TAG in desk.zendesk.ticket(t)["tags"]
    assert desk.store.escalation(escalation.id).state is EscalationState.RESOLVED
    assert desk.store.tracking(escalation.id).resolved_at is not None


def test_only_comments_marked_for_support_are_copied(desk, problem):
    tickets, escalation = problem
    key = escalation.jira_key
    desk.jira_event(comment_event(key, "[support] A fix is rolling out tonight."))
    desk.jira_event(comment_event(key, "Looking at the delivery worker logs, nothing for support yet."))
    for t in tickets:
        assert len(desk.notes(t, "A fix is rolling out tonight.")) == 1
        assert desk.notes(t, "delivery worker logs") == []
    tracking = desk.store.tracking(escalation.id)
    assert tracking.last_movement == "comment by Dana Engineer"
    # Our own comments on the issue (the rollup, chases) are not engineering moving it.
    ours = comment_event(key, "Escalate: 1 more customer reports this symptom.", author="Escalate Bot")
    desk.jira_event(ours)
    assert desk.store.tracking(escalation.id).last_movement_at == tracking.last_movement_at


# -- stalled -------------------------------------------------------------------------------------------------


def stalled_notes(desk, ticket: int) -> list[dict]:
    return desk.notes(ticket, "Stalled: Jira")


def lead_issues(desk) -> list[dict]:
    return [i for i in desk.jira.dump()["issues"] if i["project"] == "LEAD"]


def test_a_stalled_critical_escalation_is_noted_per_missed_interval_and_reaches_leadership(desk, problem):
    tickets, escalation = problem
    key = escalation.jira_key
    t0 = followthrough.handed_off_at(desk.ctx, escalation)

    check_at(desk, t0 + timedelta(hours=1, minutes=50))  # within the 2 h check-in: nothing
    assert all(stalled_notes(desk, t) == [] for t in tickets)

    check_at(desk, t0 + timedelta(hours=2, minutes=5))  # the first missed check-in
    for t in tickets:
        assert len(stalled_notes(desk, t)) == 1
        assert followthrough.STALLED_TAG in desk.zendesk.ticket(t)["tags"]
    assert len(desk.comments(key, "no movement on this issue")) == 1
    assert lead_issues(desk) == []
    assert desk.store.tracking(escalation.id).missed_intervals == 1
    view = desk.service.sidebar.view(str(tickets[0]))["escalations"]
    assert [e["missed_check_ins"] for e in view if e["destination"] == "engineering"] == [1]

    check_at(desk, t0 + timedelta(hours=2, minutes=40))  # the same interval again: nothing new
    assert all(len(stalled_notes(desk, t)) == 1 for t in tickets)

    check_at(desk, t0 + timedelta(hours=4, minutes=10))  # the second: leadership hears of it
    lead = lead_issues(desk)
    assert len(lead) == 1 and key in lead[0]["summary"]
    assert [(x["inward"], x["outward"]) for x in desk.jira.dump()["issue_links"]] == [(lead[0]["key"], key)]
    for t in tickets:
        notes = stalled_notes(desk, t)
        assert len(notes) == 2 and lead[0]["key"] in notes[-1]["body"]
    assert len(desk.comments(key, "no movement on this issue")) == 2

    check_at(desk, t0 + timedelta(hours=4, minutes=30))
    assert len(lead_issues(desk)) == 1
    assert all(len(stalled_notes(desk, t)) == 2 for t in tickets)

    # The third interval's run fails half-way (Zendesk refuses one note); its retry sends only the rest.
    desk.zendesk.faults.add(prefix=f"/api/v2/tickets/{tickets[1]}", status=503, methods=["PUT"], count=1)
    check_at(desk, t0 + timedelta(hours=6, minutes=10))
    failed = FailedJobRegistry(queue=desk.service.queue.rq)
    assert len(failed.get_job_ids()) == 1
    failed.requeue(failed.get_job_ids()[0])
    desk.work()
    for t in tickets:
        assert len(stalled_notes(desk, t)) == 3
    assert len(desk.comments(key, "no movement on this issue")) == 3
    assert len(lead_issues(desk)) == 1

    # Engineering moves the issue: the stall ends.
    desk.jira.set_status(key, "In Progress")
    desk.jira_event(status_event(key, "To Do", "In Progress", "indeterminate"))
    check_at(desk, datetime.now(UTC) + timedelta(minutes=30))
    assert all(followthrough.STALLED_TAG not in desk.zendesk.ticket(t)["tags"] for t in tickets)
    assert desk.store.tracking(escalation.id).stalled_since is None


def test_a_medium_escalation_does_not_reach_leadership(desk):
    ticket = desk.ticket(HOOLI, *WEBHOOKS[0], tags=["bug_confirmed"])
    desk.deliver(ticket)
    desk.service.sidebar.create_issue(str(ticket), "engineering", "agent:901")
    escalation = desk.escalation(ticket)
    assert escalation.severity in ("medium", "high")
    t0 = followthrough.handed_off_at(desk.ctx, escalation)
    hours = 24 if escalation.severity == "medium" else 4
    check_at(desk, t0 + timedelta(hours=2 * hours + 0.1))
    assert len(stalled_notes(desk, ticket)) == 1
    assert (lead_issues(desk) == []) is (escalation.severity == "medium")


# -- customer updates ----------------------------------------------------------------------------------------


def reply(desk, ticket: int, at: datetime) -> None:
    """A public agent reply written at ``at`` (the sandbox's desk is the test's to arrange)."""
    desk.zendesk.add_comment(ticket, "Quick update: engineering is on it.", author_id=901, at=at)


def reminders(desk, ticket: int) -> list[dict]:
    return desk.notes(ticket, "Customer update overdue")


def test_an_overdue_customer_update_reminds_the_agent_once_per_interval(desk, problem):
    tickets, escalation = problem
    t0 = followthrough.handed_off_at(desk.ctx, escalation)
    reply(desk, tickets[0], t0 + timedelta(hours=3))

    check_at(desk, t0 + timedelta(hours=4, minutes=10))  # critical: update every 2–4 h
    assert reminders(desk, tickets[0]) == []
    for t in tickets[1:]:
        assert len(reminders(desk, t)) == 1
        assert followthrough.CUSTOMER_UPDATE_TAG in desk.zendesk.ticket(t)["tags"]

    check_at(desk, t0 + timedelta(hours=4, minutes=40))
    assert all(len(reminders(desk, t)) == 1 for t in tickets[1:])

    check_at(desk, t0 + timedelta(hours=7, minutes=10))  # 4 h after the reply on the first
    assert len(reminders(desk, tickets[0])) == 1
    assert all(len(reminders(desk, t)) == 1 for t in tickets[1:])

    check_at(desk, t0 + timedelta(hours=8, minutes=10))  # a second interval without a reply
    assert all(len(reminders(desk, t)) == 2 for t in tickets[1:])


def test_a_resolved_escalation_becomes_customer_updated_once_every_ticket_heard(desk, problem):
    tickets, escalation = problem
    key = escalation.jira_key
    desk.jira.set_status(key, "Done")
    desk.jira_event(status_event(key, "To Do", "Done", "done"))
    t0 = followthrough.handed_off_at(desk.ctx, escalation)
    for t in tickets[:2]:
        reply(desk, t, datetime.now(UTC) + timedelta(seconds=1))
    check_at(desk, t0 + timedelta(hours=5))
    assert desk.store.escalation(escalation.id).state is EscalationState.RESOLVED
    reply(desk, tickets[2], datetime.now(UTC) + timedelta(seconds=1))
    check_at(desk, t0 + timedelta(hours=5, minutes=5))
    assert desk.store.escalation(escalation.id).state is EscalationState.CUSTOMER_UPDATED
