"""Demo data for the sandboxes: organizations with ARR and tiers, agents and customers, and tickets that
exercise every case of POLICY.md, with comments, audits and SLA metrics placed relative to "now".

``TICKETS`` names the seeded ticket ids so tests and the demo can refer to them by case.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

from connector.sandbox.common import ZENDESK_EMAIL, iso

# Custom ticket fields of the sandbox desk.
PRODUCT_AREA_FIELD = 360000001
JIRA_ISSUE_FIELD = 360000002
TICKET_FIELDS = {"product_area": PRODUCT_AREA_FIELD, "jira_issue": JIRA_ISSUE_FIELD}

GROUPS = {1: "Support", 2: "Support L2", 3: "Engineering Liaison"}
L2_GROUP_ID = 2

API_USER_ID = 900
AGENTS = {
    900: ("Escalate Bot", ZENDESK_EMAIL, "admin"),
    901: ("Priya Patel", "priya@support.example.com", "agent"),
    902: ("Marco Rossi", "marco@support.example.com", "agent"),
    903: ("Dana Kim", "dana@support.example.com", "admin"),
}

TICKETS = {
    "outage": 101,
    "security": 102,
    "churn": 103,
    "howto": 104,
    "data_loss": 105,
    "csv_export_1": 106,
    "csv_export_2": 107,
    "csv_export_3": 108,
    "stalled": 109,
    "feature_request": 110,
    "on_prem": 111,
    "howto_solved_1": 120,
    "howto_solved_2": 121,
    "howto_solved_3": 122,
    "csv_export_fixed": 123,
}


def _load() -> dict[str, Any]:
    """The demo desk (organizations and tickets) from seed_zendesk.json, shipped beside this module."""
    text = resources.files("connector.sandbox").joinpath("seed_zendesk.json").read_text("utf-8")
    return json.loads(text)


def zendesk_seed(now: datetime) -> dict[str, Any]:
    """Fresh desk contents, every time relative to ``now``."""
    data = _load()
    orgs, users, requesters = {}, {}, {}
    for org in data["organizations"]:
        created = iso(now - timedelta(days=400))
        orgs[org["id"]] = {
            "id": org["id"],
            "name": org["name"],
            "shared_tickets": False,
            "shared_comments": False,
            "external_id": None,
            "created_at": created,
            "updated_at": created,
            "domain_names": [_domain(org["name"])],
            "details": "",
            "notes": "",
            "group_id": None,
            "tags": list(org["tags"]),
            "organization_fields": {
                "arr": org["arr"],
                "pipeline_arr": org["pipeline_arr"],
                "sla_tier": org["sla_tier"],
                "renewal_date": (now + timedelta(days=org["renewal_in_days"])).date().isoformat(),
            },
        }
        person = org["requester"]
        email = f"{person['name'].split()[0].lower()}@{_domain(org['name'])}"
        users[person["id"]] = _user(person["id"], person["name"], email, "end-user", org["id"], now)
        requesters[org["id"]] = person["id"]
    for uid, (name, email, role) in AGENTS.items():
        users[uid] = _user(uid, name, email, role, None, now)

    tickets, comments, audits = {}, {}, {}
    ids = {"comment": 7000, "audit": 8000, "event": 9000}
    for spec in data["tickets"]:
        ticket, ticket_comments, ticket_audits = _ticket(spec, requesters[spec["org"]], now, ids)
        tickets[ticket["id"]] = ticket
        comments[ticket["id"]] = ticket_comments
        audits[ticket["id"]] = ticket_audits
    return {
        "organizations": orgs,
        "users": users,
        "tickets": tickets,
        "comments": comments,
        "audits": audits,
        "groups": {gid: {"id": gid, "name": name} for gid, name in GROUPS.items()},
        "next_ids": {**ids, "ticket": 200},
    }


def _domain(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum()) + ".example"


def _user(uid: int, name: str, email: str, role: str, org: int | None, now: datetime) -> dict[str, Any]:
    created = iso(now - timedelta(days=300))
    return {
        "id": uid,
        "name": name,
        "email": email,
        "role": role,
        "organization_id": org,
        "active": True,
        "verified": True,
        "suspended": False,
        "time_zone": "UTC",
        "locale": "en-US",
        "phone": None,
        "tags": [],
        "user_fields": {},
        "created_at": created,
        "updated_at": created,
        "default_group_id": 1 if role != "end-user" else None,
    }


def _via() -> dict[str, Any]:
    return {"channel": "web", "source": {"from": {}, "to": {}, "rel": None}}


def comment_record(
    cid: int,
    author: int,
    body: str,
    public: bool,
    at: datetime,
    audit_id: int | None,
    html_body: str | None = None,
    via: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A comment as ``GET /api/v2/tickets/{id}/comments.json`` lists it; ``via``, ``created_at`` and
    ``metadata`` are its audit's (``via``: how the update that added it came in)."""
    return {
        "id": cid,
        "type": "Comment",
        "author_id": author,
        "body": body,
        "html_body": html_body or "".join(f"<p>{html.escape(p)}</p>" for p in body.split("\n\n")),
        "plain_body": body,
        "public": public,
        "attachments": [],
        "audit_id": audit_id,
        "via": via or _via(),
        "created_at": iso(at),
        "metadata": {"system": {}, "custom": {}},
    }


# What a Comment event in a ticket audit carries: the comment itself (Zendesk stores a comment as an
# event of the audit that added it, so the event's id is the comment's id, and the comment's audit_id
# names that audit); its time, via and metadata are the audit's. Zendesk's own examples (Ticket Audits
# API) may show fewer of these keys; connector.zendesk_bundle.comments_from_audits copes with that.
COMMENT_EVENT_KEYS = ("id", "type", "author_id", "body", "html_body", "plain_body", "public", "attachments",
                      "audit_id")  # fmt: skip


def comment_event(record: dict[str, Any]) -> dict[str, Any]:
    """The Comment event, in the audit that added it, of a comment made by ``comment_record``."""
    return {key: record[key] for key in COMMENT_EVENT_KEYS}


def audit_record(
    aid: int,
    tid: int,
    at: datetime,
    author: int,
    events: list[dict[str, Any]],
    via: dict[str, Any] | None = None,
) -> dict[str, Any]:
    meta = {"system": {}, "custom": {}}
    return {"id": aid, "ticket_id": tid, "created_at": iso(at), "author_id": author, "via": via or _via(),
            "metadata": meta, "events": events}  # fmt: skip


def creation_events(next_event_id: Callable[[], int], **fields: Any) -> list[dict[str, Any]]:
    """The Create events of a new ticket's first audit, one a field set."""
    return [{"id": next_event_id(), "type": "Create", "field_name": f, "value": v} for f, v in fields.items()]


def _hours_from(now: datetime, hours: float | None) -> str | None:
    return iso(now + timedelta(hours=hours)) if hours is not None else None


def _ticket(spec: dict[str, Any], requester: int, now: datetime, ids: dict[str, int]):
    """One seeded ticket with its comments (the description first) and audits (creation, changes)."""

    def next_id(kind: str) -> int:
        ids[kind] += 1
        return ids[kind]

    tid, created, body = spec["id"], now - timedelta(hours=spec["hours_ago"]), spec["description"]
    changes = spec["changes"]
    first_priority = changes[0]["from"] if changes else spec["priority"]
    audit_id = next_id("audit")
    comments = [comment_record(next_id("comment"), requester, body, True, created, audit_id)]
    created_events = [
        comment_event(comments[0]),
        *creation_events(lambda: next_id("event"), status="new", priority=first_priority, type=spec["type"]),
    ]
    audits = [audit_record(audit_id, tid, created, requester, created_events)]
    for change in changes:
        event = {"id": next_id("event"), "type": "Change", "field_name": change["field"],
                 "value": change["to"], "previous_value": change["from"]}  # fmt: skip
        at = now - timedelta(hours=change["hours_ago"])
        audits.append(audit_record(next_id("audit"), tid, at, 901, [event]))
    for follow in spec["follow"]:
        author = requester if follow["by"] == "customer" else 901
        at, audit_id = now - timedelta(hours=follow["hours_ago"]), next_id("audit")
        comments.append(
            comment_record(next_id("comment"), author, follow["text"], follow["public"], at, audit_id)
        )
        audits.append(audit_record(audit_id, tid, at, author, [comment_event(comments[-1])]))
    updated = max([created] + [now - timedelta(hours=f["hours_ago"]) for f in spec["follow"]])
    metrics = [
        {"breach_at": _hours_from(now, m["breach_in_hours"]), "stage": m["stage"], "metric": m["metric"]}
        for m in spec["slas"]
    ]
    ticket = {
        "id": tid, "external_id": None, "via": _via(), "created_at": iso(created), "updated_at": iso(updated),
        "type": spec["type"], "subject": spec["subject"], "raw_subject": spec["subject"], "description": body,
        "priority": spec["priority"], "status": spec["status"], "recipient": None, "requester_id": requester,
        "submitter_id": requester, "assignee_id": None if spec["status"] == "new" else 901,
        "organization_id": spec["org"], "group_id": 1, "collaborator_ids": [], "follower_ids": [],
        "email_cc_ids": [], "forum_topic_id": None, "problem_id": None, "has_incidents": False,
        "is_public": True, "due_at": None, "tags": sorted({spec["area"], *spec.get("tags", [])}),
        "custom_fields": [{"id": PRODUCT_AREA_FIELD, "value": spec["area"]},
                          {"id": JIRA_ISSUE_FIELD, "value": None}],
        "satisfaction_rating": None, "sharing_agreement_ids": [], "followup_ids": [], "ticket_form_id": None,
        "brand_id": None, "allow_channelback": False, "allow_attachments": True,
        "slas": {"policy_metrics": metrics},
    }  # fmt: skip
    return ticket, comments, audits


# ----- Jira -----

ISSUE_TYPES = ["Bug", "Task", "Story", "Epic", "Incident", "Improvement", "New Feature", "Escalation"]
PRIORITIES = ["Highest", "High", "Medium", "Low", "Lowest"]
STATUSES = {  # name: (id, category key, category name)
    "To Do": ("10000", "new", "To Do"),
    "In Progress": ("3", "indeterminate", "In Progress"),
    "Done": ("10001", "done", "Done"),
}
TRANSITIONS = [("11", "To Do"), ("21", "In Progress"), ("31", "Done")]
LINK_TYPES = [
    ("10000", "Blocks", "is blocked by", "blocks"),
    ("10001", "Cloners", "is cloned by", "clones"),
    ("10002", "Duplicate", "is duplicated by", "duplicates"),
    ("10003", "Relates", "relates to", "relates to"),
]
# key: (id, name, security levels [(id, name)])
PROJECTS = {
    "ENG": ("10100", "Engineering", [("10300", "Internal")]),
    "SEC": ("10101", "Security", [("10301", "Restricted"), ("10302", "Security Team")]),
    "LEAD": ("10102", "Leadership", []),
    "PROD": ("10103", "Product", []),
    "SUP": ("10104", "Support L2", []),
}


def jira_seed() -> dict[str, Any]:
    projects = {
        key: {
            "id": pid,
            "key": key,
            "name": name,
            "issuetypes": [{"id": str(10000 + i), "name": n} for i, n in enumerate(ISSUE_TYPES)],
            "security_levels": [{"id": lid, "name": lname} for lid, lname in levels],
        }
        for key, (pid, name, levels) in PROJECTS.items()
    }
    return {
        "projects": projects,
        "issues": {},
        "next_issue_id": 10000,
        "next_ids": {"link": 1000, "comment": 2000},
    }
