"""The helpdesk-neutral case: one ticket plus what is needed to judge it.

Adapters (``rules.adapters``) build a ``Case`` from a helpdesk's own API shapes; the rules read only
these types. Anything a helpdesk did not tell us is ``None`` or empty, which the rules treat as
"unknown", never as a fact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cached_property
from typing import Any


class Role(StrEnum):
    END_USER = "end-user"
    AGENT = "agent"
    ADMIN = "admin"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Person:
    id: str
    name: str | None = None
    email: str | None = None
    role: Role = Role.UNKNOWN
    organization_id: str | None = None

    @property
    def is_staff(self) -> bool:
        return self.role in (Role.AGENT, Role.ADMIN)


@dataclass(frozen=True)
class Organization:
    id: str
    name: str | None = None
    tags: frozenset[str] = frozenset()
    # The organization's custom values, keyed as the helpdesk keys them (Zendesk: organization_fields).
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Attachment:
    name: str
    url: str | None = None
    content_type: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Comment:
    id: str
    author_id: str | None
    body: str
    public: bool
    created_at: datetime | None = None
    attachments: tuple[Attachment, ...] = ()


class SlaStage(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    ACHIEVED = "achieved"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SlaMetric:
    metric: str
    stage: SlaStage
    breach_at: datetime | None = None


@dataclass(frozen=True)
class FieldChange:
    field: str
    previous: str | None
    value: str | None
    at: datetime | None = None


@dataclass(frozen=True)
class Ticket:
    id: str
    subject: str = ""
    description: str = ""
    # Lower case: new, open, pending, hold, solved, closed; None when unknown.
    status: str | None = None
    # Lower case: low, normal, high, urgent; None when unknown.
    priority: str | None = None
    # Lower case: problem, incident, question, task; None when unknown.
    type: str | None = None
    tags: frozenset[str] = frozenset()
    requester_id: str | None = None
    organization_id: str | None = None
    group_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # Custom ticket fields keyed by the helpdesk's field id, as text.
    custom_fields: Mapping[str, Any] = field(default_factory=dict)
    sla_metrics: tuple[SlaMetric, ...] = ()
    # Changes to tracked fields since the ticket was opened (from audits or webhook events).
    changes: tuple[FieldChange, ...] = ()
    # Where an agent opens the ticket; None when the helpdesk did not say.
    url: str | None = None

    @cached_property
    def text(self) -> str:
        """Subject and description: what the symptom matcher compares (built once per ticket)."""
        return f"{self.subject}\n{self.description}".strip()

    @property
    def is_solved(self) -> bool:
        return self.status in ("solved", "closed")


@dataclass(frozen=True)
class Case:
    ticket: Ticket
    now: datetime
    comments: tuple[Comment, ...] = ()
    people: Mapping[str, Person] = field(default_factory=dict)
    organizations: Mapping[str, Organization] = field(default_factory=dict)
    history: tuple[Ticket, ...] = ()
    # Which helpdesk the case came from ("zendesk", "jsm"); informational only.
    source: str = "zendesk"

    @property
    def organization(self) -> Organization | None:
        oid = self.ticket.organization_id
        return self.organizations.get(oid) if oid else None

    @property
    def requester(self) -> Person | None:
        rid = self.ticket.requester_id
        return self.people.get(rid) if rid else None

    def author(self, comment: Comment) -> Person | None:
        return self.people.get(comment.author_id) if comment.author_id else None

    def is_staff_comment(self, comment: Comment) -> bool:
        """A comment by an agent; an unknown author counts as staff only on an internal note."""
        person = self.author(comment)
        if person is not None and person.role is not Role.UNKNOWN:
            return person.is_staff
        if comment.author_id is not None and comment.author_id == self.ticket.requester_id:
            return False
        return not comment.public

    def customer_text(self) -> str:
        """Everything the customer wrote: subject, description and their public comments."""
        parts = [self.ticket.subject, self.ticket.description]
        parts += [c.body for c in self.comments if c.public and not self.is_staff_comment(c)]
        return "\n".join(p for p in parts if p)

    def all_text(self) -> str:
        parts = [self.ticket.subject, self.ticket.description, *(c.body for c in self.comments)]
        return "\n".join(p for p in parts if p)
