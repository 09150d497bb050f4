"""What the agent's sidebar asks of the service: the assessment of a ticket with its escalations, and the
two clicks (create the issue, dismiss the suggestion). The sidebar blueprint finds this object on the app
as ``service.sidebar``; it never imports the worker."""

from __future__ import annotations

from typing import Any

from connector import errors
from worker.assess import SOURCE, assess_ticket
from worker.handoff import hand_off
from worker.jobs import JobContext
from worker.rollup import followup_view
from worker.runtime import runtime_for
from worker.store import EscalationDraft, EscalationRecord, EscalationState, TicketRef


class SidebarBackend:
    def __init__(self, context: Any) -> None:
        # A callable returning the JobContext: the service builds its context lazily.
        self._context = context

    @property
    def ctx(self) -> JobContext:
        return self._context()

    def view(self, ticket_id: str) -> dict[str, Any] | None:
        ref = TicketRef.of(SOURCE, ticket_id)
        latest = self.ctx.store.latest_assessment(ref)
        if latest is None:
            try:
                assess_ticket(self.ctx, int(ticket_id))
            except errors.NotFoundError:
                return None
            latest = self.ctx.store.latest_assessment(ref)
            if latest is None:
                return None
        return {
            "decision": latest.decision,
            "escalations": [self._escalation(e) for e in self._escalations(ref)],
        }

    def create_issue(self, ticket_id: str, destination: str, actor: str) -> dict[str, Any]:
        return self._escalation(hand_off(self.ctx, TicketRef.of(SOURCE, ticket_id), destination, actor=actor))

    def dismiss(self, ticket_id: str, destination: str, reason: str, actor: str) -> dict[str, Any]:
        ref = TicketRef.of(SOURCE, ticket_id)
        draft = EscalationDraft(reason=f"dismissed by {actor}")
        with self.ctx.store.lock_open_escalation(ref, destination, create=draft) as lock:
            assert lock is not None
            record = lock.record
            if record.state is EscalationState.SUGGESTED:
                lock.transition(EscalationState.DISMISSED, reason=reason)
                # Kept for tuning the rules: which suggestions agents turn down, and why.
                lock.record_action(
                    "escalate",
                    "dismiss",
                    ref.id,
                    actor=actor,
                    detail={"destination": destination, "reason": reason},
                )
            record = lock.record
        return self._escalation(record)

    def _escalations(self, ref: TicketRef) -> list[EscalationRecord]:
        return self.ctx.store.escalations_for_ticket(ref)

    def _escalation(self, e: EscalationRecord) -> dict[str, Any]:
        jira_url = None
        if e.jira_key:
            jira_url = runtime_for(self.ctx.settings).jira.browse_url(e.jira_key)
        return {
            "id": e.id,
            "destination": e.destination,
            "state": e.state.value,
            "severity": e.severity,
            "jira_key": e.jira_key,
            "jira_url": jira_url,
            "jira_status": e.state.value if e.jira_key else None,
            "reason": e.reason,
            "state_changed_at": e.state_changed_at.isoformat(),
            "updated_at": e.updated_at.isoformat(),
            **followup_view(self.ctx.store, e),  # issue 6: the impact rollup, the stall
        }
