"""The whole service for issue 6's tests: the sandbox Zendesk and Jira, the app in Redis mode on a Redis
database of the test's own, jobs run by an RQ SimpleWorker in this process (burst), a SQLite store.

``Desk`` drives it the way the outside world does: tickets appear in the sandbox Zendesk, signed Zendesk
and Jira webhooks arrive over the app's test client, the worker runs what they queued.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rq import SimpleWorker

from connector.http.zendesk_webhook import TRIGGER_EVENT_TYPE
from connector.sandbox.seed import JIRA_ISSUE_FIELD
from connector.sandbox.server import Sandbox
from tests.conftest_service import (
    as_body,
    jira_headers,
    make_settings,
    sandbox_connector_settings,
    zendesk_headers,
)
from worker import jobs
from worker.app import Service, build_service, create_app
from worker.config import Settings
from worker.jobs import JobContext
from worker.store import EscalationRecord, TicketRef

# Seeded organizations (connector/sandbox/seed_zendesk.json): id → (name, ARR); requester = 1000 + id - 500.
HOOLI, WONKA, MASSIVE, INITECH, SOYLENT, TYRELL = 509, 510, 514, 503, 506, 508

WEBHOOKS = (
    (
        "Outgoing webhooks not firing since yesterday",
        "Our webhook endpoint hasn't received any events since yesterday afternoon. "
        "Deliveries used to work fine.",
    ),
    (
        "Webhook deliveries stopped",
        "No webhook calls are reaching our server anymore; "
        "the integration log on your side shows nothing sent.",
    ),
    (
        "Not receiving webhook events",
        "Since Tuesday our system gets no webhook notifications from your platform at all.",
    ),
)
INVOICE = (
    "Invoice PDF shows wrong tax rate",
    "The VAT on our latest invoice PDF is calculated at 19% instead of 20%.",
)


def requester_of(org: int) -> int:
    return 1000 + org - 500


@dataclass
class Desk:
    sandbox: Sandbox
    service: Service
    app: Any
    settings: Settings
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def ctx(self) -> JobContext:
        return self.service.job_context()

    @property
    def store(self):
        return self.service.store

    @property
    def zendesk(self):
        return self.sandbox.zendesk_state

    @property
    def jira(self):
        return self.sandbox.jira_state

    def ticket(self, org: int, subject: str, description: str, **fields: Any) -> int:
        created = self.zendesk.add_ticket(
            requester_id=requester_of(org), subject=subject, description=description, **fields
        )
        return int(created["id"])

    def deliver(self, ticket_id: int) -> None:
        """Zendesk's trigger webhook for the ticket, then the worker runs the job it queued."""
        body = as_body({"type": TRIGGER_EVENT_TYPE, "version": 1, "ticket_id": str(ticket_id)})
        headers = zendesk_headers(body, invocation_id=f"t{ticket_id}-{next(self._ids)}")
        answer = self.app.test_client().post("/webhooks/zendesk", data=body, headers=headers)
        assert answer.status_code == 202, answer.get_data(as_text=True)
        self.work()

    def jira_event(self, payload: dict[str, Any], *, identifier: str | None = None) -> None:
        body = as_body(payload)
        headers = jira_headers(body, identifier=identifier or f"jira-{next(self._ids)}")
        answer = self.app.test_client().post("/webhooks/jira", data=body, headers=headers)
        assert answer.status_code in (200, 202), answer.get_data(as_text=True)
        self.work()

    def work(self) -> None:
        queue = self.service.queue.rq
        SimpleWorker([queue], connection=queue.connection).work(burst=True)

    def escalations(self, ticket_id: int, **kwargs: Any) -> list[EscalationRecord]:
        return self.store.escalations_for_ticket(TicketRef.zendesk(ticket_id), **kwargs)

    def escalation(self, ticket_id: int) -> EscalationRecord:
        found = [e for e in self.escalations(ticket_id) if e.destination == "engineering"]
        assert len(found) == 1, found
        return found[0]

    def issue(self, key: str) -> dict[str, Any]:
        return next(i for i in self.jira.dump()["issues"] if i["key"] == key)

    def notes(self, ticket_id: int, containing: str) -> list[dict[str, Any]]:
        return [n for n in self.zendesk.internal_notes(ticket_id) if containing in n["body"]]

    def comments(self, key: str, containing: str) -> list[str]:
        return [_text(c["body"]) for c in self.issue(key)["comments"] if containing in _text(c["body"])]


def _text(body: Any) -> str:
    """A Jira comment body as text (ADF documents: the text nodes)."""
    if isinstance(body, str):
        return body
    if isinstance(body, dict):
        if body.get("type") == "text":
            return str(body.get("text") or "")
        return "\n".join(_text(c) for c in body.get("content") or [])
    return ""


PG_TABLES = (
    "deliveries, assessments, escalations, escalation_tickets, audit_log, "
    "symptom_index, symptom_index_state, escalation_tracking"
)


def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite in the test's directory, or the session's PostgreSQL database emptied for this test."""
    from sqlalchemy import text

    from worker.symptom_index import reset_indexes

    reset_indexes()
    if getattr(request, "param", "sqlite") != "postgresql":
        return f"sqlite:///{tmp_path / 'app.sqlite3'}"
    pg = request.getfixturevalue("_pg_store")
    with pg.engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {PG_TABLES} RESTART IDENTITY CASCADE"))
    return request.getfixturevalue("pg_url")


@contextmanager
def open_desk(
    sandbox: Sandbox, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **overrides: Any
) -> Iterator[Desk]:
    monkeypatch.setenv("ZENDESK_JIRA_FIELD_ID", str(JIRA_ISSUE_FIELD))
    settings = make_settings(
        tmp_path,
        redis_url=redis_url,
        **sandbox_connector_settings(sandbox),
        **overrides,
    )
    service = build_service(settings)
    app = create_app(settings, service=service)
    # The SimpleWorker runs jobs in this process, against this service's store and queue.
    monkeypatch.setattr(jobs, "_context", service.job_context())
    try:
        yield Desk(sandbox, service, app, settings)
    finally:
        service.store.dispose()


def status_event(key: str, before: str, after: str, category: str) -> dict[str, Any]:
    """A Jira admin webhook for a transition (``jira:issue_updated`` with a status changelog item)."""
    ids = {"To Do": "10000", "In Progress": "3", "Done": "10001"}
    return {
        "timestamp": 1763650800000,
        "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_generic",
        "issue": {
            "id": "10001",
            "key": key,
            "fields": {"status": {"name": after, "statusCategory": {"key": category}}},
        },
        "changelog": {
            "id": "20001",
            "items": [
                {
                    "field": "status",
                    "fieldtype": "jira",
                    "fieldId": "status",
                    "from": ids.get(before),
                    "fromString": before,
                    "to": ids.get(after),
                    "toString": after,
                }
            ],
        },
    }


def comment_event(key: str, body: str, author: str = "Dana Engineer") -> dict[str, Any]:
    return {
        "timestamp": 1763650800000,
        "webhookEvent": "comment_created",
        "comment": {"id": "30001", "body": body, "author": {"displayName": author}},
        "issue": {"id": "10001", "key": key},
    }


def later(hours: float, start: datetime | None = None) -> datetime:
    return (start or datetime.now(UTC)) + timedelta(hours=hours)


def release_scheduled(desk: Desk) -> int:
    """Move every scheduled job (RQ retries) to the queue now, as the scheduler would once due."""
    from rq.job import Job
    from rq.registry import ScheduledJobRegistry

    queue = desk.service.queue.rq
    registry = ScheduledJobRegistry(queue=queue)
    ids = registry.get_job_ids()
    for job_id in ids:
        registry.remove(job_id)
        queue.enqueue_job(Job.fetch(job_id, connection=queue.connection))
    return len(ids)
