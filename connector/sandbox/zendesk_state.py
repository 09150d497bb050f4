"""In-memory state of the sandbox Zendesk: seeded on reset, changed by the API, read by tests."""

from __future__ import annotations

import copy
import html
import re
import threading
from datetime import datetime
from typing import Any

from connector.sandbox.common import ZENDESK_EMAIL, ZENDESK_TOKEN, RequestLog, iso, utcnow
from connector.sandbox.faults import Faults
from connector.sandbox.seed import (
    API_USER_ID,
    audit_record,
    comment_event,
    comment_record,
    creation_events,
    zendesk_seed,
)

TRACKED = ("status", "priority", "type", "group_id", "assignee_id", "subject")
STATUSES = ("new", "open", "pending", "hold", "solved", "closed")


def api_via() -> dict[str, Any]:
    """The via of an update made through the API (ours): the audit's and its comment's."""
    return {"channel": "api", "source": {"from": {}, "to": {}, "rel": None}}


class RecordInvalid(ValueError):
    """Zendesk's 422 ``RecordInvalid``; ``details`` maps a field to its messages."""

    def __init__(self, details: dict[str, list[dict[str, str]]]) -> None:
        super().__init__("Record validation errors")
        self.details = details


def _invalid(field: str, description: str) -> RecordInvalid:
    return RecordInvalid({field: [{"description": description, "error": "InvalidValue"}]})


def html_to_text(fragment: str) -> str:
    text = re.sub(r"(?i)<br\s*/?>|</p>|</li>|</h\d>", "\n", fragment)
    return html.unescape(re.sub(r"<[^>]+>", "", text)).strip()


class ZendeskState:
    def __init__(
        self, *, email: str = ZENDESK_EMAIL, token: str = ZENDESK_TOKEN, now: datetime | None = None
    ):
        self.email = email
        self.token = token
        self.faults = Faults()
        self.requests = RequestLog()
        self._lock = threading.RLock()
        self.reset(now)

    def reset(self, now: datetime | None = None) -> None:
        with self._lock:
            self.seeded_at = now or utcnow()
            data = zendesk_seed(self.seeded_at)
            self.organizations: dict[int, dict[str, Any]] = data["organizations"]
            self.users: dict[int, dict[str, Any]] = data["users"]
            self.groups: dict[int, dict[str, Any]] = data["groups"]
            self.tickets: dict[int, dict[str, Any]] = data["tickets"]
            self.comments: dict[int, list[dict[str, Any]]] = data["comments"]
            self.audits: dict[int, list[dict[str, Any]]] = data["audits"]
            self._ids: dict[str, int] = data["next_ids"]
            self.writes: list[dict[str, Any]] = []
            self.faults.clear()
            self.requests.clear()

    def authenticate(self, user: str, password: str) -> dict[str, Any] | None:
        """Zendesk API-token auth: Basic ``{email}/token:{token}``."""
        if user == f"{self.email}/token" and password == self.token:
            return self.user(API_USER_ID)
        return None

    # ----- reads (copies, so callers cannot change the state by accident) -----

    def ticket(self, tid: int) -> dict[str, Any] | None:
        with self._lock:
            return copy.deepcopy(self.tickets.get(tid))

    def all_tickets(self) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(t) for _, t in sorted(self.tickets.items())]

    def ticket_comments(self, tid: int) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self.comments.get(tid, []))

    def ticket_audits(self, tid: int) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self.audits.get(tid, []))

    def internal_notes(self, tid: int) -> list[dict[str, Any]]:
        return [c for c in self.ticket_comments(tid) if not c["public"]]

    def user(self, uid: int) -> dict[str, Any] | None:
        with self._lock:
            return copy.deepcopy(self.users.get(uid))

    def organization(self, oid: int) -> dict[str, Any] | None:
        with self._lock:
            return copy.deepcopy(self.organizations.get(oid))

    def dump(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(
                {
                    "seeded_at": iso(self.seeded_at),
                    "organizations": list(self.organizations.values()),
                    "users": list(self.users.values()),
                    "groups": list(self.groups.values()),
                    "tickets": list(self.tickets.values()),
                    "comments": {str(k): v for k, v in self.comments.items()},
                    "audits": {str(k): v for k, v in self.audits.items()},
                    "writes": self.writes,
                    "faults": self.faults.as_list(),
                }
            )

    # ----- writes -----

    def _next(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    def record_write(self, method: str, path: str, body: Any) -> None:
        with self._lock:
            self.writes.append(
                {"method": method, "path": path, "body": copy.deepcopy(body), "at": iso(utcnow())}
            )

    def update_ticket(self, tid: int, changes: dict[str, Any], author_id: int) -> tuple[dict, dict]:
        """``PUT /api/v2/tickets/{id}.json``: validates everything first, then applies it as one audit."""
        with self._lock:
            ticket = self.tickets[tid]
            now = utcnow()
            events: list[dict[str, Any]] = []
            plan = self._validate(changes)
            audit_id = self._next("audit")
            for field, value in plan.items():
                if field in TRACKED and ticket.get(field) != value:
                    events.append(
                        {
                            "id": self._next("event"),
                            "type": "Change",
                            "field_name": field,
                            "value": value,
                            "previous_value": ticket.get(field),
                        }
                    )
                    ticket[field] = value
            tags = set(changes["tags"]) if isinstance(changes.get("tags"), list) else set(ticket["tags"])
            tags |= set(changes.get("additional_tags") or [])
            tags -= set(changes.get("remove_tags") or [])
            if sorted(tags) != ticket["tags"]:
                events.append(
                    {
                        "id": self._next("event"),
                        "type": "Change",
                        "field_name": "tags",
                        "value": sorted(tags),
                        "previous_value": ticket["tags"],
                    }
                )
                ticket["tags"] = sorted(tags)
            for field in changes.get("custom_fields") or []:
                self._set_custom_field(ticket, int(field["id"]), field.get("value"), events)
            comment = changes.get("comment")
            if isinstance(comment, dict):
                events.insert(0, comment_event(self._comment(tid, comment, author_id, now, audit_id)))
            ticket["updated_at"] = iso(now)
            audit = audit_record(audit_id, tid, now, author_id, events, via=api_via())
            self.audits.setdefault(tid, []).append(audit)
            return copy.deepcopy(ticket), copy.deepcopy(audit)

    def _validate(self, changes: dict[str, Any]) -> dict[str, Any]:
        plan: dict[str, Any] = {}
        if "group_id" in changes:
            gid = changes["group_id"]
            if gid is not None and int(gid) not in self.groups:
                raise _invalid("group", f"Group: {gid} is not a valid group")
            plan["group_id"] = int(gid) if gid is not None else None
        if "status" in changes:
            if changes["status"] not in STATUSES:
                raise _invalid("status", f"Status: {changes['status']} is not valid")
            plan["status"] = changes["status"]
        for field in ("priority", "type", "assignee_id", "subject"):
            if field in changes:
                plan[field] = changes[field]
        comment = changes.get("comment")
        if comment is not None and not (
            isinstance(comment, dict) and (comment.get("body") or comment.get("html_body"))
        ):
            raise _invalid("comment", "Comment: body can't be blank")
        return plan

    def _set_custom_field(self, ticket: dict[str, Any], fid: int, value: Any, events: list) -> None:
        for field in ticket["custom_fields"]:
            if field["id"] == fid:
                if field["value"] != value:
                    events.append(
                        {
                            "id": self._next("event"),
                            "type": "Change",
                            "field_name": str(fid),
                            "value": value,
                            "previous_value": field["value"],
                        }
                    )
                    field["value"] = value
                return
        # Zendesk ignores ids of fields the account does not have; so does the sandbox.

    def _comment(self, tid: int, comment: dict, author_id: int, now, audit_id: int) -> dict[str, Any]:
        html_body = comment.get("html_body")
        body = html_to_text(html_body) if html_body else str(comment.get("body"))
        record = comment_record(
            self._next("comment"),
            int(comment.get("author_id") or author_id),
            body,
            bool(comment.get("public", True)),
            now,
            audit_id,
            html_body=html_body,
            via=api_via(),
        )
        self.comments.setdefault(tid, []).append(record)
        return record

    def modify_tags(self, tid: int, op: str, tags: list[str]) -> list[str]:
        """``PUT`` adds, ``DELETE`` removes, ``POST`` replaces (the tags endpoint)."""
        with self._lock:
            ticket = self.tickets[tid]
            current = set(ticket["tags"])
            new = {"PUT": current | set(tags), "DELETE": current - set(tags), "POST": set(tags)}[op]
            if sorted(new) != ticket["tags"]:
                ticket["tags"] = sorted(new)
                ticket["updated_at"] = iso(utcnow())
            return list(ticket["tags"])

    def add_comment(
        self, tid: int, body: str, *, author_id: int, public: bool = True, at: datetime | None = None
    ) -> dict[str, Any]:
        """For tests and demos: a comment as if written at ``at`` (default: now), in an audit of its own
        as Zendesk records every comment; the ticket's other fields are left as they are."""
        with self._lock:
            at = at or utcnow()
            audit_id = self._next("audit")
            record = comment_record(self._next("comment"), author_id, body, public, at, audit_id)
            self.comments.setdefault(tid, []).append(record)
            self.audits.setdefault(tid, []).append(
                audit_record(audit_id, tid, at, author_id, [comment_event(record)])
            )
            return copy.deepcopy(record)

    def add_ticket(self, **fields: Any) -> dict[str, Any]:
        """For tests and demos: a new ticket from a few fields, with its description as first comment."""
        with self._lock:
            tid = int(fields.pop("id", 0)) or self._next("ticket")
            now = utcnow()
            created = fields.pop("created_at", iso(now))
            description = str(fields.pop("description", fields.get("subject", "")))
            requester = int(fields.get("requester_id") or 1006)
            ticket = {
                "id": tid,
                "external_id": None,
                "created_at": created,
                "updated_at": created,
                "type": "problem",
                "subject": "",
                "raw_subject": "",
                "description": description,
                "priority": "normal",
                "status": "open",
                "requester_id": requester,
                "submitter_id": requester,
                "assignee_id": None,
                "organization_id": self.users.get(requester, {}).get("organization_id"),
                "group_id": 1,
                "collaborator_ids": [],
                "follower_ids": [],
                "tags": [],
                "custom_fields": [],
                "via": {"channel": "web", "source": {"from": {}, "to": {}, "rel": None}},
                "slas": {"policy_metrics": []},
                **fields,
            }
            ticket["raw_subject"] = ticket["subject"]
            self.tickets[tid] = ticket
            # The description is the first comment, added by the creation's audit (with a Create event
            # a field set, as Zendesk records a new ticket).
            audit_id = self._next("audit")
            first = comment_record(self._next("comment"), requester, description, True, now, audit_id)
            self.comments[tid] = [first]
            created = {f: ticket[f] for f in ("status", "priority", "type") if ticket.get(f) is not None}
            events = [comment_event(first), *creation_events(lambda: self._next("event"), **created)]
            self.audits[tid] = [audit_record(audit_id, tid, now, requester, events)]
            return copy.deepcopy(ticket)
