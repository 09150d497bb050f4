"""Our own state: deliveries, assessments, escalations and the audit log (SQLAlchemy 2 + alembic).

SQLite by default, PostgreSQL through DATABASE_URL. Use the ``Store`` verbs; the models are for
migrations and the Store itself.
"""

from worker.store.escalations import EscalationDraft, EscalationLock, TicketAlreadyEscalated
from worker.store.lifecycle import (
    OPEN_STATES,
    TERMINAL_STATES,
    DeliveryStatus,
    EscalationState,
    InvalidTransition,
)
from worker.store.records import (
    ActionRecord,
    AssessmentRecord,
    AssessmentStamp,
    DeliveryRecord,
    EscalationRecord,
    LastAction,
    TicketRef,
)
from worker.store.store import Store

__all__ = [
    "OPEN_STATES",
    "TERMINAL_STATES",
    "ActionRecord",
    "AssessmentRecord",
    "AssessmentStamp",
    "DeliveryRecord",
    "DeliveryStatus",
    "EscalationDraft",
    "EscalationLock",
    "EscalationRecord",
    "EscalationState",
    "InvalidTransition",
    "LastAction",
    "Store",
    "TicketAlreadyEscalated",
    "TicketRef",
]
