"""Assemble the case bundle (DESIGN.md, "Contracts" → Case bundle) for one ticket, through zenpy.

Calls, in order (the URLs are what zenpy 2.0.x builds):

1. ``GET /api/v2/tickets/{id}.json?include=slas`` — the ticket with ``slas.policy_metrics``.
2. ``GET /api/v2/tickets/{id}/audits.json?page[size]=100`` — for priority/status changes (optional);
   cursor paging (``meta.has_more`` + ``links.next``). Oldest first (the endpoint's ``sort_order``
   defaults to ``asc``).
3. ``GET /api/v2/tickets/{id}/comments.json?page[size]=100`` — only when the audits cannot stand in for
   it: Zendesk keeps a comment as the ``Comment`` event of the audit that added it (same id; see
   ``comments_from_audits``), so the audits already hold every comment, oldest first. This call is made
   when audits are not asked for, were refused, may be cut short by ``audit_limit``, or hold no comment
   at all (a ticket's description is its first comment, so real audits always hold one).
4. ``GET /api/v2/search/export.json?query=type:ticket created>…&filter[type]=ticket&page[size]=100`` —
   the history window. The plain search endpoint stops at 1,000 results (a 422 past page 10); the export
   endpoint pages by cursor without that cap, so ``history_limit`` is our bound, not Zendesk's.
5. ``GET /api/v2/users/show_many.json?ids=…`` and ``/organizations/show_many.json?ids=…`` — 100 ids a
   call, the documented maximum.

The reads of one ticket (1 to 3) keep their JSON as Zendesk sent it (``connector.zendesk_json``: zenpy's
session and URL, without its objects): two of them are made for every assessment. The others go through
zenpy's objects; ``to_dict()`` gives the JSON back with two differences from the wire that we undo or accept:
the key ``from`` (in ``via.source``) comes back as ``from_`` (restored here), and attributes zenpy knows
about but the response lacked come back as ``null`` (harmless: the bundle contract reads a missing value
and a null alike, as "unknown").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, TypeVar

from zenpy import Zenpy

from connector import zendesk_json
from connector.directory import Directory
from connector.errors import AuthError, NotFoundError, PermanentError

log = logging.getLogger(__name__)

SHOW_MANY_MAX = 100
DEFAULT_HISTORY_DAYS = 14
DEFAULT_HISTORY_LIMIT = 1000
DEFAULT_COMMENT_LIMIT = 1000
DEFAULT_AUDIT_LIMIT = 500

T = TypeVar("T")


def to_raw(obj: Any) -> dict[str, Any]:
    """A zenpy object as the JSON Zendesk sent for it."""
    data = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    return _restore_keys(data)


def _restore_keys(value: Any) -> Any:
    if isinstance(value, dict):
        # zenpy's mapping renames the reserved word "from" to "from_" (ZendeskObjectMapping.format_key).
        return {("from" if k == "from_" else k): _restore_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore_keys(v) for v in value]
    return value


def get_ticket(client: Zenpy, ticket_id: int) -> dict[str, Any]:
    return zendesk_json.get(client, f"tickets/{int(ticket_id)}.json", {"include": "slas"})["ticket"]


def list_comments(client: Zenpy, ticket_id: int, limit: int = DEFAULT_COMMENT_LIMIT) -> list[dict[str, Any]]:
    """The ticket's first ``limit`` comments, oldest first (the comments endpoint's default order)."""
    path = f"tickets/{int(ticket_id)}/comments.json"
    comments = zendesk_json.cursor_pages(client, path, "comments", limit + 1)
    return _first_comments(comments, ticket_id, limit)


def list_audits(client: Zenpy, ticket_id: int, limit: int = DEFAULT_AUDIT_LIMIT) -> list[dict[str, Any]]:
    """The ticket's first ``limit`` audits, oldest first."""
    return zendesk_json.cursor_pages(client, f"tickets/{int(ticket_id)}/audits.json", "audits", limit)


# Audit events that are comments: the comments endpoint's ``type`` is "Comment" or "VoiceComment", and a
# voice comment is logged as a VoiceComment event in the ticket's audits (developer.zendesk.com, Ticket
# Comments and "Adding voice comments to tickets").
COMMENT_EVENT_TYPES = frozenset({"Comment", "VoiceComment"})


def comments_from_audits(audits: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The comments, oldest first, in the shape ``GET /api/v2/tickets/{id}/comments.json`` lists them,
    from the ticket's audits.

    Zendesk stores a comment as an event of the audit that added it (a comment's ``audit_id`` names that
    audit; "make private" is addressed to it): the ``Comment`` event carries the comment's own fields
    (``id`` — the comment's id —, ``type``, ``author_id``, ``body``, ``html_body``, ``plain_body``,
    ``public``, ``attachments``, ``audit_id``), and the audit its ``created_at``, ``via`` (an event has
    a ``via`` of its own only when it differs from the audit's) and ``metadata``. Fields an event may
    leave out are taken from its audit (``author_id``, ``audit_id``) or left out (``plain_body``: the
    rules read ``body`` then). A comment made private later gets a ``CommentPrivacyChange`` event
    (``comment_id``, ``public``) in a later audit; that is applied, so ``public`` is the current value,
    as the comments endpoint reports it. (Ticket Audits API, Ticket Comments API and the Ticket Audit
    events reference on developer.zendesk.com.)

    Known difference from the endpoint, not read by the rules: a comment's ``metadata`` may carry comment
    flags its audit's does not.
    """
    comments: list[dict[str, Any]] = []
    by_id: dict[Any, dict[str, Any]] = {}
    for audit in audits:
        for event in audit.get("events") or ():
            kind = event.get("type")
            if kind in COMMENT_EVENT_TYPES:
                comment = dict(event)
                if comment.get("author_id") is None:
                    comment["author_id"] = audit.get("author_id")
                if comment.get("audit_id") is None:
                    comment["audit_id"] = audit.get("id")
                comment["via"] = event.get("via") or audit.get("via")
                comment["created_at"] = audit.get("created_at")
                comment["metadata"] = audit.get("metadata")
                comments.append(comment)
                by_id[comment.get("id")] = comment
            elif kind == "CommentPrivacyChange" and event.get("comment_id") in by_id:
                by_id[event["comment_id"]]["public"] = event.get("public")
    return comments


def _first_comments(comments: list[dict[str, Any]], ticket_id: int, limit: int) -> list[dict[str, Any]]:
    if len(comments) > limit:
        log.warning(
            "ticket %s has more than %d comments; the bundle keeps the first %d", ticket_id, limit, limit
        )
    return comments[:limit]


def show_many(fetch: Callable[..., Iterable[Any]], ids: Iterable[Any]) -> list[dict[str, Any]]:
    """Users or organizations by id, ``SHOW_MANY_MAX`` a call; ids Zendesk no longer knows are skipped."""
    wanted = sorted({int(i) for i in ids if i is not None})
    found: list[dict[str, Any]] = []
    for start in range(0, len(wanted), SHOW_MANY_MAX):
        found += [to_raw(o) for o in fetch(ids=wanted[start : start + SHOW_MANY_MAX])]
    return found


def recent_tickets(
    client: Zenpy, *, since: datetime, limit: int = DEFAULT_HISTORY_LIMIT, exclude: int | None = None
) -> list[dict[str, Any]]:
    """Tickets created after ``since``, through the search export (no 1,000-result cap), up to ``limit``."""
    results = client.search_export(type="ticket", created_after=since.astimezone(UTC))
    tickets = (to_raw(t) for t in results)
    return list(islice((t for t in tickets if t.get("id") != exclude), limit))


def assemble(
    client: Zenpy,
    ticket_id: int,
    *,
    now: datetime | None = None,
    history_days: int = DEFAULT_HISTORY_DAYS,
    history_limit: int = DEFAULT_HISTORY_LIMIT,
    comment_limit: int = DEFAULT_COMMENT_LIMIT,
    include_audits: bool = True,
    audit_limit: int = DEFAULT_AUDIT_LIMIT,
    ticket: dict[str, Any] | None = None,
    directory: Directory | None = None,
) -> dict[str, Any]:
    """``ticket``: the ticket when the caller has just read it (not read again); ``directory``: where
    users and organizations are looked up before asking Zendesk."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    ticket = ticket if ticket is not None else get_ticket(client, ticket_id)
    directory = directory or Directory(ttl=0)
    bundle: dict[str, Any] = {"now": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "ticket": ticket}

    comments = None
    if include_audits:
        audits = _optional("audits", lambda: list_audits(client, ticket_id, audit_limit))
        if audits is not None:
            bundle["audits"] = audits
            # Audits read up to their limit may stop short of the last comments: then ask for those.
            derived = comments_from_audits(audits) if len(audits) < audit_limit else []
            if derived:
                comments = _first_comments(derived, ticket_id, comment_limit)
    if comments is None:
        comments = _optional("comments", lambda: list_comments(client, ticket_id, comment_limit))
    if comments is not None:
        bundle["comments"] = comments
    if history_days > 0 and history_limit > 0:
        since = now - timedelta(days=history_days)
        history = _optional(
            "history",
            lambda: recent_tickets(client, since=since, limit=history_limit, exclude=ticket.get("id")),
        )
        if history is not None:
            bundle["history"] = history

    user_ids = {ticket.get(k) for k in ("requester_id", "submitter_id", "assignee_id")}
    user_ids |= {c.get("author_id") for c in bundle.get("comments", [])}
    users = _optional("users", lambda: directory.many("user", user_ids, lambda i: show_many(client.users, i)))
    if users is not None:
        bundle["users"] = users

    org_ids = {ticket.get("organization_id")} | {t.get("organization_id") for t in bundle.get("history", [])}
    org_ids |= {u.get("organization_id") for u in bundle.get("users", [])}
    organizations = _optional(
        "organizations",
        lambda: directory.many("organization", org_ids, lambda i: show_many(client.organizations, i)),
    )
    if organizations is not None:
        bundle["organizations"] = organizations
    return bundle


def _optional(section: str, fetch: Callable[[], T]) -> T | None:
    """A section the bundle can do without: a refusal leaves it out ("unknown"); a rate limit or an
    outage still propagates, because a later retry gives the rules a fuller picture."""
    try:
        return fetch()
    except (AuthError, NotFoundError, PermanentError) as exc:
        log.warning("case bundle without %s: %s", section, exc.message)
        return None
