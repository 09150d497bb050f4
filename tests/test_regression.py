"""Resurfaced problems: the same symptom as a resolved escalation is flagged as a regression, and the rules
file's ``regressions.action`` decides whether the old issue is reopened or a new one is opened, linked."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.ruleset import DEFAULT_RULES_PATH
from tests.followup_env import HOOLI, MASSIVE, WEBHOOKS, WONKA, open_desk, status_event
from worker.regression import TAG
from worker.store import EscalationState


def rules_file(tmp_path: Path, action: str) -> str:
    text = DEFAULT_RULES_PATH.read_text(encoding="utf-8")
    assert "  action: reopen\n" in text
    path = tmp_path / f"rules-{action}.yaml"
    path.write_text(text.replace("  action: reopen\n", f"  action: {action}\n"), encoding="utf-8")
    return str(path)


@pytest.fixture(params=["reopen", "new_linked"])
def desk(request, sandbox_state, redis_url, tmp_path, monkeypatch):
    rules = rules_file(tmp_path, request.param)
    with open_desk(sandbox_state, redis_url, tmp_path, monkeypatch, rules_path=rules) as d:
        d.action = request.param
        yield d


def resolved_problem(desk) -> tuple[list[int], str]:
    """Two accounts report webhooks failing; engineering fixes it (the issue goes to Done)."""
    tickets = [desk.ticket(HOOLI, *WEBHOOKS[0]), desk.ticket(WONKA, *WEBHOOKS[1])]
    for t in tickets:
        desk.deliver(t)
    key = desk.escalation(tickets[1]).jira_key
    desk.jira.set_status(key, "Done")
    desk.jira_event(status_event(key, "To Do", "Done", "done"))
    assert desk.escalation(tickets[0]).state is EscalationState.RESOLVED
    return tickets, key


def test_a_resolved_symptom_coming_back_is_flagged_and_handled_as_the_rules_say(desk):
    earlier, old_key = resolved_problem(desk)
    old = desk.escalation(earlier[0])

    back = desk.ticket(MASSIVE, *WEBHOOKS[2])
    desk.deliver(back)
    assert TAG in desk.zendesk.ticket(back)["tags"]
    flagged = desk.notes(back, "Regression")
    assert len(flagged) == 1 and old_key in flagged[0]["body"]

    if desk.action == "reopen":
        assert desk.jira.find(old_key)["status"] == "To Do"
        again = desk.store.escalation(old.id)
        assert again.state is EscalationState.ACKNOWLEDGED
        assert desk.escalation(back).id == old.id
        assert len(desk.comments(old_key, "regression")) == 1
        assert [i["project"] for i in desk.jira.dump()["issues"]] == ["ENG"]
    else:
        new = desk.escalation(back)
        assert new.id != old.id and new.jira_key not in (None, old_key)
        assert desk.jira.find(old_key)["status"] == "Done"
        links = desk.jira.dump()["issue_links"]
        assert [(x["type"], x["inward"], x["outward"]) for x in links] == [("Relates", new.jira_key, old_key)]
        assert desk.store.tracking(new.id).regression_of == old.id
        assert len(desk.comments(new.jira_key, f"regression of {old_key}")) == 1
        assert len(desk.comments(old_key, new.jira_key)) == 1

    # Delivered again: nothing is flagged, reopened, opened or linked twice.
    issues = len(desk.jira.dump()["issues"])
    desk.deliver(back)
    assert len(desk.notes(back, "Regression")) == 1
    assert len(desk.jira.dump()["issues"]) == issues
    assert len(desk.jira.dump()["issue_links"]) == (0 if desk.action == "reopen" else 1)


def test_tickets_of_the_problem_itself_are_not_regressions(desk):
    earlier, _key = resolved_problem(desk)
    desk.deliver(earlier[0])  # an update on a ticket reported before the fix
    assert desk.notes(earlier[0], "Regression") == []
    assert TAG not in desk.zendesk.ticket(earlier[0])["tags"]


def test_a_closed_escalation_cannot_reopen_so_a_linked_issue_is_opened(desk):
    earlier, old_key = resolved_problem(desk)
    old = desk.escalation(earlier[0])
    desk.store.transition_escalation(old.id, EscalationState.CLOSED)

    back = desk.ticket(MASSIVE, *WEBHOOKS[2])
    desk.deliver(back)
    new = desk.escalation(back)
    assert new.id != old.id and new.jira_key and new.jira_key != old_key
    assert desk.store.escalation(old.id).state is EscalationState.CLOSED
    assert [(x["inward"], x["outward"]) for x in desk.jira.dump()["issue_links"]] == [(new.jira_key, old_key)]
    assert len(desk.notes(back, "Regression")) == 1
