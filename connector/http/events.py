"""What a verified webhook becomes: a small value object handed to whoever queues the work.

The endpoints verify, extract and delegate. They never run the work themselves and never import
`worker`: the app factory puts an object with an ``accept(event)`` method (the ``Intake`` protocol
below) on the Flask app, and the endpoints hand it an ``InboundEvent``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol


class Source(StrEnum):
    ZENDESK = "zendesk"
    JIRA = "jira"


class EventKind(StrEnum):
    # Something about a helpdesk ticket changed: assess it (again).
    EVALUATE_TICKET = "evaluate_ticket"
    # A Jira Service Management request was created, updated or commented on: assess it (again).
    EVALUATE_REQUEST = "evaluate_request"
    # The engineering issue an escalation points at moved to another status.
    ISSUE_STATUS_CHANGED = "issue_status_changed"
    # Somebody commented on that issue.
    ISSUE_COMMENTED = "issue_commented"


class AcceptOutcome(StrEnum):
    ENQUEUED = "enqueued"
    DUPLICATE = "duplicate"


class IntakeUnavailable(Exception):
    """The work cannot be queued right now; the sender should retry later.

    Defined here, not in `worker`, so the endpoints can map it to 503 without importing the worker.
    """

    def __init__(self, message: str = "queue unavailable", retry_after: int = 10) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Intake(Protocol):
    def accept(self, event: InboundEvent) -> AcceptOutcome:
        """Queue the event once per delivery id; raise IntakeUnavailable when that is impossible."""
        ...


# Jira issue keys: a project key (starts with a letter; admins can loosen the default upper-case
# pattern, so accept either case) and a number.
_ISSUE_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]*-[0-9]+")
MAX_DELIVERY_ID_LENGTH = 200


@dataclass(frozen=True)
class InboundEvent:
    """One verified delivery from Zendesk or Jira, reduced to what the worker needs to act.

    ``payload`` is the body as the sender sent it (parsed JSON), for anything the extraction left out;
    ``changes`` is the normalised field change when the event carries one (``{"field": "status",
    "from": "open", "to": "pending"}``).
    """

    source: Source
    delivery_id: str
    kind: EventKind
    event_type: str
    ticket_id: int | None = None
    issue_key: str | None = None
    changes: Mapping[str, Any] = field(default_factory=dict)
    payload: Mapping[str, Any] = field(default_factory=dict)
    received_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def __post_init__(self) -> None:
        # Validate on construction (RQ habit): a bad event fails at the edge, not in a job hours later.
        object.__setattr__(self, "source", Source(self.source))
        object.__setattr__(self, "kind", EventKind(self.kind))
        if not self.delivery_id or len(self.delivery_id) > MAX_DELIVERY_ID_LENGTH:
            raise ValueError(f"delivery_id must be 1..{MAX_DELIVERY_ID_LENGTH} characters")
        if self.kind is EventKind.EVALUATE_TICKET:
            if not isinstance(self.ticket_id, int) or isinstance(self.ticket_id, bool) or self.ticket_id <= 0:
                raise ValueError(f"ticket_id must be a positive integer, got {self.ticket_id!r}")
        else:
            if not isinstance(self.issue_key, str) or not _ISSUE_KEY.fullmatch(self.issue_key):
                raise ValueError(f"issue_key must look like PROJ-123, got {self.issue_key!r}")

    @property
    def subject(self) -> str:
        """The thing the event is about, as one string: a ticket id or an issue key."""
        return str(self.ticket_id) if self.ticket_id is not None else str(self.issue_key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source.value,
            "delivery_id": self.delivery_id,
            "kind": self.kind.value,
            "event_type": self.event_type,
            "ticket_id": self.ticket_id,
            "issue_key": self.issue_key,
            "changes": dict(self.changes),
            "payload": dict(self.payload),
            "received_at": self.received_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InboundEvent:
        return cls(
            source=Source(data["source"]),
            delivery_id=data["delivery_id"],
            kind=EventKind(data["kind"]),
            event_type=data.get("event_type", ""),
            ticket_id=data.get("ticket_id"),
            issue_key=data.get("issue_key"),
            changes=data.get("changes") or {},
            payload=data.get("payload") or {},
            received_at=data.get("received_at") or datetime.now(UTC).isoformat(timespec="seconds"),
        )
