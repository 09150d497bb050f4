"""The HTTP endpoints: the webhooks (WSGI endpoints) and the sidebar (a blueprint). They verify, extract and
delegate; they never call out and never import worker."""

from connector.http.events import AcceptOutcome, EventKind, InboundEvent, Intake, IntakeUnavailable, Source

__all__ = ["AcceptOutcome", "EventKind", "InboundEvent", "Intake", "IntakeUnavailable", "Source"]
