"""In-memory state of the sandbox Jira: projects from the seed, issues, remote links, comments, links.

``deployment_type`` ("Cloud" or "Server") changes what serverInfo says and which endpoints exist;
``search_delay_s`` makes a new issue invisible to JQL for that long, as Jira Cloud's eventually
consistent search does, while ``GET /issue/{key}`` sees it at once.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

from connector.sandbox.adf_check import adf_errors, adf_text
from connector.sandbox.common import JIRA_EMAIL, JIRA_TOKEN, RequestLog
from connector.sandbox.faults import Faults
from connector.sandbox.jira_jql import compile_jql
from connector.sandbox.seed import LINK_TYPES, PRIORITIES, STATUSES, TRANSITIONS, jira_seed

TEXT_LIMIT = 32_767
_TOO_LONG = "The entered text is too long. It exceeds the allowed limit of 32,767 characters."


class FieldErrors(ValueError):
    """Jira's 400: ``{"errorMessages": [...], "errors": {field: message}}``."""

    def __init__(self, errors: dict[str, str] | None = None, messages: list[str] | None = None) -> None:
        super().__init__("; ".join([*(messages or []), *(errors or {}).values()]))
        self.errors = errors or {}
        self.messages = messages or []


class Missing(LookupError):
    pass


def jira_time(moment: datetime) -> str:
    """Jira's timestamp format: ``2026-11-20T15:00:00.000+0000``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


class JiraState:
    def __init__(
        self,
        *,
        email: str = JIRA_EMAIL,
        token: str = JIRA_TOKEN,
        deployment_type: str = "Cloud",
        search_delay_s: float = 0.0,
    ) -> None:
        self.email = email
        self.token = token
        self.faults = Faults()
        self.requests = RequestLog()
        self._lock = threading.RLock()
        self._initial = (deployment_type, search_delay_s)
        self.reset()

    def reset(self) -> None:
        with self._lock:
            data = jira_seed()
            self.deployment_type, self.search_delay_s = self._initial
            self.projects: dict[str, dict[str, Any]] = data["projects"]
            self.issues: dict[str, dict[str, Any]] = {}
            self._next_issue_id: int = data["next_issue_id"]
            self._ids: dict[str, int] = data["next_ids"]
            self.issue_links: list[dict[str, Any]] = []
            self.faults.clear()
            self.requests.clear()

    def configure(self, *, deployment_type: str | None = None, search_delay_s: float | None = None) -> None:
        with self._lock:
            if deployment_type is not None:
                if deployment_type not in ("Cloud", "Server"):
                    raise ValueError("deployment_type must be Cloud or Server")
                self.deployment_type = deployment_type
            if search_delay_s is not None:
                self.search_delay_s = float(search_delay_s)

    @property
    def is_cloud(self) -> bool:
        return self.deployment_type == "Cloud"

    def authenticate(self, basic: tuple[str, str] | None, bearer: str | None) -> bool:
        return (basic is not None and basic == (self.email, self.token)) or (
            bearer is not None and bearer == self.token
        )

    # ----- issues -----

    def find(self, key_or_id: str) -> dict[str, Any]:
        with self._lock:
            for issue in self.issues.values():
                if key_or_id in (issue["key"], issue["id"]):
                    return issue
        raise Missing(key_or_id)

    def create_issue(self, fields: Any, api_version: str) -> dict[str, Any]:
        with self._lock:
            record = self._validated(fields if isinstance(fields, dict) else {}, api_version)
            project = self.projects[record["project"]]
            project["counter"] = project.get("counter", 0) + 1
            self._next_issue_id += 1
            now = datetime.now(UTC)
            record.update(
                id=str(self._next_issue_id),
                key=f"{project['key']}-{project['counter']}",
                status="To Do",
                created=now,
                updated=now,
                created_monotonic=time.monotonic(),
                api_version=api_version,
                remote_links=[],
                comments=[],
            )
            self.issues[record["key"]] = record
            return record

    def _validated(self, fields: dict[str, Any], api_version: str) -> dict[str, Any]:
        errors: dict[str, str] = {}
        project = self._project(fields.get("project"))
        if project is None:
            errors["project"] = "valid project is required"
        wanted_type = fields.get("issuetype") or {}
        issue_type = next(
            (
                t
                for t in (project or {}).get("issuetypes", [])
                if wanted_type and wanted_type.get("name", wanted_type.get("id")) in (t["name"], t["id"])
            ),
            None,
        )
        if project is not None and issue_type is None:
            errors["issuetype"] = "Specify a valid issue type"
        summary = fields.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            errors["summary"] = "You must specify a summary of the issue."
        elif len(summary) > 255:
            errors["summary"] = "Summary must be less than 255 characters."
        elif "\n" in summary or "\r" in summary:
            errors["summary"] = "The summary is invalid because it contains newline characters."
        description = fields.get("description")
        if description is not None:
            problem = self._description_problem(description, api_version)
            if problem:
                errors["description"] = problem
        labels = fields.get("labels") or []
        bad = [x for x in labels if not isinstance(x, str) or not x or " " in x or len(x) > 255]
        if bad:
            errors["labels"] = f"The label '{bad[0]}' contains spaces which is invalid."
        security = None
        if fields.get("security") is not None:
            wanted = fields["security"] or {}
            security = next(
                (
                    lv
                    for lv in (project or {}).get("security_levels", [])
                    if wanted.get("id", wanted.get("name")) in (lv["id"], lv["name"])
                ),
                None,
            )
            if security is None:
                errors["security"] = "Security level: The security level is invalid."
        priority = (fields.get("priority") or {}).get("name")
        if priority is not None and priority not in PRIORITIES:
            errors["priority"] = f"Specify a valid priority ({priority} is not one)."
        if errors:
            raise FieldErrors(errors)
        return {
            "project": project["key"],
            "issuetype": issue_type,
            "summary": summary,
            "labels": list(labels),
            "description": description,
            "description_format": "adf" if api_version == "3" else "wiki",
            "security": security,
            "priority": priority,
        }

    def _project(self, ref: Any) -> dict[str, Any] | None:
        if not isinstance(ref, dict):
            return None
        wanted = ref.get("key") or ref.get("id")
        return next((p for p in self.projects.values() if wanted in (p["key"], p["id"])), None)

    @staticmethod
    def _description_problem(value: Any, api_version: str) -> str | None:
        if api_version == "3":
            if not isinstance(value, dict):
                return "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
            problems = adf_errors(value)
            if problems:
                return "Operation value must be an Atlassian Document: " + problems[0]
            return _TOO_LONG if len(json.dumps(value, separators=(",", ":"))) > TEXT_LIMIT else None
        if not isinstance(value, str):
            return "Operation value must be a string"
        return _TOO_LONG if len(value) > TEXT_LIMIT else None

    def search(self, jql: str) -> list[dict[str, Any]]:
        predicate, sort = compile_jql(jql)
        horizon = time.monotonic() - self.search_delay_s
        with self._lock:
            views = [
                self.view_for_search(i) for i in self.issues.values() if i["created_monotonic"] <= horizon
            ]
            return [self.issues[v["key"]] for v in sort([v for v in views if predicate(v)])]

    def view_for_search(self, issue: dict[str, Any]) -> dict[str, Any]:
        """The few fields JQL matching reads."""
        return {
            "id": issue["id"],
            "key": issue["key"],
            "fields": {
                "labels": issue["labels"],
                "project": {"key": issue["project"], "id": self.projects[issue["project"]]["id"]},
                "status": {"name": issue["status"]},
                "issuetype": issue["issuetype"],
                "created": jira_time(issue["created"]),
                "updated": jira_time(issue["updated"]),
            },
        }

    def touch(self, issue: dict[str, Any]) -> None:
        issue["updated"] = datetime.now(UTC)

    # ----- remote links, comments, transitions, issue links -----

    def upsert_remote_link(self, key: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        obj = body.get("object")
        if not isinstance(obj, dict) or not obj.get("url") or not obj.get("title"):
            raise FieldErrors({"object": "The remote link requires an object with a url and a title."})
        with self._lock:
            issue = self.find(key)
            global_id = body.get("globalId")
            existing = next(
                (x for x in issue["remote_links"] if global_id and x.get("globalId") == global_id), None
            )
            fields = {
                "globalId": global_id,
                "application": body.get("application") or {},
                "relationship": body.get("relationship"),
                "object": obj,
            }
            if existing is not None:
                existing.update(fields)  # Jira sets fields missing from the request to null
                self.touch(issue)
                return existing, False
            self._ids["link"] += 1
            link = {"id": self._ids["link"], **fields}
            issue["remote_links"].append(link)
            self.touch(issue)
            return link, True

    def add_comment(self, key: str, body: Any, api_version: str) -> dict[str, Any]:
        if api_version == "3":
            problems = ["body: not an ADF document"] if not isinstance(body, dict) else adf_errors(body)
            if problems:
                raise FieldErrors({"comment": "Comment body is not valid: " + problems[0]})
        elif not isinstance(body, str) or not body.strip():
            raise FieldErrors({"comment": "Comment body can not be empty!"})
        with self._lock:
            issue = self.find(key)
            self._ids["comment"] += 1
            now = datetime.now(UTC)
            comment = {
                "id": str(self._ids["comment"]),
                "body": body,
                "format": "adf" if api_version == "3" else "wiki",
                "created": now,
                "updated": now,
            }
            issue["comments"].append(comment)
            self.touch(issue)
            return comment

    def transitions(self, key: str) -> list[dict[str, Any]]:
        issue = self.find(key)
        return [
            {"id": tid, "name": name, "to": status_view(name)}
            for tid, name in TRANSITIONS
            if name != issue["status"]
        ]

    def transition(self, key: str, transition_id: str) -> None:
        with self._lock:
            issue = self.find(key)
            target = dict(TRANSITIONS).get(str(transition_id))
            if target is None:
                raise FieldErrors(messages=[f"Transition id '{transition_id}' is not valid for this issue."])
            issue["status"] = target
            self.touch(issue)

    def set_status(self, key: str, name: str) -> None:
        if name not in STATUSES:
            raise FieldErrors(messages=[f"No status {name!r}"])
        with self._lock:
            issue = self.find(key)
            issue["status"] = name
            self.touch(issue)

    def link_issues(self, type_name: str, inward: str, outward: str) -> dict[str, Any]:
        link_type = next((t for t in LINK_TYPES if type_name in (t[0], t[1])), None)
        if link_type is None:
            raise FieldErrors(messages=[f"No issue link type with name '{type_name}' found."])
        with self._lock:
            source, target = self.find(inward), self.find(outward)
            self._ids["link"] += 1
            link = {
                "id": str(self._ids["link"]),
                "type": link_type[1],
                "inward": source["key"],
                "outward": target["key"],
            }
            self.issue_links.append(link)
            self.touch(source)
            self.touch(target)
            return link

    def dump(self) -> dict[str, Any]:
        with self._lock:
            issues = []
            for issue in self.issues.values():
                item = {k: v for k, v in issue.items() if k != "created_monotonic"}
                item["created"], item["updated"] = jira_time(issue["created"]), jira_time(issue["updated"])
                item["comments"] = [
                    {**c, "created": jira_time(c["created"]), "updated": jira_time(c["updated"])}
                    for c in issue["comments"]
                ]
                issues.append(item)
            return copy.deepcopy(
                {
                    "deployment_type": self.deployment_type,
                    "search_delay_s": self.search_delay_s,
                    "projects": list(self.projects.values()),
                    "issues": issues,
                    "issue_links": self.issue_links,
                    "faults": self.faults.as_list(),
                }
            )


def status_view(name: str) -> dict[str, Any]:
    sid, category, category_name = STATUSES[name]
    return {
        "id": sid,
        "name": name,
        "statusCategory": {
            "id": {"new": 2, "indeterminate": 4, "done": 3}[category],
            "key": category,
            "name": category_name,
        },
    }


def description_as(issue: dict[str, Any], api_version: str) -> Any:
    """A stored description read through v2 (text) or v3 (ADF), whichever it was written in."""
    value = issue["description"]
    if value is None:
        return None
    if api_version == "3":
        if issue["description_format"] == "adf":
            return value
        return {
            "type": "doc",
            "version": 1,
            "content": [
                {"type": "paragraph", "content": [{"type": "text", "text": p}]}
                for p in value.split("\n\n")
                if p
            ],
        }
    return adf_text(value) if issue["description_format"] == "adf" else value
