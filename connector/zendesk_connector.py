"""The Zendesk side of an escalation: read a case bundle, write notes, tags, fields and groups back.

Everything goes through zenpy's client (see ``connector.zendesk_client`` for how it is kept from sleeping
or retrying): its objects for most calls, its session alone for the ticket reads and the ticket update,
whose JSON is used as sent (``connector.zendesk_json``). Every method either returns or raises a
``connector.errors`` type. Writes follow the documented shape (DESIGN.md): ``PUT
/api/v2/tickets/{id}.json`` with ``{"ticket": {...}}``; tags use ``PUT``/``DELETE
/api/v2/tickets/{id}/tags.json``, which add and remove without replacing the list.

One connector per worker thread: a ``requests.Session`` is not meant to be shared between threads.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from zenpy import Zenpy

from connector import zendesk_bundle, zendesk_json
from connector.directory import Directory
from connector.http_client import translated
from connector.zendesk_client import SERVICE, ZendeskConfig, build_zenpy
from connector.zendesk_html import link_html, sanitize_html, text_to_html

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def _calls_zendesk(method: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with translated(SERVICE):
            return method(*args, **kwargs)

    return wrapper


def issue_tag(key: str) -> str:
    """The per-issue ticket tag, e.g. ``jira_eng_123``: Zendesk tags are lower case, without spaces."""
    return "jira_" + re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_")


class ZendeskConnector:
    def __init__(self, config: ZendeskConfig, *, client: Zenpy | None = None) -> None:
        self.config = config
        self._client = client or build_zenpy(config)
        # Users and organizations, reused across cases for a short while (ZENDESK_DIRECTORY_TTL).
        self.directory = Directory(ttl=config.directory_ttl)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ZendeskConnector:
        return cls(ZendeskConfig.from_env(environ))

    def ticket_url(self, ticket_id: int) -> str:
        """Where an agent opens the ticket (what a Jira remote link points at)."""
        return f"{self.config.base_url}/agent/tickets/{int(ticket_id)}"

    # ----- reads -----

    @_calls_zendesk
    def check_auth(self) -> dict[str, Any]:
        """The authenticated user (``GET /api/v2/users/me.json``); raises ``AuthError`` when refused."""
        return zendesk_bundle.to_raw(self._client.users.me())

    @_calls_zendesk
    def get_ticket(self, ticket_id: int) -> dict[str, Any]:
        """The ticket as ``GET /api/v2/tickets/{id}.json?include=slas`` returns it."""
        return zendesk_bundle.get_ticket(self._client, ticket_id)

    @_calls_zendesk
    def fetch_bundle(
        self,
        ticket_id: int,
        *,
        history_days: int = zendesk_bundle.DEFAULT_HISTORY_DAYS,
        history_limit: int = zendesk_bundle.DEFAULT_HISTORY_LIMIT,
        include_audits: bool = True,
        now: datetime | None = None,
        ticket: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The case bundle: ticket (with SLAs), comments, users, organizations, history, audits.
        ``ticket``: the ticket as ``get_ticket`` just returned it, so it is not read twice."""
        return zendesk_bundle.assemble(
            self._client,
            ticket_id,
            now=now,
            history_days=history_days,
            history_limit=history_limit,
            include_audits=include_audits,
            ticket=ticket,
            directory=self.directory,
        )

    @_calls_zendesk
    def organizations(self, ids: Iterable[int | str | None]) -> list[dict[str, Any]]:
        """Organizations by id (``GET /api/v2/organizations/show_many.json``, 100 ids a call)."""
        fetch = self._client.organizations
        return self.directory.many("organization", ids, lambda i: zendesk_bundle.show_many(fetch, i))

    @_calls_zendesk
    def incremental_tickets(
        self, *, start_time: datetime | None = None, cursor: str | None = None, per_page: int = 1000
    ) -> dict[str, Any]:
        """One page of the cursor-based incremental ticket export
        (``GET /api/v2/incremental/tickets/cursor.json?start_time=`` or ``?cursor=``): tickets changed
        since ``start_time``, oldest change first. Returns ``{"tickets", "after_cursor", "end_of_stream"}``;
        keep ``after_cursor`` to resume, even at the end of the stream (new changes come after it).
        zenpy sends ``per_page`` with ``start_time`` only; pages read by cursor have Zendesk's default size
        (1,000)."""
        if (start_time is None) == (cursor is None):
            raise ValueError("give either start_time or cursor")
        if cursor is not None:
            page = self._client.tickets.incremental(cursor=cursor, per_page=per_page)
        else:
            assert start_time is not None
            page = self._client.tickets.incremental(start_time=start_time.astimezone(UTC), per_page=per_page)
        return {
            "tickets": [zendesk_bundle.to_raw(t) for t in (page.values or [])],
            "after_cursor": getattr(page, "after_cursor", None),
            "end_of_stream": bool(getattr(page, "end_of_stream", True)),
        }

    # ----- writes -----

    @_calls_zendesk
    def add_internal_note(self, ticket_id: int, html_body: str, *, tags: Iterable[str] = ()) -> str | None:
        """A private comment; the HTML is reduced to an allowlist first (``connector.zendesk_html``).
        ``tags`` are added in the same update (``additional_tags``: the others stay). Returns the ticket's
        ``updated_at`` after the update, when Zendesk says."""
        changes: dict[str, Any] = {"comment": _note(html_body)}
        added = [t for t in tags if t and t.strip()]
        if added:
            changes["additional_tags"] = _clean_tags(added)
        return self._update(ticket_id, **changes)

    def add_internal_note_text(self, ticket_id: int, text: str, *, tags: Iterable[str] = ()) -> None:
        """A private comment from plain text, escaped; ``tags`` added in the same update."""
        self.add_internal_note(ticket_id, text_to_html(text), tags=tags)

    @_calls_zendesk
    def add_tags(self, ticket_id: int, tags: Iterable[str]) -> list[str]:
        """Adds tags without touching the others; returns the ticket's tags after the change."""
        return _tags(self._client.tickets.add_tags(int(ticket_id), _clean_tags(tags)))

    @_calls_zendesk
    def remove_tags(self, ticket_id: int, tags: Iterable[str]) -> list[str]:
        return _tags(self._client.tickets.delete_tags(int(ticket_id), _clean_tags(tags)))

    @_calls_zendesk
    def set_custom_fields(self, ticket_id: int, values: Mapping[int | str, Any]) -> None:
        """Sets custom ticket fields by field id; fields not named are left as they are."""
        fields = [{"id": int(fid), "value": value} for fid, value in values.items()]
        if fields:
            self._update(ticket_id, custom_fields=fields)

    @_calls_zendesk
    def assign_group(self, ticket_id: int, group_id: int) -> None:
        """Hands the ticket to a group (L2); the assignee is left to the group."""
        self._update(ticket_id, group_id=int(group_id))

    @_calls_zendesk
    def record_jira_link(self, ticket_id: int, key: str, url: str) -> bool:
        """Tags, the link field (when configured) and an internal note naming the issue, in one update.

        Idempotent: a ticket already carrying the issue's tag is left alone (returns False), so a
        retried job does not post the note twice.
        """
        tag = issue_tag(key)
        current = zendesk_bundle.get_ticket(self._client, ticket_id)
        if tag in (current.get("tags") or []):
            return False
        note = f"<p>Linked to Jira issue {link_html(url, key)}.</p>"
        changes: dict[str, Any] = {
            "comment": _note(note),
            "additional_tags": [self.config.escalation_tag, tag],
        }
        if self.config.jira_link_field_id is not None:
            changes["custom_fields"] = [{"id": self.config.jira_link_field_id, "value": key}]
        self._update(ticket_id, **changes)
        return True

    def _update(self, ticket_id: int, **changes: Any) -> str | None:
        """Returns the ticket's ``updated_at`` after the update (the answer's ticket), or None."""
        answer = zendesk_json.put(self._client, f"tickets/{int(ticket_id)}.json", {"ticket": changes})
        log.info("zendesk ticket %s updated: %s", ticket_id, ", ".join(sorted(changes)))
        updated = (answer.get("ticket") or {}).get("updated_at")
        return str(updated) if updated else None


def _note(html_body: str) -> dict[str, Any]:
    safe = sanitize_html(html_body).strip()
    if not safe:
        raise ValueError("an internal note needs a body")
    return {"html_body": safe, "public": False}


def _clean_tags(tags: Iterable[str]) -> list[str]:
    cleaned = [t.strip().lower().replace(" ", "_") for t in tags if t and t.strip()]
    if not cleaned:
        raise ValueError("no tags given")
    return cleaned


def _tags(result: Any) -> list[str]:
    try:
        return [str(t) for t in result]
    except TypeError:
        return []
