"""The helpdesk a ticket lives in, as the pipeline sees it: Zendesk or Jira Service Management.

Assessment, hand-off, progress, follow-through and rollups speak to a ``Desk``: read a case, leave an
internal note (a Zendesk internal note, a JSM internal comment), keep the managed tags (Zendesk tags, JSM
labels), tie a ticket to its Jira issue (a remote link and the ticket's Jira field on Zendesk; an issue
link on JSM, where both are issues of one site) and hand over to senior support (a group in Zendesk, the
configured queue field in JSM). A ``TicketRef``'s ``source`` picks the desk; ids stay text throughout.

Nothing in ``rules/`` knows which desk a case came from: each desk turns its bundle into the neutral
``Case`` through its own adapter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from connector.errors import ConfigError, PermanentError
from connector.jira_connector import JiraConnector
from connector.jsm_connector import JsmConnector
from connector.render import render_html, render_jira_wiki
from connector.zendesk_connector import ZendeskConnector
from rules.adapters.jsm import case_from_jsm_bundle
from rules.adapters.zendesk import case_from_bundle
from rules.case import Case
from rules.document import Document
from rules.ruleset import Target

ZENDESK, JSM = "zendesk", "jsm"


@dataclass(frozen=True)
class TicketSummary:
    """What a rollup needs of a ticket it has not indexed."""

    organization_id: str | None
    requester_id: str | None
    created_at: datetime | None
    subject: str


class Desk(Protocol):
    source: str

    # The word agents use for a ticket there, in texts we write ("Zendesk #12", "DESK-12").
    def name(self, ticket_id: str) -> str: ...
    def fetch_bundle(self, ticket_id: str, *, history_days: int, changes: bool = True) -> dict[str, Any]:
        """The case bundle; ``changes=False`` leaves out the field-change history (audits, changelog)."""
        ...

    def case(self, bundle: dict[str, Any], now: datetime | None = None) -> Case: ...
    def summary(self, ticket_id: str) -> TicketSummary: ...
    def organizations(self, ids: Iterable[str]) -> list[dict[str, Any]]: ...
    def ticket_url(self, ticket_id: str) -> str: ...
    def add_note(self, ticket_id: str, document: Document) -> None: ...
    def add_assessment(
        self,
        ticket_id: str,
        document: Document,
        tags: list[str],
        managed: tuple[str, ...],
        known: Iterable[str],
    ) -> str | None: ...
    def add_note_text(self, ticket_id: str, text: str, tags: Iterable[str] = ()) -> None:
        """An internal note from plain text, and ``tags`` with it (in one write where the desk can)."""
        ...

    def replace_tags(self, ticket_id: str, current: list[str], managed: tuple[str, ...]) -> None: ...
    def remove_tags(self, ticket_id: str, tags: list[str]) -> None: ...
    def link_issue(self, ticket_id: str, key: str, subject: str | None = None) -> bool:
        """Tie the ticket to Jira issue ``key``, both ways; ``subject``: the ticket's, when known."""
        ...

    def hand_to_l2(self, ticket_id: str, target: Target) -> dict[str, Any]: ...


class ZendeskDesk:
    source = ZENDESK

    def __init__(self, zendesk: ZendeskConnector, jira: JiraConnector) -> None:
        self.zendesk = zendesk
        self.jira = jira

    def name(self, ticket_id: str) -> str:
        return f"Zendesk #{ticket_id}"

    def fetch_bundle(self, ticket_id: str, *, history_days: int, changes: bool = True) -> dict[str, Any]:
        return self.zendesk.fetch_bundle(int(ticket_id), history_days=history_days, include_audits=changes)

    def case(self, bundle: dict[str, Any], now: datetime | None = None) -> Case:
        return case_from_bundle(bundle, now=now)

    def summary(self, ticket_id: str) -> TicketSummary:
        from rules.adapters.coerce import timestamp

        raw = self.zendesk.get_ticket(int(ticket_id))
        return TicketSummary(
            _text(raw.get("organization_id")),
            _text(raw.get("requester_id")),
            timestamp(raw.get("created_at")),
            str(raw.get("subject") or ""),
        )

    def organizations(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        return self.zendesk.organizations(list(ids))

    def ticket_url(self, ticket_id: str) -> str:
        return self.zendesk.ticket_url(int(ticket_id))

    def add_note(self, ticket_id: str, document: Document) -> None:
        self.zendesk.add_internal_note(int(ticket_id), render_html(document))

    def add_assessment(
        self,
        ticket_id: str,
        document: Document,
        tags: list[str],
        managed: tuple[str, ...],
        known: Iterable[str],
    ) -> str | None:
        """The note and the verdict's tags in one update; managed tags of an earlier verdict (``known``: the
        ticket's tags as just read) are removed after. Returns the ticket's ``updated_at`` after the note
        (None after a second write), so the echo of this write is known as ours."""
        written = self.zendesk.add_internal_note(int(ticket_id), render_html(document), tags=tags)
        stale = [t for t in known if t.startswith(managed) and t not in tags]
        if stale:
            self.zendesk.remove_tags(int(ticket_id), stale)
            return None
        return written

    def add_note_text(self, ticket_id: str, text: str, tags: Iterable[str] = ()) -> None:
        self.zendesk.add_internal_note_text(int(ticket_id), text, tags=tags)

    def replace_tags(self, ticket_id: str, current: list[str], managed: tuple[str, ...]) -> None:
        tid = int(ticket_id)
        tags = self.zendesk.add_tags(tid, current) if current else self.zendesk.get_ticket(tid)["tags"]
        stale = [t for t in tags or [] if t.startswith(managed) and t not in current]
        if stale:
            self.zendesk.remove_tags(tid, stale)

    def remove_tags(self, ticket_id: str, tags: list[str]) -> None:
        self.zendesk.remove_tags(int(ticket_id), tags)

    def link_issue(self, ticket_id: str, key: str, subject: str | None = None) -> bool:
        """A remote link on the issue (titled with the subject, read when not given) and the key on the
        ticket; both upserts. True when the ticket's Jira field changed."""
        if subject is None:
            subject = self.summary(ticket_id).subject
        self.jira.upsert_remote_link(
            key,
            ticket_url=self.ticket_url(ticket_id),
            ticket_id=ticket_id,
            title=f"{self.name(ticket_id)}: {subject}".strip(),
        )
        return self.zendesk.record_jira_link(int(ticket_id), key, self.jira.browse_url(key))

    def hand_to_l2(self, ticket_id: str, target: Target) -> dict[str, Any]:
        group = target.zendesk.group_id if target.zendesk else None
        if group is None:
            raise PermanentError(ZENDESK, "no Zendesk group configured for senior support")
        self.zendesk.assign_group(int(ticket_id), int(group))
        return {"group_id": group}


class JsmDesk:
    source = JSM

    def __init__(self, jsm: JsmConnector) -> None:
        self.jsm = jsm

    def name(self, ticket_id: str) -> str:
        return ticket_id

    def fetch_bundle(self, ticket_id: str, *, history_days: int, changes: bool = True) -> dict[str, Any]:
        return self.jsm.fetch_case(ticket_id, history_days=history_days, include_changelog=changes)

    def case(self, bundle: dict[str, Any], now: datetime | None = None) -> Case:
        return case_from_jsm_bundle(bundle, now=now)

    def summary(self, ticket_id: str) -> TicketSummary:
        ticket = self.case(self.fetch_bundle(ticket_id, history_days=0)).ticket
        return TicketSummary(ticket.organization_id, ticket.requester_id, ticket.created_at, ticket.subject)

    def organizations(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        """Organizations in the shape rollups read (Zendesk's ``organization_fields``), from the desk's
        organization details and their property."""
        found = []
        for oid in ids:
            org = self.jsm.organization(oid)
            if org is not None:
                found.append(org)
        return found

    def ticket_url(self, ticket_id: str) -> str:
        return self.jsm.request_url(ticket_id)

    def add_note(self, ticket_id: str, document: Document) -> None:
        self.jsm.add_internal_comment(ticket_id, render_jira_wiki(document))

    def add_assessment(
        self,
        ticket_id: str,
        document: Document,
        tags: list[str],
        managed: tuple[str, ...],
        known: Iterable[str],
    ) -> str | None:
        """An internal comment, then the labels (read afresh: a request's labels are cheap to read)."""
        self.add_note(ticket_id, document)
        self.replace_tags(ticket_id, tags, managed)
        return None

    def add_note_text(self, ticket_id: str, text: str, tags: Iterable[str] = ()) -> None:
        self.jsm.add_internal_comment(ticket_id, text)
        if tags:
            self.jsm.add_labels(ticket_id, list(tags))

    def replace_tags(self, ticket_id: str, current: list[str], managed: tuple[str, ...]) -> None:
        labels = self.jsm.labels(ticket_id)
        missing = [t for t in current if t not in labels]
        if missing:
            self.jsm.add_labels(ticket_id, missing)
        stale = [t for t in labels if t.startswith(managed) and t not in current]
        if stale:
            self.jsm.remove_labels(ticket_id, stale)

    def remove_tags(self, ticket_id: str, tags: list[str]) -> None:
        self.jsm.remove_labels(ticket_id, tags)

    def link_issue(self, ticket_id: str, key: str, subject: str | None = None) -> bool:
        return self.jsm.record_issue_link(ticket_id, key, self.jsm.jira.browse_url(key))

    def hand_to_l2(self, ticket_id: str, target: Target) -> dict[str, Any]:
        self.jsm.assign_l2(ticket_id)
        return {"field": self.jsm.config.l2_field}


def desk_for(runtime: Any, source: str) -> Desk:
    """The desk of a ticket's ``source``, on the runtime's connectors."""
    if source == ZENDESK:
        return ZendeskDesk(runtime.zendesk, runtime.jira)
    if source == JSM:
        return JsmDesk(runtime.jsm)
    raise ConfigError(f"unknown helpdesk {source!r}")


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)
