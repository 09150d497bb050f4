"""The slice of JQL the sandbox Jira answers: ``field = value``, ``field != value`` and
``field in (a, b)`` for labels, project, key, status, issuetype; clauses joined by AND; an optional
``ORDER BY created|updated|key [ASC|DESC]``. Anything else is answered with JQL's own 400.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Issue = dict[str, Any]

_CLAUSE = re.compile(
    r"""^\s*(?P<field>[A-Za-z]+)\s*(?P<op>!=|=|\bin\b|\bnot in\b)\s*"""
    r"""(?P<value>"[^"]*"|'[^']*'|\([^)]*\)|[^\s()]+)\s*$""",
    re.IGNORECASE,
)
_ORDER = re.compile(r"\s+ORDER\s+BY\s+(?P<field>\w+)(?:\s+(?P<dir>ASC|DESC))?\s*$", re.IGNORECASE)


class JqlError(ValueError):
    pass


def _unquote(value: str) -> str:
    value = value.strip()
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'" else value


def _values(raw: str) -> list[str]:
    raw = raw.strip()
    if raw.startswith("("):
        return [_unquote(v) for v in raw[1:-1].split(",") if v.strip()]
    return [_unquote(raw)]


def _field_values(issue: Issue, field: str) -> list[str]:
    fields = issue["fields"]
    if field == "labels":
        return list(fields.get("labels") or [])
    if field == "project":
        return [fields["project"]["key"], fields["project"]["id"]]
    if field in ("key", "issuekey", "id"):
        return [issue["key"], issue["id"]]
    if field == "status":
        return [fields["status"]["name"]]
    if field in ("issuetype", "type"):
        return [fields["issuetype"]["name"]]
    raise JqlError(f"Field '{field}' does not exist or this field cannot be viewed by anonymous users.")


def compile_jql(jql: str) -> tuple[Callable[[Issue], bool], Callable[[list[Issue]], list[Issue]]]:
    """(predicate, sort) for a JQL string."""
    order = _ORDER.search(jql)
    where = jql[: order.start()] if order else jql
    checks: list[Callable[[Issue], bool]] = []
    for clause in filter(
        None, (c.strip() for c in re.split(r"\s+AND\s+", where.strip(), flags=re.IGNORECASE))
    ):
        match = _CLAUSE.match(clause)
        if not match:
            raise JqlError(f"Error in the JQL Query: cannot read {clause!r}")
        field, op, values = match["field"].lower(), match["op"].lower(), _values(match["value"])
        _field_values({"key": "", "id": "", "fields": _PROBE}, field)  # unknown fields fail now
        wanted = {v.lower() for v in values}

        def check(issue: Issue, f=field, o=op, w=wanted) -> bool:
            present = {v.lower() for v in _field_values(issue, f)}
            hit = bool(present & w)
            return hit if o in ("=", "in") else not hit

        checks.append(check)

    def predicate(issue: Issue) -> bool:
        return all(c(issue) for c in checks)

    def sort(issues: list[Issue]) -> list[Issue]:
        if not order:
            return sorted(issues, key=lambda i: int(i["id"]), reverse=True)
        key = order["field"].lower()
        if key not in ("created", "updated", "key"):
            raise JqlError(f"Not able to sort using field '{key}'.")
        reverse = (order["dir"] or "ASC").upper() == "DESC"
        if key == "key":
            return sorted(issues, key=lambda i: int(i["id"]), reverse=reverse)
        return sorted(issues, key=lambda i: (i["fields"][key], int(i["id"])), reverse=reverse)

    return predicate, sort


_PROBE = {"labels": [], "project": {"key": "", "id": ""}, "status": {"name": ""}, "issuetype": {"name": ""}}
