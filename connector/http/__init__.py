"""The HTTP endpoints: blueprints that verify, extract and delegate (never call out, never import worker)."""

from connector.http.events import AcceptOutcome, EventKind, InboundEvent, Intake, IntakeUnavailable, Source

__all__ = ["AcceptOutcome", "EventKind", "InboundEvent", "Intake", "IntakeUnavailable", "Source"]
