"""REDIS_URL unset: the web process runs the jobs in a thread, with the same policy as RQ."""

from __future__ import annotations

import time

import pytest

from connector.errors import NotFoundError, RateLimited, TransientError
from connector.http.zendesk_webhook import TRIGGER_EVENT_TYPE
from tests.conftest_service import as_body, make_settings, service_of, zendesk_headers
from worker import queue as queue_module
from worker.app import build_service, create_app
from worker.store import DeliveryStatus

URL = "/webhooks/zendesk"


def deliver(client, invocation_id: str = "8350205582"):
    body = as_body({"type": TRIGGER_EVENT_TYPE, "ticket_id": "42"})
    return client.post(URL, data=body, headers=zendesk_headers(body, invocation_id=invocation_id))


def delivery_status(app, delivery_id: str = "8350205582"):
    return service_of(app).store.get_delivery("zendesk", delivery_id)


def test_the_webhook_answers_before_the_job_runs_and_the_job_runs(inline_app, fake_pipeline):
    assert deliver(inline_app.test_client()).status_code == 202
    assert service_of(inline_app).queue.join(timeout=5)
    assert [call["ticket_id"] for call in fake_pipeline.calls] == [42]
    assert delivery_status(inline_app).status is DeliveryStatus.PROCESSED


def test_duplicates_are_caught_by_the_database(inline_app, fake_pipeline):
    client = inline_app.test_client()
    assert [deliver(client).status_code for _ in range(5)] == [202, 200, 200, 200, 200]
    assert service_of(inline_app).queue.join(timeout=5)
    assert len(fake_pipeline.calls) == 1


def test_transient_errors_are_retried(inline_app, fake_pipeline, monkeypatch):
    monkeypatch.setattr(queue_module, "TRANSIENT_RETRY_INTERVALS", (0.05, 0.05))
    fake_pipeline.script = [TransientError("zendesk", "502"), TransientError("zendesk", "502")]
    deliver(inline_app.test_client())
    assert service_of(inline_app).queue.join(timeout=5)
    assert len(fake_pipeline.calls) == 3
    assert delivery_status(inline_app).status is DeliveryStatus.PROCESSED
    assert delivery_status(inline_app).attempts == 3


def test_exhausted_retries_leave_the_delivery_failed(inline_app, fake_pipeline, monkeypatch):
    monkeypatch.setattr(queue_module, "TRANSIENT_RETRY_INTERVALS", (0.05,))
    fake_pipeline.script = [TransientError("zendesk", "502")] * 2
    deliver(inline_app.test_client())
    assert service_of(inline_app).queue.join(timeout=5)
    assert len(fake_pipeline.calls) == 2
    delivery = delivery_status(inline_app)
    assert delivery.status is DeliveryStatus.FAILED
    assert delivery.error == "TransientError: zendesk: 502"


def test_a_rate_limit_waits_without_blocking_other_jobs(inline_app, fake_pipeline):
    fake_pipeline.script = [RateLimited("zendesk", "429", retry_after=1.0), None]
    client = inline_app.test_client()
    deliver(client, invocation_id="first")
    deliver(client, invocation_id="second")
    queue = service_of(inline_app).queue
    assert not queue.join(timeout=0.5)  # the first still waits for its retry-after
    assert [call["delivery_id"] for call in fake_pipeline.calls] == ["first", "second"]
    assert delivery_status(inline_app, "first").status is DeliveryStatus.RECEIVED
    assert queue.join(timeout=5)
    assert [call["delivery_id"] for call in fake_pipeline.calls] == ["first", "second", "first"]
    assert delivery_status(inline_app, "first").status is DeliveryStatus.PROCESSED


def test_permanent_errors_are_not_retried(inline_app, fake_pipeline):
    fake_pipeline.script = [NotFoundError("zendesk", "GET /api/v2/tickets/42.json answered 404", status=404)]
    deliver(inline_app.test_client())
    assert service_of(inline_app).queue.join(timeout=5)
    assert len(fake_pipeline.calls) == 1
    delivery = delivery_status(inline_app)
    assert delivery.status is DeliveryStatus.FAILED
    assert "404" in delivery.error


def test_database_down_answers_503(tmp_path, fake_pipeline):
    settings = make_settings(
        tmp_path, database_url="postgresql://nobody@127.0.0.1:1/none", auto_migrate=False
    )
    service = build_service(settings)
    response = deliver(create_app(settings, service=service).test_client())
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert fake_pipeline.calls == []


def test_a_closed_queue_forgets_the_delivery_so_the_retry_counts(inline_app, fake_pipeline):
    client = inline_app.test_client()
    queue = service_of(inline_app).queue
    queue.close()
    assert deliver(client).status_code == 503
    assert delivery_status(inline_app) is None


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_checks_in_inline_mode(inline_app, path):
    response = inline_app.test_client().get(path)
    assert response.status_code == 200


def test_a_retry_due_after_shutdown_is_dropped_quietly(inline_app, fake_pipeline, monkeypatch):
    monkeypatch.setattr(queue_module, "TRANSIENT_RETRY_INTERVALS", (0.3,))
    fake_pipeline.script = [TransientError("zendesk", "502")]
    deliver(inline_app.test_client())
    queue = service_of(inline_app).queue
    time.sleep(0.1)
    queue.close()
    assert queue.join(timeout=5)  # the pending retry does not hang shutdown, nor raise in its timer
    assert len(fake_pipeline.calls) == 1
    assert delivery_status(inline_app).status is DeliveryStatus.FAILED
