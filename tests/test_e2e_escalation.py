"""End to end: a signed Zendesk webhook for a sandbox ticket ends in the right Jira issue, the remote link
back to the ticket, and the internal notes on the ticket.

- with Redis and a real ``escalate worker`` process, on PostgreSQL and on SQLite;
- inline (no Redis: the embedded default), on SQLite, against a Cloud Jira (ADF, REST v3) and a
  Server/Data Center one (wiki markup, REST v2).
"""

from __future__ import annotations

from typing import Any

import pytest

from connector.jira_connector import ticket_global_id
from connector.sandbox.adf_check import adf_text
from connector.sandbox.seed import JIRA_ISSUE_FIELD
from tests.test_e2e_harness import (
    HOWTO,
    OUTAGE,
    SECURITY,
    Escalate,
    actions,
    build,
    lexical_rules,
    one,
    run_worker_process,
)
from worker.store import DeliveryStatus, EscalationState, TicketRef

pytest_plugins = ["tests.conftest_sandbox", "tests.conftest_service"]

pytestmark = pytest.mark.slow


def issue_for(system: Escalate, ticket_id: int) -> dict[str, Any]:
    return one(i for i in system.issues() if f"zendesk-{ticket_id}" in i["labels"])


def description_text(issue: dict[str, Any]) -> str:
    value = issue["description"]
    return adf_text(value) if isinstance(value, dict) else str(value)


def assert_escalated(
    system: Escalate,
    ticket_id: int,
    *,
    destination: str,
    project: str,
    issue_type: str,
    labels: set[str],
    priority: str,
    security: str | None = None,
    cloud: bool = True,
) -> dict[str, Any]:
    """The issue is the right one, it links back to the ticket, and the ticket says where it went."""
    issue = issue_for(system, ticket_id)
    escalation = one(system.store.escalations_for_ticket(TicketRef.zendesk(ticket_id)))
    key = issue["key"]

    # The right Jira issue: project, type, labels (with the idempotency label), priority, security level,
    # and the escalation package as its description, in the deployment's format.
    assert key.startswith(f"{project}-")
    assert issue["issuetype"]["name"] == issue_type
    label = f"escalate-zendesk-{ticket_id}-{destination}-{escalation.id}"
    assert {*labels, f"zendesk-{ticket_id}", "severity-critical", label} <= set(issue["labels"])
    assert issue["priority"] == priority
    assert (issue["security"] or {}).get("name") == security
    assert issue["description_format"] == ("adf" if cloud else "wiki")
    text = description_text(issue)
    for heading in ("BUSINESS IMPACT", "PROBLEM NARRATIVE", "REPRODUCTION PROCEDURE", "REQUEST"):
        assert heading in text
    ticket = system.sandbox.zendesk_state.ticket(ticket_id)
    assert ticket is not None
    assert issue["summary"].startswith(ticket["subject"][:60])  # "<subject> (<who>, <ARR> exposed)"

    # The remote link from the issue back to the ticket, with the stable globalId (an upsert key).
    ticket_url = f"{system.sandbox.zendesk_url}/agent/tickets/{ticket_id}"
    link = one(issue["remote_links"])
    assert link["object"]["url"] == ticket_url
    assert link["globalId"] == ticket_global_id(ticket_url, ticket_id)
    assert link["relationship"] == "support ticket"
    assert link["application"]["type"] == "com.zendesk"
    assert str(ticket_id) in link["object"]["title"]

    # The internal notes: the assessment, then the link to the issue; tags and the issue field.
    notes = system.our_notes(ticket_id)
    assert len(notes) == 2, [n["body"][:80] for n in notes]
    assessment_note, link_note = notes
    assert "critical" in assessment_note["body"].lower()
    assert key in link_note["body"]
    assert f"{system.sandbox.jira_url}/browse/{key}" in link_note["html_body"]
    assert not any(n["public"] for n in notes)
    tags = set(ticket["tags"])
    assert {"jira_escalated", f"jira_{key.lower().replace('-', '_')}"} <= tags
    assert {"escalate_suggested", f"escalate_to_{destination}", "escalate_severity_critical"} <= tags
    field = one(f for f in ticket["custom_fields"] if f["id"] == JIRA_ISSUE_FIELD)
    assert field["value"] == key

    # Our own records say the same.
    assert escalation.destination == destination
    assert escalation.state is EscalationState.CREATED
    assert escalation.jira_key == key
    assert escalation.severity == "critical"
    assert system.store.escalation_by_jira_key(key).id == escalation.id
    done = actions(system.store, ticket_id)
    for step in ("assessment_note", "jira_create_started", "jira_create_issue", "record_jira_link"):
        assert done.count(step) == 1, done
    assert done.index("jira_create_started") < done.index("jira_create_issue")
    return issue


def assert_kept_in_support(system: Escalate, ticket_id: int) -> None:
    assert not [i for i in system.issues() if f"zendesk-{ticket_id}" in i["labels"]]
    assert system.store.escalations_for_ticket(TicketRef.zendesk(ticket_id)) == []
    note = one(system.our_notes(ticket_id))
    assert "keep" in note["body"].lower() or "support" in note["body"].lower()
    assessment = system.store.latest_assessment(TicketRef.zendesk(ticket_id))
    assert assessment is not None and assessment.escalate is False


@pytest.fixture
def redis_system(sandbox_state, store, redis_url, tmp_path) -> Escalate:
    return build(sandbox_state, store, tmp_path, redis_url=redis_url, rules=lexical_rules(tmp_path))


def test_webhooks_through_redis_and_the_worker_end_in_issues_links_and_notes(redis_system, tmp_path):
    """PostgreSQL and SQLite (the ``store`` fixture), Redis, and `escalate worker` as deployed."""
    system = redis_system
    for n, ticket_id in enumerate((OUTAGE, SECURITY, HOWTO)):
        assert system.deliver(ticket_id, invocation_id=f"e2e-{n}").status_code == 202
    assert len(system.rq) == 3

    run_worker_process(system, tmp_path / "worker.log")

    assert_escalated(system, OUTAGE, destination="engineering", project="ENG", issue_type="Bug",
                     labels={"escalate", "support-escalation"}, priority="Highest")
    assert_escalated(system, SECURITY, destination="security", project="SEC", issue_type="Bug",
                     labels={"escalate", "security"}, priority="Highest", security="Restricted")
    assert_kept_in_support(system, HOWTO)
    assert len(system.issues()) == 2
    for n in range(3):
        job = system.rq.fetch_job(f"zendesk-e2e-{n}")
        assert job.get_status() == "finished", job.exc_info
        assert system.store.get_delivery("zendesk", f"e2e-{n}").status is DeliveryStatus.PROCESSED


@pytest.mark.parametrize("deployment", ["Cloud", "Server"])
def test_inline_webhook_ends_in_the_issue_the_link_and_the_note(
    sandbox_state, tmp_path, monkeypatch, deployment
):
    """The embedded default: no Redis, SQLite, the job on the web process's own thread."""
    from tests.conftest_service import _sqlite_store

    sandbox_state.jira_state.configure(deployment_type=deployment)
    monkeypatch.setenv("ZENDESK_JIRA_FIELD_ID", str(JIRA_ISSUE_FIELD))  # as a deployment configures it
    store = _sqlite_store(tmp_path)
    system = build(sandbox_state, store, tmp_path, redis_url=None)
    try:
        assert system.deliver(OUTAGE).status_code == 202
        assert system.service.queue.join(timeout=120)
    finally:
        system.service.queue.close()  # type: ignore[union-attr]
    issue = assert_escalated(system, OUTAGE, destination="engineering", project="ENG", issue_type="Bug",
                             labels={"escalate", "support-escalation"}, priority="Highest",
                             cloud=deployment == "Cloud")
    version = "3" if deployment == "Cloud" else "2"
    assert [c["path"] for c in system.creates()] == [f"/rest/api/{version}/issue"]
    # The automatic hand-off builds its package from the case the job judged: the ticket's history and
    # people are read once; the ticket itself to judge it, then where the link is written (the hand-off)
    # and checked (the rollup's pass over the escalation's tickets).
    zendesk = sandbox_state.zendesk_state.requests
    assert len(zendesk.matching("GET", f"/api/v2/tickets/{OUTAGE}/audits.json")) == 1
    assert len(zendesk.matching("GET", "/api/v2/users/show_many.json")) == 1
    assert len(zendesk.matching("GET", f"/api/v2/tickets/{OUTAGE}.json")) == 3
    assert issue["api_version"] == version
    assert system.store.get_delivery("zendesk", "8350205582").status is DeliveryStatus.PROCESSED
    store.dispose()
