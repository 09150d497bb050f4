"""In-memory Jira Service Management on the sandbox Jira: one service desk (project ``DESK``), its request
types, organizations with properties, customers and agents, and requests with comments (public or
internal), participants, SLA cycles and priority changes.

A request is a Jira issue too, as in JSM: its summary, description, priority, labels and Jira status live
in the ``JiraState`` issue (so JQL search, ``GET /rest/api/{2|3}/issue/{key}`` and issue links see it);
what only JSM knows (reporter, request type, JSM status name, comments, SLA cycles) lives here.

The desk appears on first use — a ``/rest/servicedeskapi`` or ``/_sandbox/jsm`` call, or this class's
API — so a test or demo that only plays Jira sees only the issues it created. ``JiraState.reset()`` knows
nothing of JSM: ``ensure()`` re-seeds the desk on the next use after a reset. ``clock`` fixes the
moment SLA cycles are judged against (``None``: the real time), so a test can replay a bundle's ``now``.
"""

from __future__ import annotations

import copy
import json
import threading
import weakref
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

from connector.sandbox.common import JIRA_EMAIL
from connector.sandbox.jira_state import JiraState, Missing, jira_time, status_view

CUSTOMER_TOKEN = "sandbox-jsm-customer-token"  # published on purpose: customers' password in the sandbox
PROPERTY_KEY = "escalate"
ORGANIZATIONS_FIELD = "customfield_10002"  # the request's Organizations field (Cloud's usual id)
PRODUCT_AREA_FIELD = "customfield_10060"
# The API account (the same accountId ``GET /rest/api/3/myself`` answers with).
BOT = {"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "Escalate Bot", "emailAddress": JIRA_EMAIL}
# JSM status name: (status category, the Jira status the issue shows).
STATUSES = {
    "Waiting for support": ("new", "To Do"),
    "In progress": ("indeterminate", "In Progress"),
    "Waiting for customer": ("indeterminate", "In Progress"),
    "Escalated": ("indeterminate", "In Progress"),
    "Resolved": ("done", "Done"),
    "Closed": ("done", "Done"),
    "Canceled": ("done", "Done"),
}
_FIRST_ISSUE_ID = 30000  # far from the ids JiraState gives created issues


class JsmError(ValueError):
    """A request the sandbox refuses with 400 (JSM's ``errorMessage``)."""


def load_seed() -> dict[str, Any]:
    text = resources.files("connector.sandbox").joinpath("seed_jsm.json").read_text("utf-8")
    return json.loads(text)


_SEED = load_seed()
SERVICE_DESK = _SEED["service_desk"]
SERVICE_DESK_ID: str = SERVICE_DESK["id"]
PROJECT_KEY: str = SERVICE_DESK["projectKey"]
# Seeded requests by the case they exercise, e.g. REQUESTS["outage"] == "DESK-1".
REQUESTS = {r["name"]: f"{PROJECT_KEY}-{r['number']}" for r in _SEED["requests"]}
# The configuration (JSM_* names) that points the JSM connector at this desk.
ENVIRONMENT = {
    "JSM_PROJECT_KEY": PROJECT_KEY,
    "JSM_SERVICE_DESK_ID": SERVICE_DESK_ID,
    "JSM_ORG_PROPERTY_KEY": PROPERTY_KEY,
    "JSM_ORG_FIELD": ORGANIZATIONS_FIELD,
}

_STATES: weakref.WeakKeyDictionary[JiraState, JsmState] = weakref.WeakKeyDictionary()


def jsm_state_for(jira: JiraState) -> JsmState:
    """The JSM desk riding on a sandbox Jira (one per ``JiraState``)."""
    state = _STATES.get(jira)
    if state is None:
        state = _STATES[jira] = JsmState(jira)
    return state


class JsmState:
    def __init__(self, jira: JiraState) -> None:
        self.jira = jira
        self._lock = threading.RLock()
        self._seeded_for: object | None = None
        self._clock: datetime | None = None

    # ----- lifecycle -----

    @property
    def clock(self) -> datetime | None:
        """The moment SLA cycles are judged at; None: the real time. A reset clears it."""
        self.ensure()
        return self._clock

    @clock.setter
    def clock(self, moment: datetime | None) -> None:
        self.ensure()
        self._clock = moment

    def now(self) -> datetime:
        return self.clock or datetime.now(UTC).replace(microsecond=0)

    def ensure(self) -> None:
        """Seed the desk unless the Jira state already holds this seeding (it was reset otherwise)."""
        with self._lock:
            if self._seeded_for is not self.jira.projects:
                self._seed()

    def reset(self) -> None:
        with self._lock:
            self._seed()

    def _seed(self) -> None:
        self._clock = None
        self.service_desk = dict(SERVICE_DESK)
        self.issue_types = copy.deepcopy(_SEED["issue_types"])
        self.request_types = {
            t["id"]: {**t, "issueTypeId": self._issue_type(t["issueType"])["id"]}
            for t in _SEED["request_types"]
        }
        self.users: dict[str, dict[str, Any]] = {}
        self.organizations: dict[str, dict[str, Any]] = {}
        self.requests: dict[str, dict[str, Any]] = {}
        self._ids = {"issue": _FIRST_ISSUE_ID, "comment": 50000, "request": 0, "history": 70000}
        self.jira.projects[PROJECT_KEY] = {
            "id": self.service_desk["projectId"],
            "key": PROJECT_KEY,
            "name": self.service_desk["projectName"],
            "projectTypeKey": "service_desk",
            "issuetypes": copy.deepcopy(self.issue_types),
            "security_levels": [],
        }
        self._seeded_for = self.jira.projects
        self.add_user(BOT["accountId"], BOT["displayName"], BOT["emailAddress"], kind="agent")
        self._load_seed(self.now())

    def _load_seed(self, now: datetime) -> None:
        for agent in _SEED["agents"]:
            self.add_user(agent["accountId"], agent["displayName"], agent["emailAddress"], kind="agent")
        requester: dict[str, str] = {}
        for org in _SEED["organizations"]:
            details = dict(org["details"])
            days = details.pop("renewal_in_days", None)
            if days is not None:
                details["renewal_date"] = (now + timedelta(days=days)).date().isoformat()
            self.add_organization(org["id"], org["name"], {PROPERTY_KEY: details})
            for c in org["customers"]:
                self.add_user(c["accountId"], c["displayName"], c["emailAddress"], organizations=[org["id"]])
                requester.setdefault(org["id"], c["accountId"])
        agent = _SEED["agents"][0]["accountId"]

        def ago(hours: float | None) -> datetime | None:
            return None if hours is None else now - timedelta(hours=hours)

        for spec in sorted(_SEED["requests"], key=lambda r: r["number"]):
            reporter = requester[spec["organization"]]
            self.add_request(
                number=spec["number"],
                request_type_id=spec["request_type"],
                reporter=reporter,
                summary=spec["summary"],
                description=spec["description"],
                created=ago(spec["hours_ago"]),
                status=spec["status"],
                priority=spec["priority"],
                labels=spec["labels"],
                organization_ids=[spec["organization"]],
                fields={PRODUCT_AREA_FIELD: {"value": spec["product_area"]}},
                comments=[
                    {"author": reporter if c["by"] == "customer" else agent, "body": c["text"],
                     "public": c["public"], "created": ago(c["hours_ago"])}
                    for c in spec["comments"]
                ],
                sla=[
                    {"name": s["name"],
                     "ongoing": s.get("ongoing") and {"start": ago(s["ongoing"]["start_hours_ago"]),
                                                      "breach_at": ago(-s["ongoing"]["breach_in_hours"]),
                                                      "paused": s["ongoing"]["paused"]},
                     "completed": [{"start": ago(c["start_hours_ago"]), "stop": ago(c["stop_hours_ago"]),
                                    "breach_at": ago(-c["breach_in_hours"])} for c in s.get("completed", [])]}
                    for s in spec["sla"]
                ],
                changes=[{"field": c["field"], "from": c["from"], "to": c["to"], "at": ago(c["hours_ago"])}
                         for c in spec["changes"]],
            )  # fmt: skip

    def clear_requests(self) -> None:
        """No requests at all (the desk, its types, users and organizations stay)."""
        self.ensure()
        with self._lock:
            for key in list(self.requests):
                self.jira.issues.pop(key, None)
            self.requests.clear()
            self.jira.projects[PROJECT_KEY]["counter"] = 0

    def clear_directory(self) -> None:
        """No organizations, customers or agents but the API account."""
        self.ensure()
        with self._lock:
            self.organizations.clear()
            self.users = {BOT["accountId"]: self.users[BOT["accountId"]]}

    # ----- directory -----

    def _issue_type(self, name: str) -> dict[str, Any]:
        return next(t for t in self.issue_types if t["name"] == name)

    def add_user(
        self,
        account_id: str,
        name: str,
        email: str | None,
        *,
        kind: str = "customer",
        organizations: list[str] | tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """A customer (portal account) or an agent (an Atlassian account licensed for the desk)."""
        if kind not in ("customer", "agent"):
            raise ValueError("kind must be customer or agent")
        with self._lock:
            user = {"accountId": account_id, "displayName": name, "emailAddress": email, "kind": kind}
            self.users[account_id] = user
            for oid in organizations:
                self.organizations[oid]["members"].append(account_id)
            return user

    def add_organization(self, org_id: str, name: str, properties: dict[str, Any] | None = None) -> None:
        with self._lock:
            self.organizations[str(org_id)] = {
                "id": str(org_id),
                "name": name,
                "members": [],
                "properties": copy.deepcopy(properties or {}),
            }

    def organization(self, org_id: str) -> dict[str, Any]:
        self.ensure()
        try:
            return self.organizations[str(org_id)]
        except KeyError:
            raise Missing(org_id) from None

    def organizations_of(self, account_id: str) -> list[dict[str, Any]]:
        return [o for o in self.organizations.values() if account_id in o["members"]]

    def user(self, account_id: str) -> dict[str, Any]:
        try:
            return self.users[account_id]
        except KeyError:
            raise Missing(account_id) from None

    def jira_user(self, account_id: str) -> dict[str, Any]:
        """A user as Jira's own REST API shows it (``accountType`` tells a portal customer)."""
        user = self.user(account_id)
        return {
            "accountId": user["accountId"],
            "displayName": user["displayName"],
            "emailAddress": user["emailAddress"],
            "active": True,
            "timeZone": "UTC",
            "accountType": "customer" if user["kind"] == "customer" else "atlassian",
        }

    def customer_by_email(self, email: str) -> dict[str, Any] | None:
        return next(
            (u for u in self.users.values() if u["kind"] == "customer" and u["emailAddress"] == email), None
        )

    # ----- requests -----

    def add_request(
        self,
        *,
        request_type_id: str,
        reporter: str,
        summary: str,
        description: str = "",
        created: datetime | None = None,
        status: str = "Waiting for support",
        priority: str | None = "Medium",
        labels: list[str] | tuple[str, ...] = (),
        organization_ids: list[str] | tuple[str, ...] = (),
        participants: list[str] | tuple[str, ...] = (),
        fields: dict[str, Any] | None = None,
        comments: list[dict[str, Any]] | tuple[dict[str, Any], ...] = (),
        sla: list[dict[str, Any]] | tuple[dict[str, Any], ...] = (),
        changes: list[dict[str, Any]] | tuple[dict[str, Any], ...] = (),
        number: int | None = None,
    ) -> str:
        """A request and its Jira issue; returns its key. Times are aware datetimes (default: now).

        ``comments``: ``{author, body, public, created}``; ``sla``: ``{name, goal_hours?, ongoing: {start,
        breach_at, paused} | None, completed: [{start, stop, breach_at}]}``; ``changes``: ``{field, from,
        to, at}`` (Jira names, e.g. priority "Medium" → "Highest").
        """
        self.ensure()
        if status not in STATUSES:
            raise JsmError(f"unknown JSM status {status!r}")
        with self._lock:
            request_type = self.request_types[str(request_type_id)]
            self.user(reporter)
            created = created or self.now()
            project = self.jira.projects[PROJECT_KEY]
            number = number or project.get("counter", 0) + 1
            project["counter"] = max(project.get("counter", 0), number)
            key = f"{PROJECT_KEY}-{number}"
            self._ids["issue"] += 1
            last = max([created, *(c.get("created") or created for c in comments)])
            self.jira.issues[key] = {
                "id": str(self._ids["issue"]),
                "key": key,
                "project": PROJECT_KEY,
                "issuetype": next(t for t in self.issue_types if t["id"] == request_type["issueTypeId"]),
                "summary": summary,
                "labels": list(labels),
                "description": description,
                "description_format": "wiki",
                "security": None,
                "priority": priority,
                "status": STATUSES[status][1],
                "created": created,
                "updated": last,
                "reporter": self.jira_user(reporter),  # what the Jira issue view shows as reporter
                "created_monotonic": 0.0,  # visible to search at once
                "api_version": "2",
                "remote_links": [],
                "comments": [],
            }
            self.requests[key] = {
                "key": key,
                "request_type_id": str(request_type_id),
                "reporter": reporter,
                "participants": list(participants),
                "organization_ids": [str(o) for o in organization_ids],
                "status": status,
                "status_date": last,
                "fields": copy.deepcopy(fields or {}),
                "comments": [],
                "sla": [self._sla(i, s, created) for i, s in enumerate(sla, start=1)],
                "changes": [dict(c, id=str(self._next("history"))) for c in changes],
            }
            for c in comments:
                self.add_comment(
                    key, c["author"], c["body"], public=c.get("public", True), created=c.get("created")
                )
            self.jira.issues[key]["updated"] = last
            return key

    def _sla(self, sla_id: int, spec: dict[str, Any], created: datetime) -> dict[str, Any]:
        goal = timedelta(hours=spec.get("goal_hours") or 0)
        ongoing = spec.get("ongoing")
        cycles = [ongoing] if ongoing else list(spec.get("completed") or [])
        if not goal and cycles and cycles[0].get("breach_at") and cycles[0].get("start"):
            goal = cycles[0]["breach_at"] - cycles[0]["start"]
        return {
            "id": str(sla_id),
            "name": spec["name"],
            "goal": goal,
            "ongoing": dict(ongoing) if ongoing else None,
            "completed": [dict(c) for c in spec.get("completed") or []],
        }

    def _next(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    def request(self, key_or_id: str) -> dict[str, Any]:
        self.ensure()
        with self._lock:
            if key_or_id in self.requests:
                return self.requests[key_or_id]
            issue = self.jira.find(key_or_id)
            if issue["key"] in self.requests:
                return self.requests[issue["key"]]
        raise Missing(key_or_id)

    def issue(self, key: str) -> dict[str, Any]:
        return self.jira.find(key)

    def add_comment(
        self, key: str, author: str, body: str, *, public: bool, created: datetime | None = None
    ) -> dict[str, Any]:
        if not isinstance(body, str) or not body.strip():
            raise JsmError("The comment body cannot be empty.")
        with self._lock:
            record = self.request(key)
            self.user(author)
            comment = {
                "id": str(self._next("comment")),
                "author": author,
                "body": body,
                "public": bool(public),
                "created": created or self.now(),
            }
            record["comments"].append(comment)
            self.jira.issues[record["key"]]["updated"] = comment["created"]
            return comment

    def set_status(self, key: str, status: str) -> None:
        if status not in STATUSES:
            raise JsmError(f"unknown JSM status {status!r}")
        with self._lock:
            record = self.request(key)
            record["status"], record["status_date"] = status, self.now()
            self.jira.issues[record["key"]]["status"] = STATUSES[status][1]

    def current_status(self, record: dict[str, Any]) -> tuple[str, str]:
        """(status name, category key); the Jira status wins when it was moved to another category."""
        category, _ = STATUSES[record["status"]]
        jira_status = self.jira.issues[record["key"]]["status"]
        jira_category = status_view(jira_status)["statusCategory"]["key"]
        return (record["status"], category) if jira_category == category else (jira_status, jira_category)

    def can_see(self, account_id: str, record: dict[str, Any]) -> bool:
        """A customer sees requests they raised, take part in, or that are shared with their organization."""
        if account_id == record["reporter"] or account_id in record["participants"]:
            return True
        return any(
            account_id in self.organizations.get(o, {}).get("members", []) for o in record["organization_ids"]
        )

    # ----- custom fields (an issue edit that sets only custom fields) -----

    def set_custom_fields(self, key: str, fields: dict[str, Any]) -> None:
        """Custom field values of an issue: a request's own fields, or kept on any other Jira issue."""
        with self._lock:
            store = self._custom_fields_of(self.jira.find(key))
            for name, value in fields.items():
                store[name] = copy.deepcopy(value)
            self.jira.find(key)["updated"] = datetime.now(UTC)

    def custom_field(self, key: str, field_id: str) -> Any:
        with self._lock:
            return self._custom_fields_of(self.jira.find(key)).get(field_id)

    def _custom_fields_of(self, issue: dict[str, Any]) -> dict[str, Any]:
        if self._seeded_for is self.jira.projects and issue["key"] in self.requests:
            return self.requests[issue["key"]]["fields"]
        return issue.setdefault("custom_fields", {})  # lives and dies with the Jira state

    # ----- inspection -----

    def dump(self) -> dict[str, Any]:
        self.ensure()
        with self._lock:

            def plain(value: Any) -> Any:
                if isinstance(value, datetime):
                    return jira_time(value)
                if isinstance(value, timedelta):
                    return value.total_seconds()
                if isinstance(value, dict):
                    return {k: plain(v) for k, v in value.items()}
                if isinstance(value, list):
                    return [plain(v) for v in value]
                return value

            return plain(
                {
                    "clock": self.clock,
                    "service_desk": self.service_desk,
                    "request_types": list(self.request_types.values()),
                    "users": list(self.users.values()),
                    "organizations": list(self.organizations.values()),
                    "requests": list(self.requests.values()),
                }
            )
