"""End to end on Jira Service Management: a signed Jira webhook about a desk request ends in an internal
comment with the assessment and one engineering issue tied to the request by an issue link; the
engineering issue's progress comes back to the request as an internal comment. The service runs inline
on SQLite against the sandbox's Jira and JSM desk, through the real ``jira`` client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connector.jsm_connector import issue_label
from connector.sandbox.jsm_state import ENVIRONMENT, REQUESTS, JsmState, jsm_state_for
from connector.sandbox.server import Sandbox
from tests.conftest_service import as_body, jira_headers
from tests.test_e2e_harness import Escalate, build, one
from worker.runtime import runtime_for
from worker.store import EscalationState, Store, TicketRef

pytestmark = pytest.mark.slow

OUTAGE, HOWTO = REQUESTS["outage"], REQUESTS["howto"]


@pytest.fixture
def desk(sandbox_state: Sandbox) -> JsmState:
    state = jsm_state_for(sandbox_state.jira_state)
    state.ensure()
    return state


@pytest.fixture
def system(sandbox_state: Sandbox, desk: JsmState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in ENVIRONMENT.items():  # the desk's knobs, as a deployment's environment holds them
        monkeypatch.setenv(name, value)
    store = Store.from_url(f"sqlite:///{tmp_path / 'jsm.sqlite3'}")
    store.upgrade()
    built = build(
        sandbox_state, store, tmp_path, redis_url=None, jsm_project_key=ENVIRONMENT["JSM_PROJECT_KEY"]
    )
    yield built
    built.service.queue.join(timeout=30)
    built.service.queue.close()
    store.dispose()


def send(system: Escalate, payload: dict[str, Any], identifier: str) -> Any:
    body = as_body(payload)
    answer = system.app.test_client().post(
        "/webhooks/jira", data=body, headers=jira_headers(body, identifier=identifier)
    )
    assert system.service.queue.join(timeout=120)
    return answer


def request_event(key: str, event: str = "jira:issue_created", **extra: Any) -> dict[str, Any]:
    return {"webhookEvent": event, "issue": {"key": key, "fields": {"project": {"key": "DESK"}}}, **extra}


def our_comments(desk: JsmState, key: str, before: int) -> list[dict[str, Any]]:
    return desk.request(key)["comments"][before:]


def escalation_issues(system: Escalate, key: str) -> list[dict[str, Any]]:
    return [i for i in system.issues() if f"jsm-{key}" in i["labels"]]


def test_an_outage_request_gets_an_internal_assessment_and_one_linked_engineering_issue(
    system: Escalate, desk: JsmState
) -> None:
    before = len(desk.request(OUTAGE)["comments"])

    assert send(system, request_event(OUTAGE), "jsm-1").status_code == 202

    # The assessment, as an internal comment: agents see it, the customer never does.
    comments = our_comments(desk, OUTAGE, before)
    assert comments and not any(c["public"] for c in comments)
    assessment = comments[0]["body"]
    assert "critical" in assessment.lower() and "engineering" in assessment.lower()

    # One engineering issue (the rules create critical engineering escalations without a click), linked
    # to the request by an issue link, not a remote link.
    issue = one(escalation_issues(system, OUTAGE))
    key = issue["key"]
    assert key.startswith("ENG-")
    assert "severity-critical" in issue["labels"]
    assert not issue["remote_links"]
    jsm = runtime_for(system.service.settings).jsm
    link = one(jsm.linked_issues(OUTAGE))
    assert link["key"] == key and link["type"] == "Relates"
    labels = set(jsm.labels(OUTAGE))
    assert {"escalate_suggested", "escalate_to_engineering", "escalate_severity_critical"} <= labels
    assert {"jira_escalated", issue_label(key)} <= labels
    assert any(key in c["body"] for c in comments[1:]), "the request says where it went"

    escalation = one(system.store.escalations_for_ticket(TicketRef.of("jsm", OUTAGE)))
    assert escalation.jira_key == key and escalation.state is EscalationState.CREATED
    assessed = system.store.latest_assessment(TicketRef.of("jsm", OUTAGE))
    assert assessed is not None and assessed.decision["destination"] == "engineering"

    # Jira's retry of the same delivery, and a later update of the request: still one issue, and the
    # unchanged verdict is not posted again.
    count = len(desk.request(OUTAGE)["comments"])
    send(system, request_event(OUTAGE), "jsm-1")
    send(
        system,
        request_event(OUTAGE, "jira:issue_updated", changelog={"items": [{"field": "priority"}]}),
        "jsm-2",
    )
    assert len(escalation_issues(system, OUTAGE)) == 1
    assert len(desk.request(OUTAGE)["comments"]) == count

    # Engineering moves the issue: the request hears it, internally.
    moved = {
        "webhookEvent": "jira:issue_updated",
        "issue": {
            "key": key,
            "fields": {"status": {"name": "In Progress", "statusCategory": {"key": "indeterminate"}}},
        },
        "changelog": {"items": [{"field": "status", "fromString": "To Do", "toString": "In Progress"}]},
    }
    assert send(system, moved, "eng-1").status_code == 202
    [note] = our_comments(desk, OUTAGE, count)
    assert not note["public"]
    assert key in note["body"] and "In Progress" in note["body"]
    escalation = one(system.store.escalations_for_ticket(TicketRef.of("jsm", OUTAGE)))
    assert escalation.state is EscalationState.ACKNOWLEDGED


def test_a_how_to_request_gets_the_assessment_and_no_issue(system: Escalate, desk: JsmState) -> None:
    before = len(desk.request(HOWTO)["comments"])

    send(system, request_event(HOWTO, "comment_created", comment={"id": "1", "body": "any news?"}), "jsm-3")

    [comment] = our_comments(desk, HOWTO, before)
    assert not comment["public"]
    assert escalation_issues(system, HOWTO) == []
    assert system.store.escalations_for_ticket(TicketRef.of("jsm", HOWTO)) == []
    assessed = system.store.latest_assessment(TicketRef.of("jsm", HOWTO))
    assert assessed is not None and assessed.escalate is False


def test_our_own_label_edits_on_a_request_are_not_judged_again(system: Escalate) -> None:
    echo = request_event(OUTAGE, "jira:issue_updated", changelog={"items": [{"field": "labels"}]})

    answer = send(system, echo, "jsm-4")

    assert answer.status_code == 200
    assert system.store.latest_assessment(TicketRef.of("jsm", OUTAGE)) is None


def test_without_a_configured_desk_request_events_are_ignored(sandbox_state: Sandbox, tmp_path: Path) -> None:
    store = Store.from_url(f"sqlite:///{tmp_path / 'plain.sqlite3'}")
    store.upgrade()
    system = build(sandbox_state, store, tmp_path, redis_url=None)
    try:
        answer = send(system, request_event(OUTAGE), "jsm-5")
        assert answer.status_code == 200
        assert system.store.latest_assessment(TicketRef.of("jsm", OUTAGE)) is None
    finally:
        system.service.queue.close()
        store.dispose()


def test_a_stalled_request_handed_to_senior_support_sets_the_l2_queue_field(
    system: Escalate, desk: JsmState, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.handoff import hand_off

    monkeypatch.setenv("JSM_L2_FIELD", "customfield_10070")
    monkeypatch.setenv("JSM_L2_VALUE", '{"value": "Tier 2"}')
    stalled = REQUESTS["stalled"]
    send(system, request_event(stalled), "jsm-6")
    assessed = system.store.latest_assessment(TicketRef.of("jsm", stalled))
    assert assessed is not None and assessed.decision["destination"] == "support_l2"
    assert assessed.decision["impact"]["contractual"]["sla_position"] == "breached"

    ref = TicketRef.of("jsm", stalled)
    escalation = hand_off(system.service.job_context(), ref, "support_l2", actor="agent")
    hand_off(system.service.job_context(), ref, "support_l2", actor="agent")  # a second click changes nothing

    assert escalation.state is EscalationState.CREATED and escalation.jira_key is None
    assert desk.custom_field(stalled, "customfield_10070") == {"value": "Tier 2"}
    done = [a.action for a in system.store.actions(target="jsm", subject=stalled)]
    assert done.count("assign_l2") == 1


def labelled(key: str, before: str, after: str) -> dict[str, Any]:
    return request_event(
        key,
        "jira:issue_updated",
        changelog={"items": [{"field": "labels", "fromString": before, "toString": after}]},
    )


def test_an_agent_creates_the_suggested_issue_by_labelling_the_request(
    system: Escalate, desk: JsmState
) -> None:
    csv = REQUESTS["csv_export_2"]  # an engineering suggestion, not carried out without a click
    send(system, request_event(csv), "jsm-7")
    assert escalation_issues(system, csv) == []
    jsm = runtime_for(system.service.settings).jsm
    jsm.add_labels(csv, ["escalate_create"])  # what the agent does in the request's view

    answer = send(system, labelled(csv, "escalate_suggested", "escalate_suggested escalate_create"), "jsm-8")
    send(system, labelled(csv, "escalate_suggested", "escalate_suggested escalate_create"), "jsm-9")  # again

    assert answer.status_code == 202
    issue = one(escalation_issues(system, csv))
    assert issue["key"].startswith("ENG-")
    assert one(jsm.linked_issues(csv))["key"] == issue["key"]
    assert "escalate_create" not in jsm.labels(csv)  # taken away, ready for another time
    escalation = one(system.store.escalations_for_ticket(TicketRef.of("jsm", csv)))
    assert escalation.jira_key == issue["key"] and escalation.state is EscalationState.CREATED


def test_a_create_label_for_another_destination_and_a_meaningless_one(
    system: Escalate, desk: JsmState
) -> None:
    howto = HOWTO
    send(system, request_event(howto), "jsm-10")
    before = len(desk.request(howto)["comments"])

    send(system, labelled(howto, "", "escalate_create"), "jsm-11")  # nothing was suggested
    [note] = our_comments(desk, howto, before)
    assert "nothing to create" in note["body"] and not note["public"]
    assert escalation_issues(system, howto) == []

    send(system, labelled(howto, "", "escalate_create_product"), "jsm-12")
    issue = one(escalation_issues(system, howto))
    assert issue["key"].startswith("PROD-")


def test_a_changed_verdict_takes_away_the_labels_of_the_old_one(system: Escalate) -> None:
    jsm = runtime_for(system.service.settings).jsm
    jsm.add_labels(HOWTO, ["escalate_suggested", "escalate_to_product", "customer_vip"])

    send(system, request_event(HOWTO), "jsm-13")

    labels = set(jsm.labels(HOWTO))
    assert "customer_vip" in labels
    assert not {"escalate_suggested", "escalate_to_product"} & labels
