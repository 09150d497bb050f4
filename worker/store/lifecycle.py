"""The states an escalation goes through, and which moves between them are allowed."""

from __future__ import annotations

from enum import StrEnum


class EscalationState(StrEnum):
    SUGGESTED = "suggested"  # the rules say escalate; waiting for an agent's click (or auto-create)
    CREATED = "created"  # the engineering issue exists
    ACKNOWLEDGED = "acknowledged"  # the receiving team picked it up
    RESOLVED = "resolved"  # the issue is resolved; the customer has not been told yet
    CUSTOMER_UPDATED = "customer_updated"  # support told the customer
    CLOSED = "closed"
    DISMISSED = "dismissed"  # an agent decided not to escalate, or the suggestion went stale


class DeliveryStatus(StrEnum):
    RECEIVED = "received"  # recorded by the intake, not run yet
    PROCESSING = "processing"
    PROCESSED = "processed"
    FAILED = "failed"


TERMINAL_STATES = frozenset({EscalationState.CLOSED, EscalationState.DISMISSED})
OPEN_STATES = frozenset(EscalationState) - TERMINAL_STATES

# Reopening (resolved or customer_updated back to acknowledged) is allowed because engineering
# reopens issues; leaving a terminal state is not: a new escalation is opened instead.
ALLOWED_TRANSITIONS: dict[EscalationState, frozenset[EscalationState]] = {
    EscalationState.SUGGESTED: frozenset({EscalationState.CREATED, EscalationState.DISMISSED}),
    EscalationState.CREATED: frozenset(
        {
            EscalationState.ACKNOWLEDGED,
            EscalationState.RESOLVED,
            EscalationState.CLOSED,
            EscalationState.DISMISSED,
        }
    ),
    EscalationState.ACKNOWLEDGED: frozenset({EscalationState.RESOLVED, EscalationState.CLOSED}),
    EscalationState.RESOLVED: frozenset(
        {EscalationState.CUSTOMER_UPDATED, EscalationState.ACKNOWLEDGED, EscalationState.CLOSED}
    ),
    EscalationState.CUSTOMER_UPDATED: frozenset({EscalationState.ACKNOWLEDGED, EscalationState.CLOSED}),
    EscalationState.CLOSED: frozenset(),
    EscalationState.DISMISSED: frozenset(),
}


class InvalidTransition(ValueError):
    def __init__(self, current: EscalationState, target: EscalationState) -> None:
        super().__init__(f"an escalation cannot go from {current.value} to {target.value}")
        self.current = current
        self.target = target


def check_transition(current: EscalationState, target: EscalationState) -> bool:
    """True when the move changes something, False when it is a no-op; raises when it is not allowed.

    Moving to the state one is already in is a no-op, not an error: webhooks and jobs repeat.
    """
    if current == target:
        return False
    if target not in ALLOWED_TRANSITIONS[current]:
        raise InvalidTransition(current, target)
    return True
