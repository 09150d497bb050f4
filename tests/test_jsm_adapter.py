"""JSM shapes → the neutral case (``rules.adapters.jsm``), without a server: names, SLA cycles, people,
organizations, and tolerance of whatever is missing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from rules.adapters.jsm import JsmMapping, case_from_jsm_bundle, date_value, sla_metrics_from_jsm
from rules.adapters.zendesk import BundleError
from rules.case import Role, SlaStage
from rules.evaluate import evaluate
from rules.facts import Facts, SlaPosition

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
SITE = "https://acme.atlassian.net"


def date(moment: datetime) -> dict[str, Any]:
    """A DateDTO as JSM sends it (offset without a colon)."""
    return {
        "iso8601": moment.strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "jira": moment.strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
        "epochMillis": int(moment.timestamp() * 1000),
    }


def user(account: str, name: str) -> dict[str, Any]:
    return {
        "accountId": account,
        "displayName": name,
        "emailAddress": f"{account}@example.com",
        "active": True,
    }


def request(**changes: Any) -> dict[str, Any]:
    raw = {
        "issueId": "10101",
        "issueKey": "DESK-7",
        "requestTypeId": "11",
        "serviceDeskId": "1",
        "createdDate": date(NOW - timedelta(hours=5)),
        "reporter": user("cust-1", "Hank Scorpio"),
        "requestFieldValues": [
            {"fieldId": "summary", "label": "Summary", "value": "CSV export times out"},
            {"fieldId": "description", "label": "Description", "value": "The export fails with a timeout."},
        ],
        "currentStatus": {
            "status": "In progress",
            "statusCategory": "INDETERMINATE",
            "statusDate": date(NOW),
        },
        "requestType": {"id": "11", "name": "Report a problem"},
        "_links": {"agent": f"{SITE}/browse/DESK-7", "self": f"{SITE}/rest/servicedeskapi/request/10101"},
    }
    raw.update(changes)
    return raw


def sla(name: str, *, ongoing: dict[str, Any] | None = None, completed: list | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {"id": "1", "name": name, "completedCycles": completed or []}
    if ongoing is not None:
        value["ongoingCycle"] = ongoing
    return value


def bundle(**sections: Any) -> dict[str, Any]:
    return {"now": "2026-11-20T15:00:00Z", "source": "jsm", "request": request(), **sections}


# --- names --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("jsm", "neutral"),
    [("Highest", "urgent"), ("High", "high"), ("Medium", "normal"), ("Low", "low"), ("Lowest", "low"),
     ("Blocker", "urgent"), ("Minor", "low"), ("P9", "p9"), (None, None)],
)  # fmt: skip
def test_priorities(jsm, neutral) -> None:
    assert JsmMapping().priority(jsm) == neutral


@pytest.mark.parametrize(
    ("name", "category", "neutral"),
    [("Waiting for support", "NEW", "new"), ("In progress", "INDETERMINATE", "open"),
     ("Waiting for customer", "INDETERMINATE", "pending"), ("Resolved", "DONE", "solved"),
     ("Closed", "DONE", "closed"), ("Canceled", "done", "closed"), ("Fixed in prod", "done", "solved"),
     ("Triage", "new", "new"), ("Something", None, "something")],
)  # fmt: skip
def test_statuses(name, category, neutral) -> None:
    assert JsmMapping().status(name, category) == neutral


@pytest.mark.parametrize(
    ("request_type", "issue_type", "neutral"),
    [("Report an incident", "Incident", "incident"), ("Report a system problem", "Incident", "incident"),
     ("Report a bug", "Service Request", "problem"), ("Ask a question", "Service Request", "question"),
     ("Get IT help", "Service Request", "task"), ("Request new hardware", None, "task"),
     (None, "Problem", "problem"), (None, None, None)],
)  # fmt: skip
def test_types(request_type, issue_type, neutral) -> None:
    assert JsmMapping().ticket_type(request_type, issue_type) == neutral


def test_mappings_are_configurable() -> None:
    m = JsmMapping.from_dict(
        {"priorities": {"P1": "urgent"}, "statuses": {"Triage": "open"}, "types": {"Get IT help": "question"}}
    )
    assert m.priority("P1") == "urgent"
    assert m.status("Triage", "new") == "open"
    assert m.ticket_type("Get IT help", "Service Request") == "question"
    assert JsmMapping.from_dict(m.to_dict()) == m


# --- the request ---------------------------------------------------------------------------------------
def test_request_fields_become_the_ticket() -> None:
    raw = bundle(
        issue={
            "key": "DESK-7",
            "self": f"{SITE}/rest/api/2/issue/10101",
            "fields": {
                "priority": {"name": "High"},
                "labels": ["Export", "bug_confirmed"],
                "issuetype": {"name": "Problem"},
                "updated": "2026-11-20T14:00:00.000+0000",
                "customfield_10060": {"value": "export", "id": "3"},
            },
        },
        changelog=[{"created": "2026-11-20T12:00:00.000+0000",
                    "items": [{"field": "priority", "fromString": "Medium", "toString": "High"}]}],
    )  # fmt: skip
    ticket = case_from_jsm_bundle(raw).ticket
    assert ticket.id == "DESK-7"
    assert (ticket.subject, ticket.description) == (
        "CSV export times out",
        "The export fails with a timeout.",
    )
    assert (ticket.status, ticket.priority, ticket.type) == ("open", "high", "problem")
    assert ticket.tags == {"export", "bug_confirmed"}
    assert ticket.requester_id == "cust-1"
    assert ticket.created_at == NOW - timedelta(hours=5)
    assert ticket.updated_at == datetime(2026, 11, 20, 14, tzinfo=UTC)
    assert ticket.custom_fields == {"customfield_10060": "export"}
    assert ticket.url == f"{SITE}/browse/DESK-7"
    assert [(c.field, c.previous, c.value) for c in ticket.changes] == [("priority", "normal", "high")]


def test_a_status_without_category_takes_the_issue_status_category() -> None:
    raw = bundle(
        request=request(currentStatus={"status": "Waiting for support", "statusDate": date(NOW)}),
        issue={"fields": {"status": {"name": "Waiting for support", "statusCategory": {"key": "new"}}}},
    )
    assert case_from_jsm_bundle(raw).ticket.status == "new"


def test_date_dtos_with_offsets_or_only_millis() -> None:
    assert date_value({"iso8601": "2015-10-09T10:22:00+0700"}) == datetime(2015, 10, 9, 3, 22, tzinfo=UTC)
    assert date_value({"epochMillis": 1444360920000}) == datetime(2015, 10, 9, 3, 22, tzinfo=UTC)
    assert date_value({"friendly": "Today 10:22 AM"}) is None


def test_a_bundle_needs_a_request_and_nothing_else() -> None:
    with pytest.raises(BundleError):
        case_from_jsm_bundle({"issue": {}})
    with pytest.raises(BundleError):
        case_from_jsm_bundle({"request": {"requestFieldValues": []}})
    case = case_from_jsm_bundle({"request": {"issueKey": "DESK-1"}}, now=NOW)
    assert case.source == "jsm"
    assert (case.ticket.status, case.ticket.priority, case.ticket.type) == (None, None, None)
    assert case.organization is None and case.comments == () and case.history == ()
    assert evaluate(case).escalate is False  # unknown is never a crash nor a trigger


# --- SLA cycles ----------------------------------------------------------------------------------------
def position(*values: dict[str, Any]) -> SlaPosition:
    case = case_from_jsm_bundle(bundle(sla=list(values)), now=NOW)
    from rules.evaluate import default_ruleset, matcher_for

    rules = default_ruleset()
    return Facts(case, rules, matcher_for(rules)).sla_position


def test_a_breached_ongoing_cycle_is_breached() -> None:
    breached = {"breached": True, "paused": False, "breachTime": date(NOW - timedelta(hours=1))}
    assert position(sla("Time to first response", ongoing=breached)) is SlaPosition.BREACHED


def test_ongoing_cycles_are_judged_by_breach_time() -> None:
    soon = {"breached": False, "paused": False, "breachTime": date(NOW + timedelta(minutes=90))}
    later = {"breached": False, "paused": False, "breachTime": date(NOW + timedelta(hours=9))}
    assert position(sla("Time to resolution", ongoing=soon)) is SlaPosition.AT_RISK
    assert position(sla("Time to resolution", ongoing=later)) is SlaPosition.COMPLIANT


def test_jsm_saying_breached_wins_over_a_clock_that_disagrees() -> None:
    skewed = {"breached": True, "paused": False, "breachTime": date(NOW + timedelta(minutes=5))}
    assert position(sla("Time to first response", ongoing=skewed)) is SlaPosition.BREACHED


def test_remaining_time_stands_in_for_a_missing_breach_time() -> None:
    cycle = {"breached": False, "paused": False, "remainingTime": {"millis": -60_000, "friendly": "-1m"}}
    [metric] = sla_metrics_from_jsm([sla("Time to resolution", ongoing=cycle)], NOW)
    assert metric.breach_at == NOW - timedelta(minutes=1)


def test_paused_and_completed_cycles_do_not_count() -> None:
    paused = {"breached": False, "paused": True, "breachTime": date(NOW - timedelta(hours=2))}
    done = [{"breached": True, "breachTime": date(NOW - timedelta(hours=3)), "stopTime": date(NOW)}]
    metrics = sla_metrics_from_jsm(
        [sla("A", ongoing=paused), sla("Time to first response", completed=done)], NOW
    )
    assert [(m.metric, m.stage) for m in metrics] == [
        ("a", SlaStage.PAUSED),
        ("time_to_first_response", SlaStage.ACHIEVED),
    ]
    assert position(sla("A", ongoing=paused), sla("B", completed=done)) is SlaPosition.COMPLIANT
    assert position() is SlaPosition.UNKNOWN


# --- people and organizations ---------------------------------------------------------------------------
def comment(cid: str, author: dict[str, Any], body: str, public: bool) -> dict[str, Any]:
    return {"id": cid, "body": body, "public": public, "author": author, "created": date(NOW)}


def test_internal_comments_and_who_wrote_what() -> None:
    agent, colleague, outsider = user("agent-1", "Priya"), user("cust-2", "Colleague"), user("x-9", "Unknown")
    raw = bundle(
        comments=[
            comment("1", agent, "Checked the logs; needs engineering.", False),
            comment("2", agent, "We are on it.", True),
            comment("3", colleague, "Still broken for us too.", True),
            comment("4", user("agent-2", "Marco"), "Any news?", True),
            comment("5", outsider, "Hello", True),
        ],
        memberships={"cust-1": ["1"], "cust-2": ["1"], "agent-2": []},
        organizations=[{"id": "1", "name": "Globex"}],
    )
    case = case_from_jsm_bundle(raw)
    assert [c.public for c in case.comments] == [False, True, True, True, True]
    roles = {pid: p.role for pid, p in case.people.items()}
    assert roles == {
        "agent-1": Role.AGENT,  # wrote an internal comment: only agents can
        "agent-2": Role.AGENT,  # looked up: in no organization of the desk
        "cust-1": Role.END_USER,
        "cust-2": Role.END_USER,
        "x-9": Role.UNKNOWN,
    }
    assert case.people["cust-2"].organization_id == "1"
    assert case.organization is not None and case.organization.name == "Globex"
    assert "Still broken for us too." in case.customer_text()
    assert "We are on it." not in case.customer_text()


def test_the_organization_property_holds_the_account_facts() -> None:
    details = {"arr": 480000, "sla_tier": "enterprise", "tags": ["Strategic"]}
    shared = {
        "fieldId": "customfield_10002",
        "label": "Organizations",
        "value": [{"id": "1", "name": "Globex"}],
    }
    raw = bundle(
        organizations=[{"id": "1", "name": "Globex"}],
        organization_properties={"1": {"key": "escalate", "value": details}},
        request=request(requestFieldValues=[*request()["requestFieldValues"], shared]),
        mapping={"organization_field": "customfield_10002"},
    )
    org = case_from_jsm_bundle(raw).organization
    assert org is not None
    assert (org.id, org.name, org.tags) == ("1", "Globex", frozenset({"strategic"}))
    assert org.fields == {"arr": 480000, "sla_tier": "enterprise"}


def test_request_fields_can_carry_arr_and_tier() -> None:
    fields = [
        *request()["requestFieldValues"],
        {"fieldId": "customfield_10050", "label": "ARR", "value": 150000},
    ]
    mapping = {"request_org_fields": {"customfield_10050": "arr", "customfield_10051": "sla_tier"}}
    with_org = bundle(
        request=request(requestFieldValues=fields),
        organizations=[{"id": "1", "name": "Globex"}],
        organization_properties={"1": {"key": "escalate", "value": {"arr": 1, "sla_tier": "business"}}},
        memberships={"cust-1": ["1"]},
        mapping=mapping,
    )
    org = case_from_jsm_bundle(with_org).organization
    assert org is not None and org.fields == {"arr": 150000, "sla_tier": "business"}
    # No organization at all: the reporter's account stands in, so the value still counts.
    alone = case_from_jsm_bundle(bundle(request=request(requestFieldValues=fields), mapping=mapping))
    assert alone.organization is not None
    assert (alone.organization.id, alone.organization.name) == ("account:cust-1", "Hank Scorpio")
    assert alone.organization.fields == {"arr": 150000}


def test_history_from_jql_results() -> None:
    issue = {
        "id": "10200",
        "key": "DESK-3",
        "self": f"{SITE}/rest/api/2/issue/10200",
        "fields": {
            "summary": "CSV export timing out",
            "description": {"type": "doc", "version": 1, "content": [
                {"type": "paragraph", "content": [{"type": "text", "text": "Large exports time out."}]}]},
            "status": {"name": "Done", "statusCategory": {"key": "done"}},
            "priority": {"name": "Medium"},
            "labels": ["fixed"],
            "issuetype": {"name": "Service Request"},
            "customfield_10010": {"requestType": {"name": "Report a bug"}},
            "reporter": user("cust-9", "Other"),
            "created": "2026-11-10T09:00:00.000+0000",
        },
    }  # fmt: skip
    raw = bundle(
        history=[issue], memberships={"cust-9": ["4"]}, mapping={"request_type_field": "customfield_10010"}
    )
    [old] = case_from_jsm_bundle(raw).history
    assert (old.id, old.status, old.priority, old.type) == ("DESK-3", "solved", "normal", "problem")
    assert old.description == "Large exports time out."
    assert (old.organization_id, old.requester_id, old.tags) == ("4", "cust-9", frozenset({"fixed"}))
    assert old.url == f"{SITE}/browse/DESK-3"
    # The request itself never counts as its own history.
    assert case_from_jsm_bundle(bundle(history=[{**issue, "key": "DESK-7"}])).history == ()
