"""One problem, one issue: several customers reporting one symptom in different words gather under one
Jira issue, with a remote link per ticket, a comment per new account, and the impact rollup on the issue
and in every linked ticket's sidebar; severity rises when the rollup crosses POLICY.md §4's threshold.

The whole service runs: the sandbox Zendesk and Jira, the app in Redis mode, an RQ worker."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from redis import Redis
from rq.registry import ScheduledJobRegistry

from connector import errors
from tests.followup_env import (
    HOOLI,
    INITECH,
    INVOICE,
    MASSIVE,
    SOYLENT,
    WEBHOOKS,
    WONKA,
    database_url,
    open_desk,
    release_scheduled,
    requester_of,
)
from worker import followthrough, handoff, rollup
from worker.rollup import IMPACT_PROPERTY
from worker.store import EscalationState, TicketRef


@pytest.fixture(params=["sqlite", "postgresql"])
def desk(request, sandbox_state, redis_url, tmp_path, monkeypatch):
    url = database_url(request, tmp_path)
    with open_desk(sandbox_state, redis_url, tmp_path, monkeypatch, database_url=url) as d:
        yield d


def eng_issues(desk) -> list[dict]:
    return [i for i in desk.jira.dump()["issues"] if i["project"] == "ENG"]


def linked_ticket_ids(issue: dict) -> list[int]:
    return sorted(int(link["object"]["url"].rsplit("/", 1)[-1]) for link in issue["remote_links"])


def test_three_organizations_one_symptom_end_with_one_issue(desk):
    first = desk.ticket(HOOLI, *WEBHOOKS[0])
    desk.deliver(first)
    second = desk.ticket(WONKA, *WEBHOOKS[1])
    desk.deliver(second)  # two accounts with ARR ≥ 100,000: critical, created without a click
    third = desk.ticket(MASSIVE, *WEBHOOKS[2])
    desk.deliver(third)

    issues = eng_issues(desk)
    assert len(issues) == 1
    issue = issues[0]
    assert linked_ticket_ids(issue) == sorted([first, second, third])
    escalation = desk.escalation(third)
    assert {desk.escalation(t).id for t in (first, second, third)} == {escalation.id}
    assert escalation.jira_key == issue["key"] and escalation.severity == "critical"

    rollup = issue["properties"][IMPACT_PROPERTY]
    totals = (rollup["customers"], rollup["tickets"], rollup["arr_exposed"])
    assert totals == (3, 3, 320_000 + 130_000 + 70_000)
    assert sorted(a["name"] for a in rollup["accounts"]) == ["Hooli", "Massive Dynamic", "Wonka Industries"]
    # A comment names each account that joined after the issue was opened, with its ARR.
    assert len(desk.comments(issue["key"], "Massive Dynamic (ARR USD 70,000)")) == 1
    assert len(desk.comments(issue["key"], "Hooli (ARR USD 320,000)")) == 1
    for ticket in (first, second, third):
        assert f"jira_{issue['key'].lower().replace('-', '_')}" in desk.zendesk.ticket(ticket)["tags"]
        sidebar = desk.service.sidebar.view(str(ticket))
        shown = [e for e in sidebar["escalations"] if e["destination"] == "engineering"]
        assert shown[0]["rollup"]["customers"] == 3
        assert shown[0]["rollup_summary"].startswith("3 customers · 3 tickets · USD 520,000 ARR exposed")

    # A fourth ticket about something else does not join.
    other = desk.ticket(INITECH, *INVOICE)
    desk.deliver(other)
    assert all(e.id != escalation.id for e in desk.escalations(other))
    assert linked_ticket_ids(desk.issue(issue["key"])) == sorted([first, second, third])
    assert desk.issue(issue["key"])["properties"][IMPACT_PROPERTY]["customers"] == 3

    # Zendesk delivering the same tickets again changes nothing on Jira.
    comments = len(desk.issue(issue["key"])["comments"])
    for ticket in (first, second, third):
        desk.deliver(ticket)
    assert len(eng_issues(desk)) == 1
    assert len(desk.issue(issue["key"])["comments"]) == comments
    assert len(desk.issue(issue["key"])["remote_links"]) == 3


def test_severity_rises_when_a_second_high_value_account_joins(desk):
    first = desk.ticket(HOOLI, *WEBHOOKS[0], tags=["bug_confirmed"])
    desk.deliver(first)
    created = desk.service.sidebar.create_issue(str(first), "engineering", "agent:901")  # the agent's click
    key = created["jira_key"]
    before = desk.escalation(first).severity
    assert before in ("medium", "high")

    second = desk.ticket(SOYLENT, *WEBHOOKS[1])  # ARR 60,000: one high-value account so far
    desk.deliver(second)
    assert desk.escalation(second).jira_key == key
    assert desk.escalation(first).severity == before
    assert desk.comments(key, "severity raised") == []

    third = desk.ticket(WONKA, *WEBHOOKS[2])  # ARR 130,000: the second one
    desk.deliver(third)
    escalation = desk.escalation(third)
    assert escalation.jira_key == key and escalation.severity == "critical"
    issue = desk.issue(key)
    assert issue["priority"] == "Highest"
    assert "severity-critical" in issue["labels"] and f"severity-{before}" not in issue["labels"]
    told = desk.comments(key, "severity raised")
    assert len(told) == 1 and "Hooli" in told[0] and "Wonka Industries" in told[0]
    assert linked_ticket_ids(issue) == sorted([first, second, third])

    desk.deliver(third)
    assert len(desk.comments(key, "severity raised")) == 1


def test_a_ticket_whose_own_verdict_turns_critical_tells_the_issue_in_the_same_job(desk):
    first = desk.ticket(HOOLI, *WEBHOOKS[0], tags=["bug_confirmed"])
    desk.deliver(first)
    key = desk.service.sidebar.create_issue(str(first), "engineering", "agent:901")["jira_key"]
    second = desk.ticket(SOYLENT, *WEBHOOKS[1])  # one high-value account: the rollup sets no floor
    desk.deliver(second)
    assert desk.escalation(second).jira_key == key and desk.escalation(first).severity != "critical"

    time.sleep(1.1)  # Zendesk's times have whole seconds: the reply must not share the last judgement's
    comment = {"body": "Worse now: we lost data, the records went missing overnight.", "public": True}
    desk.zendesk.update_ticket(first, {"comment": comment}, author_id=requester_of(HOOLI))
    desk.deliver(first)  # data loss: critical, raised under the escalation's lock

    assert desk.escalation(first).severity == "critical"
    issue = desk.issue(key)
    assert issue["priority"] == "Highest" and "severity-critical" in issue["labels"]
    assert len(desk.comments(key, "severity raised")) == 1


def test_a_retried_join_sends_nothing_twice(desk):
    first, second = desk.ticket(HOOLI, *WEBHOOKS[0]), desk.ticket(WONKA, *WEBHOOKS[1])
    desk.deliver(first)
    desk.deliver(second)
    key = desk.escalation(second).jira_key
    third = desk.ticket(MASSIVE, *WEBHOOKS[2])
    # Jira answers 503 to the join comment once: the job fails after the remote link was made.
    desk.jira.faults.add(prefix=f"/rest/api/3/issue/{key}/comment", status=503, methods=["POST"], count=1)
    desk.deliver(third)
    assert desk.comments(key, "Massive Dynamic") == []
    assert release_scheduled(desk) == 1  # RQ's retry, brought forward
    desk.work()

    issue = desk.issue(key)
    assert len(desk.comments(key, "Massive Dynamic")) == 1
    assert linked_ticket_ids(issue) == sorted([first, second, third])
    assert len(desk.notes(third, f"Linked to Jira issue {key}")) == 1
    assert desk.escalation(third).state is EscalationState.CREATED


def test_the_follow_through_check_finishes_a_join_a_failed_job_left_undone(desk):
    first, second = desk.ticket(HOOLI, *WEBHOOKS[0]), desk.ticket(WONKA, *WEBHOOKS[1])
    desk.deliver(first)
    desk.deliver(second)
    key = desk.escalation(second).jira_key
    third = desk.ticket(MASSIVE, *WEBHOOKS[2])
    desk.jira.faults.add(prefix=f"/rest/api/3/issue/{key}/comment", status=503, methods=["POST"], count=1)
    desk.deliver(third)  # fails after joining; its retry waits in RQ's schedule
    assert desk.comments(key, "Massive Dynamic") == []

    followthrough.run(desk.ctx, now=datetime.now(UTC))
    assert len(desk.comments(key, "Massive Dynamic")) == 1
    release_scheduled(desk)
    desk.work()  # the job's own retry comes later and repeats nothing
    assert len(desk.comments(key, "Massive Dynamic")) == 1
    assert linked_ticket_ids(desk.issue(key)) == sorted([first, second, third])


# -- one job at a time carries an escalation -----------------------------------------------------------


@pytest.mark.parametrize("with_redis", [True, False], ids=["redis", "inline"])
def test_carrying_an_escalation_is_one_job_at_a_time(redis_url, with_redis, monkeypatch):
    """Two jobs refreshing one escalation would both find a ticket unlinked and link it twice (seen with
    threaded workers in tests/test_two_workers.py): the second waits for the first."""
    queue = SimpleNamespace(connection=Redis.from_url(redis_url)) if with_redis else SimpleNamespace()
    ctx = SimpleNamespace(queue=queue)
    inside: list[str] = []
    first_in, release = threading.Event(), threading.Event()

    def first() -> None:
        with rollup.carrying(ctx, 7):
            inside.append("first in")
            first_in.set()
            release.wait(10)
            inside.append("first out")

    holder = threading.Thread(target=first)
    holder.start()
    assert first_in.wait(10)

    def second() -> None:
        with rollup.carrying(ctx, 7):
            inside.append("second in")

    waiter = threading.Thread(target=second)
    waiter.start()
    with rollup.carrying(ctx, 8):  # another escalation is not held up
        inside.append("other")
    time.sleep(0.3)
    assert "second in" not in inside
    release.set()
    holder.join(10)
    waiter.join(10)
    assert inside == ["first in", "other", "first out", "second in"]


def test_a_job_that_cannot_carry_within_its_wait_is_rescheduled(redis_url, monkeypatch):
    monkeypatch.setattr(rollup, "CARRY_WAIT_SECONDS", 0.2)
    connection = Redis.from_url(redis_url)
    ctx = SimpleNamespace(queue=SimpleNamespace(connection=connection))
    held = connection.lock("escalate:carry:9", timeout=30)
    assert held.acquire()
    try:
        with (
            pytest.raises(errors.RateLimited, match="being carried to Jira by another job") as raised,
            rollup.carrying(ctx, 9),
        ):
            pass
        assert raised.value.retry_after == rollup.CARRY_RETRY_SECONDS  # a reschedule, not a failed try
    finally:
        held.release()
    with rollup.carrying(ctx, 9):  # free again
        pass


def test_a_joined_ticket_does_not_wait_for_the_issue_another_job_is_creating(desk):
    """The issue of an escalation is being created by its first ticket's job (its intent is recorded, Jira
    has not answered): a second ticket's job that joins it and turns it critical leaves the creation to
    that job, which links every ticket once the issue exists. The first ticket's own job waits."""
    first = desk.ticket(HOOLI, *WEBHOOKS[0], tags=["bug_confirmed"])
    desk.deliver(first)  # an escalation suggested to the agent
    escalation = desk.escalation(first)
    assert escalation.jira_key is None and escalation.state is EscalationState.SUGGESTED
    ref = TicketRef.zendesk(first)
    with desk.store.lock_escalation(escalation.id) as lock:
        label = handoff.idempotency_label(ref, "engineering", escalation.id)
        lock.record_action("jira", handoff.STARTED, str(first), actor="rules", detail={"label": label})

    second = desk.ticket(WONKA, *WEBHOOKS[1])
    desk.deliver(second)  # critical now: the rules would create the issue without a click
    scheduled = ScheduledJobRegistry(queue=desk.service.queue.rq)
    assert scheduled.get_job_ids() == []  # done, not rescheduled to judge the ticket again
    assert desk.escalation(second).id == escalation.id
    assert desk.escalation(second).severity == "critical"
    assert eng_issues(desk) == []  # left to the first ticket's job

    # The first ticket's job, run again (its worker died mid-create), waits for its own unconfirmed one.
    with pytest.raises(handoff.CreationInDoubt):
        handoff.hand_off(desk.ctx, ref, "engineering", actor="rules")
    assert eng_issues(desk) == []


def test_a_split_group_does_not_retry_joining_the_other_sides_tickets(desk, caplog):
    """One symptom under two open escalations (the second ticket was escalated on its own before it was
    judged): judging either side again leaves each ticket where it is and tries no join that the other
    escalation's hold on the ticket must refuse (each was a row lock and a log line, every time)."""
    first = desk.ticket(HOOLI, *WEBHOOKS[0], tags=["bug_confirmed"])
    desk.deliver(first)
    theirs = desk.escalation(first)
    second = desk.ticket(WONKA, *WEBHOOKS[1])
    ours, created = desk.store.get_or_create_escalation(TicketRef.zendesk(second), "engineering")
    assert created and ours.id != theirs.id

    caplog.set_level("INFO", logger="worker.rollup")
    desk.deliver(second)
    assessment = desk.store.latest_assessment(TicketRef.zendesk(second))
    related = {int(r["ticket_id"]) for r in assessment.decision.get("related_tickets") or []}
    assert first in related  # the two are one symptom: the join is what would be tried
    desk.zendesk.update_ticket(second, {"priority": "high"}, author_id=requester_of(WONKA))
    desk.deliver(second)  # judged again, the ticket having changed

    assert desk.escalation(first).id == theirs.id
    assert desk.escalation(second).id == ours.id
    assert TicketRef.zendesk(first) not in desk.store.escalation(ours.id).tickets
    assert [r.getMessage() for r in caplog.records if "not joined" in r.getMessage()] == []
