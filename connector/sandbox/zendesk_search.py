"""The part of Zendesk's search syntax the sandbox understands (tickets only).

Supported: ``type:ticket``; ``created``/``updated`` with ``>``, ``<``, ``>=``, ``<=`` or ``:`` against a
date, an ISO 8601 time or a relative ``4hours``/``14days``; ``status`` (``:`` or ``<``/``>`` in
new < open < pending < hold < solved < closed); ``priority``, ``ticket_type``, ``tags``/``tag``,
``organization``/``organization_id``, ``requester``/``requester_id``, ``group``/``group_id``; a leading
``-`` negates; anything else is a word that must appear in the subject or description.
See https://developer.zendesk.com/api-reference/ticketing/ticket-management/search/.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]

_ORDER = ("new", "open", "pending", "hold", "solved", "closed")
_TERM = re.compile(r"^(?P<neg>-)?(?P<key>[a-z_]+)(?P<op>>=|<=|:|>|<)(?P<value>.+)$")
_RELATIVE = re.compile(r"^(\d+)(minutes?|hours?|days?|weeks?|months?|years?)$")
_UNITS = {"minute": 1 / 1440, "hour": 1 / 24, "day": 1, "week": 7, "month": 30, "year": 365}
_FIELDS = {
    "priority": "priority",
    "ticket_type": "type",
    "organization": "organization_id",
    "organization_id": "organization_id",
    "requester": "requester_id",
    "requester_id": "requester_id",
    "group": "group_id",
    "group_id": "group_id",
    "assignee": "assignee_id",
}


class QueryError(ValueError):
    pass


def parse_time(value: str, now: datetime) -> datetime:
    match = _RELATIVE.match(value)
    if match:
        unit = match.group(2).rstrip("s")
        return now - timedelta(days=int(match.group(1)) * _UNITS[unit])
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(f"cannot read the time {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _compare(left: Any, op: str, right: Any) -> bool:
    return {
        ">": left > right,
        "<": left < right,
        ">=": left >= right,
        "<=": left <= right,
        ":": left == right,
    }[op]


def compile_query(query: str, now: datetime | None = None) -> tuple[str | None, Predicate]:
    """(the ``type:`` asked for, a predicate over ticket dicts)."""
    now = now or datetime.now(UTC)
    try:
        terms = shlex.split(query)
    except ValueError as exc:
        raise QueryError(str(exc)) from None
    wanted_type: str | None = None
    checks: list[Predicate] = []
    for term in terms:
        match = _TERM.match(term)
        if not match:
            word = term.lower()
            checks.append(lambda t, w=word: w in f"{t.get('subject', '')} {t.get('description', '')}".lower())
            continue
        key, op, value, negate = match["key"], match["op"], match["value"], bool(match["neg"])
        check = _check(key, op, value, now)
        if key == "type":
            wanted_type = value
            continue
        checks.append((lambda t, c=check: not c(t)) if negate else check)
    return wanted_type, lambda ticket: all(check(ticket) for check in checks)


def _check(key: str, op: str, value: str, now: datetime) -> Predicate:
    if key == "type":
        return lambda t: True
    if key in ("created", "updated"):
        moment = parse_time(value, now)
        if op == ":" and len(value) == 10:  # a day: anything within it
            return lambda t: parse_time(t[f"{key}_at"], now).date() == moment.date()
        return lambda t: _compare(parse_time(t[f"{key}_at"], now), op, moment)
    if key == "status":
        if value not in _ORDER:
            raise QueryError(f"unknown status {value!r}")
        return lambda t: _compare(_ORDER.index(t.get("status") or "new"), op, _ORDER.index(value))
    if key in ("tags", "tag"):
        return lambda t: value in (t.get("tags") or [])
    if key in _FIELDS:
        field = _FIELDS[key]
        return lambda t: str(t.get(field)) == value
    # An unknown keyword: Zendesk treats it as text; so do we.
    word = f"{key}{op}{value}".lower()
    return lambda t: word in f"{t.get('subject', '')} {t.get('description', '')}".lower()
