"""The same facts judge the same whichever desk they come from: each Zendesk bundle (POLICY.md's fixtures
and the examples) is re-expressed as Jira Service Management requests in the sandbox, fetched through the
JSM connector (real ``jira`` client over HTTP), adapted, evaluated, and compared with the Zendesk verdict:
escalate, destination, also-notify, severity, trigger ids, hold ids and the six impact dimensions.

How the facts travel: organizations → JSM organizations with the ``escalate`` property (their
``organization_fields`` and tags); end-users → portal customers, members of their organization; agents →
agent accounts; the ticket and its history → requests (Zendesk type → request type, priority → Jira
priority, status → JSM status, tags → labels); comments → request comments (``public`` kept; the first
comment, which Zendesk makes of the description, is the request's description in JSM); SLA policy
metrics → SLA cycles (active → ongoing, paused → ongoing paused, achieved → completed); audit priority
changes → the changelog.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from connector.jira_client import JiraConfig
from connector.jira_connector import JiraConnector
from connector.jsm_config import JsmConfig
from connector.jsm_connector import JsmConnector
from connector.sandbox.jsm_state import ORGANIZATIONS_FIELD, PROPERTY_KEY, JsmState, jsm_state_for
from rules.adapters.coerce import timestamp
from rules.adapters.jsm import case_from_jsm_bundle
from rules.adapters.zendesk import case_from_bundle
from rules.evaluate import evaluate

ROOT = Path(__file__).resolve().parents[1]
# The Zendesk bundles (examples/jsm-*.json are JSM bundles already).
BUNDLES = sorted((ROOT / "tests" / "fixtures" / "policy").glob("*.json")) + sorted(
    p for p in (ROOT / "examples").glob("*.json") if not p.name.startswith("jsm-")
)
REQUEST_TYPES = {"incident": "10", "problem": "11", "question": "12", "task": "13"}
PRIORITIES = {"urgent": "Highest", "high": "High", "normal": "Medium", "low": "Low"}
STATUSES = {
    "new": "Waiting for support",
    "open": "In progress",
    "pending": "Waiting for customer",
    "solved": "Resolved",
    "closed": "Closed",
}
SLA_NAMES = {"first_reply_time": "Time to first response", "next_reply_time": "Time to next response"}
# Far enough back for every fixture's history (the oldest is two months before its "now").
HISTORY_DAYS = 120


@pytest.fixture
def jsm_desk(sandbox_state) -> JsmState:
    return jsm_state_for(sandbox_state.jira_state)


@pytest.fixture
def jsm(sandbox_state) -> JsmConnector:
    env = sandbox_state.environment()
    jira = JiraConnector(
        JiraConfig(url=env["JIRA_URL"], email=env["JIRA_EMAIL"], api_token=env["JIRA_API_TOKEN"], timeout=5.0)
    )
    return JsmConnector(JsmConfig(project_key="DESK", organization_field=ORGANIZATIONS_FIELD), jira)


def account(user_id: Any) -> str:
    return f"zd-{user_id}"


def load_as_jsm(desk: JsmState, bundle: dict[str, Any]) -> dict[str, str]:
    """Make the desk hold exactly a Zendesk bundle's facts; returns Zendesk ticket id → request key."""
    desk.clear_requests()
    desk.clear_directory()
    now = timestamp(bundle["now"])
    desk.clock = now
    tickets = [bundle["ticket"], *bundle.get("history", [])]
    users = {u["id"]: u for u in bundle.get("users", [])}
    orgs = {o["id"]: o for o in bundle.get("organizations", [])}
    for org in orgs.values():
        details = {**(org.get("organization_fields") or {}), "tags": list(org.get("tags") or [])}
        desk.add_organization(str(org["id"]), org["name"], {PROPERTY_KEY: details})
    # Organizations a ticket names but the bundle does not describe: known by id only, as in Zendesk.
    for oid in {t.get("organization_id") for t in tickets} - set(orgs) - {None}:
        desk.add_organization(str(oid), f"organization {oid}")
    members: dict[Any, set[str]] = {}
    for t in tickets:
        if t.get("organization_id") is not None:
            members.setdefault(t["requester_id"], set()).add(str(t["organization_id"]))
    for uid, user in users.items():
        staff = user.get("role") in ("agent", "admin")
        org_ids = (
            set()
            if staff
            else {
                *members.get(uid, ()),
                *([str(user["organization_id"])] if user.get("organization_id") else []),
            }
        )
        known = [o for o in sorted(org_ids) if o in desk.organizations]
        desk.add_user(account(uid), user.get("name") or f"user {uid}", user.get("email"),
                      kind="agent" if staff else "customer", organizations=known)  # fmt: skip
    for t in tickets:
        if account(t["requester_id"]) not in desk.users:
            desk.add_user(account(t["requester_id"]), f"user {t['requester_id']}", None,
                          organizations=sorted(members.get(t["requester_id"], ())))  # fmt: skip

    keys: dict[str, str] = {}
    for number, ticket in enumerate(tickets, start=1):
        main = number == 1
        comments = bundle.get("comments", []) if main else []
        if comments and comments[0].get("author_id") == ticket["requester_id"]:
            comments = comments[1:]  # Zendesk's first comment is the description
        customers = {
            account(c["author_id"])
            for c in comments
            if users.get(c["author_id"], {}).get("role") not in ("agent", "admin")
            and c["author_id"] != ticket["requester_id"]
        }
        assert not ticket.get("custom_fields"), "custom ticket fields have no JSM twin in this test"
        created = timestamp(ticket["created_at"])
        keys[str(ticket["id"])] = desk.add_request(
            number=number,
            request_type_id=REQUEST_TYPES[ticket["type"]],
            reporter=account(ticket["requester_id"]),
            summary=ticket["subject"],
            description=ticket.get("description") or "",
            created=created,
            status=STATUSES[ticket["status"]],
            priority=PRIORITIES.get(ticket.get("priority") or ""),
            labels=list(ticket.get("tags") or []),
            organization_ids=[str(ticket["organization_id"])] if ticket.get("organization_id") else [],
            participants=sorted(customers),
            comments=[comment_spec(c) for c in comments],
            sla=[sla_spec(m, created, now) for m in (ticket.get("slas") or {}).get("policy_metrics") or []],
            changes=priority_changes(bundle.get("audits", [])) if main else [],
        )
    return keys


def comment_spec(comment: dict[str, Any]) -> dict[str, Any]:
    return {
        "author": account(comment["author_id"]),
        "body": comment["body"],
        "public": comment.get("public", True),
        "created": timestamp(comment["created_at"]),
    }


def priority_changes(audits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Zendesk audit events changing the priority → changelog entries in Jira's priority names."""
    return [
        {
            "field": "priority",
            "from": PRIORITIES.get(event.get("previous_value"), event.get("previous_value")),
            "to": PRIORITIES.get(event.get("value"), event.get("value")),
            "at": timestamp(audit["created_at"]),
        }
        for audit in audits
        for event in audit.get("events", [])
        if event.get("type") == "Change" and event.get("field_name") == "priority"
    ]


def sla_spec(metric: dict[str, Any], created: datetime, now: datetime) -> dict[str, Any]:
    name = SLA_NAMES.get(metric["metric"], metric["metric"].replace("_", " ").capitalize())
    breach_at = timestamp(metric.get("breach_at"))
    if metric.get("stage") == "achieved":
        stop = min(now, breach_at) if breach_at else now
        return {"name": name, "completed": [{"start": created, "stop": stop, "breach_at": breach_at or now}]}
    return {
        "name": name,
        "ongoing": {"start": created, "breach_at": breach_at, "paused": metric.get("stage") == "paused"},
    }


def essentials(decision: dict[str, Any], ids: dict[str, str] | None = None) -> dict[str, Any]:
    """What must not depend on the desk; ticket ids translated to request keys."""
    ids = ids or {}
    impact = json.loads(json.dumps(decision["impact"]))
    own, *related = [ids.get(str(t), str(t)) for t in impact["breadth"]["ticket_ids"]]
    impact["breadth"]["ticket_ids"] = [own, *sorted(related)]
    return {
        "escalate": decision["escalate"],
        "destination": decision["destination"],
        "also_notify": list(decision["also_notify"]),
        "severity": decision["severity"],
        "triggers": sorted(t["id"] for t in decision["triggers"]),
        "holds": sorted(h["id"] for h in decision["hold_reasons"]),
        "impact": impact,
        "related": sorted(
            ids.get(str(r["ticket_id"]), str(r["ticket_id"])) for r in decision["related_tickets"]
        ),
    }


@pytest.mark.parametrize("path", BUNDLES, ids=[p.stem for p in BUNDLES])
def test_same_facts_same_decision(path: Path, jsm, jsm_desk, lexical_matcher) -> None:
    bundle = json.loads(path.read_text())
    now = timestamp(bundle["now"])
    keys = load_as_jsm(jsm_desk, bundle)

    fetched = jsm.fetch_case(keys[str(bundle["ticket"]["id"])], now=now, history_days=HISTORY_DAYS)
    case = case_from_jsm_bundle(fetched)

    zendesk = evaluate(case_from_bundle(bundle, now=now), matcher=lexical_matcher).to_dict()
    from_jsm = evaluate(case, matcher=lexical_matcher).to_dict()
    assert case.source == "jsm"
    assert essentials(from_jsm) == essentials(zendesk, keys)


@pytest.mark.parametrize("name", ["outage", "security_report", "churn_threat", "howto_question"])
def test_same_decision_with_the_semantic_matcher(name: str, jsm, jsm_desk, matcher) -> None:
    bundle = json.loads((ROOT / "examples" / f"{name}.json").read_text())
    now = timestamp(bundle["now"])
    keys = load_as_jsm(jsm_desk, bundle)
    fetched = jsm.fetch_case(keys[str(bundle["ticket"]["id"])], now=now, history_days=HISTORY_DAYS)

    zendesk = evaluate(case_from_bundle(bundle, now=now), matcher=matcher).to_dict()
    from_jsm = evaluate(case_from_jsm_bundle(fetched), matcher=matcher).to_dict()
    assert essentials(from_jsm) == essentials(zendesk, keys)
