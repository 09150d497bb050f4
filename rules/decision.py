"""What an evaluation returns: the decision, with the trace that explains it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rules.ruleset import Destination, Family, Severity


@dataclass(frozen=True)
class Evidence:
    """Why a rule fired: a sentence for people, and the matched words, tickets and numbers for tools."""

    summary: str
    phrases: tuple[str, ...] = ()
    tickets: tuple[str, ...] = ()
    values: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "phrases": list(self.phrases),
            "tickets": list(self.tickets),
            "values": dict(self.values),
        }


@dataclass(frozen=True)
class Trigger:
    family: Family
    id: str
    hard: bool
    evidence: Evidence

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family.value,
            "id": self.id,
            "hard": self.hard,
            "evidence": self.evidence.to_dict(),
        }


@dataclass(frozen=True)
class HoldReason:
    id: str
    evidence: Evidence
    reference: str | None = None  # the article that documents the fix, setting or limitation

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "evidence": self.evidence.to_dict(), "reference": self.reference}


@dataclass(frozen=True)
class RouteReason:
    destination: Destination
    evidence: Evidence

    def to_dict(self) -> dict[str, Any]:
        return {"destination": self.destination.value, "evidence": self.evidence.to_dict()}


@dataclass(frozen=True)
class Decision:
    ticket_id: str
    escalate: bool
    destination: Destination | None
    also_notify: tuple[Destination, ...]
    severity: Severity | None
    triggers: tuple[Trigger, ...]
    hold_reasons: tuple[HoldReason, ...]
    routing: tuple[RouteReason, ...]
    severity_reasons: tuple[Evidence, ...]
    impact: dict[str, Any]
    package: dict[str, Any] | None
    missing: tuple[str, ...]
    related_tickets: tuple[dict[str, Any], ...]
    automatic: bool
    ruleset_version: str
    matcher: str
    evaluated_at: str
    # Why the decision is what it is, in one line for the sidebar and the internal note.
    verdict: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "ticket_id": self.ticket_id,
            "escalate": self.escalate,
            "destination": self.destination.value if self.destination else None,
            "also_notify": [d.value for d in self.also_notify],
            "severity": self.severity.value if self.severity else None,
            "verdict": self.verdict,
            "automatic": self.automatic,
            "triggers": [t.to_dict() for t in self.triggers],
            "hold_reasons": [h.to_dict() for h in self.hold_reasons],
            "routing": [r.to_dict() for r in self.routing],
            "severity_reasons": [e.to_dict() for e in self.severity_reasons],
            "impact": self.impact,
            "package": self.package,
            "missing": list(self.missing),
            "related_tickets": list(self.related_tickets),
            "ruleset_version": self.ruleset_version,
            "matcher": self.matcher,
            "evaluated_at": self.evaluated_at,
        }
