"""POST /webhooks/zendesk, in both modes (inline and Redis): what is accepted, queued, refused."""

from __future__ import annotations

import io
import json
import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connector.http import signing
from connector.http.zendesk_webhook import SUBSCRIBED_EVENT_TYPES, TRIGGER_EVENT_TYPE
from tests.conftest_service import (
    ZENDESK_SECRET,
    as_body,
    make_settings,
    queued_events,
    zendesk_headers,
)
from worker.app import build_service, create_app

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "zendesk"
URL = "/webhooks/zendesk"


def trigger_body(ticket_id: object = "42") -> dict:
    return {
        "type": TRIGGER_EVENT_TYPE,
        "version": 1,
        "ticket_id": ticket_id,
        "status": "Open",
        "priority": "High",
    }


def event_body(event_type: str, ticket_id: object = "42", event: dict | None = None) -> dict:
    return {
        "account_id": 12514403,
        "detail": {"id": ticket_id, "status": "OPEN", "priority": "HIGH", "subject": "Export fails"},
        "event": event if event is not None else {},
        "id": "2b24ef10-19d4-4740-93cf-8f98ec4776c0",
        "subject": f"zen:ticket:{ticket_id}",
        "time": "2026-11-20T15:00:00Z",
        "type": f"zen:event-type:{event_type}",
        "zendesk_event_version": "2022-11-06",
    }


def post(client, payload, **header_args):
    body = payload if isinstance(payload, bytes) else as_body(payload)
    return client.post(URL, data=body, headers=zendesk_headers(body, **header_args))


# -- signature ---------------------------------------------------------------------------------


def test_signature_matches_the_documented_test_vector():
    body = b'{"event":"ticket.updated","id":123}'
    expected = "S/RDdU2ERmj7LHDDoWJ2onPYH+t7/f2+LTM4dL7UiLM="
    assert signing.sign_zendesk(ZENDESK_SECRET, "2021-03-25T05:09:27Z", body) == expected
    assert signing.zendesk_signature_valid(ZENDESK_SECRET, "2021-03-25T05:09:27Z", body, expected)
    assert not signing.zendesk_signature_valid(ZENDESK_SECRET, "2021-03-25T05:09:28Z", body, expected)
    assert not signing.zendesk_signature_valid(ZENDESK_SECRET, "2021-03-25T05:09:27Z", body + b" ", expected)


@pytest.mark.parametrize(
    ("offset", "fresh"),
    [
        (timedelta(0), True),
        (timedelta(minutes=4, seconds=59), True),
        (-timedelta(minutes=4), True),
        (timedelta(minutes=5, seconds=1), False),
        (-timedelta(minutes=6), False),
    ],
)
def test_timestamps_more_than_five_minutes_off_are_stale(offset, fresh):
    now = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
    stamp = (now - offset).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert signing.timestamp_fresh(stamp, now=now) is fresh


def test_unparseable_timestamp_is_not_fresh():
    assert not signing.timestamp_fresh("yesterday")


# -- accepted ----------------------------------------------------------------------------------


def test_trigger_webhook_is_accepted_and_queued(app, client, fake_pipeline):
    response = post(client, trigger_body("42"))
    assert response.status_code == 202
    assert response.get_json()["status"] == "accepted"
    [event] = queued_events(app, fake_pipeline)
    assert event["source"] == "zendesk"
    assert event["kind"] == "evaluate_ticket"
    assert event["ticket_id"] == 42
    assert event["delivery_id"] == "8350205582"
    assert event["changes"] == {"status": "open", "priority": "high"}


@pytest.mark.parametrize(
    ("event_type", "event", "changes"),
    [
        (
            "ticket.status_changed",
            {"current": "PENDING", "previous": "OPEN"},
            {"field": "status", "from": "open", "to": "pending"},
        ),
        (
            "ticket.priority_changed",
            {"current": "URGENT", "previous": "HIGH"},
            {"field": "priority", "from": "high", "to": "urgent"},
        ),
        (
            "ticket.tags_changed",
            {"tags_added": ["bug_confirmed"], "tags_removed": []},
            {"field": "tags", "added": ["bug_confirmed"], "removed": []},
        ),
        ("ticket.comment_added", {"comment": {"id": "1", "body": "still broken", "is_public": True}}, {}),
        ("ticket.created", {}, {}),
        (
            "ticket.agent_assignment_changed",
            {"current": "235324", "previous": "235323"},
            {"field": "agent_assignment", "from": "235323", "to": "235324"},
        ),
    ],
)
def test_ticket_events_are_queued_for_evaluation(app, client, fake_pipeline, event_type, event, changes):
    response = post(client, event_body(event_type, "4711", event))
    assert response.status_code == 202
    [queued] = queued_events(app, fake_pipeline)
    assert queued["ticket_id"] == 4711  # a string in the payload, an int in the event
    assert queued["event_type"] == f"zen:event-type:{event_type}"
    assert queued["changes"] == changes


def test_event_webhook_ticket_id_can_come_from_the_subject(app, client, fake_pipeline):
    body = event_body("ticket.created", "77")
    del body["detail"]["id"]
    assert post(client, body).status_code == 202
    assert queued_events(app, fake_pipeline)[0]["ticket_id"] == 77


def test_without_invocation_header_the_event_id_identifies_the_delivery(app, client, fake_pipeline):
    assert post(client, event_body("ticket.created"), invocation_id=None).status_code == 202
    assert queued_events(app, fake_pipeline)[0]["delivery_id"] == "2b24ef10-19d4-4740-93cf-8f98ec4776c0"


# -- ignored -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        event_body("ticket.merged"),
        event_body("ticket.followers_changed"),
        {"type": "zen:event-type:user.created", "detail": {"id": "1"}, "id": "x"},
        {"type": "something.else", "ticket_id": "1"},
    ],
)
def test_events_we_do_not_act_on_answer_200_and_queue_nothing(app, client, fake_pipeline, payload):
    response = post(client, payload)
    assert response.status_code == 200
    assert response.get_json()["status"] == "ignored"
    assert queued_events(app, fake_pipeline) == []


# -- refused -----------------------------------------------------------------------------------


def test_forged_signature_is_refused(app, client, fake_pipeline):
    body = as_body(trigger_body())
    response = client.post(URL, data=body, headers=zendesk_headers(body, secret="not-the-secret"))
    assert response.status_code == 401
    assert queued_events(app, fake_pipeline) == []


def test_body_changed_after_signing_is_refused(app, client, fake_pipeline):
    body = as_body(trigger_body("42"))
    headers = zendesk_headers(body)
    response = client.post(URL, data=as_body(trigger_body("43")), headers=headers)
    assert response.status_code == 401
    assert queued_events(app, fake_pipeline) == []


@pytest.mark.parametrize("minutes", [-10, 6])
def test_stale_or_future_timestamp_is_refused_even_when_signed(app, client, fake_pipeline, minutes):
    stamp = (datetime.now(UTC) - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
    response = post(client, trigger_body(), timestamp=stamp)
    assert response.status_code == 401
    assert response.get_json()["error"] == "stale timestamp"
    assert queued_events(app, fake_pipeline) == []


def test_unsigned_request_is_refused(app, client, fake_pipeline):
    response = client.post(URL, json=trigger_body())
    assert response.status_code == 401
    assert queued_events(app, fake_pipeline) == []


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"\xff\xfe",
        as_body([1, 2, 3]),
        as_body({"ticket_id": "42"}),
        as_body(trigger_body("forty-two")),
        as_body(trigger_body(-3)),
        as_body({"type": TRIGGER_EVENT_TYPE}),
        as_body({"type": "zen:event-type:ticket.created", "id": "e1"}),
    ],
)
def test_malformed_but_signed_requests_are_refused_with_400(app, client, fake_pipeline, payload):
    response = post(client, payload)
    assert response.status_code == 400
    assert queued_events(app, fake_pipeline) == []


def test_oversized_body_is_refused_with_413(app, client, fake_pipeline):
    payload = trigger_body()
    payload["padding"] = "x" * (1024 * 1024)
    response = post(client, payload)
    assert response.status_code == 413
    assert queued_events(app, fake_pipeline) == []


def test_oversized_chunked_body_without_length_is_refused_with_413(app, client, fake_pipeline):
    body = as_body({**trigger_body(), "padding": "x" * (1024 * 1024)})
    headers = zendesk_headers(body)
    # What gunicorn hands over for a chunked request: no length, a stream the server terminates.
    response = client.post(
        URL,
        input_stream=io.BytesIO(body),
        headers={**headers, "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert queued_events(app, fake_pipeline) == []


def test_missing_secret_refuses_everything_and_logs_once(tmp_path, fake_pipeline, caplog):
    settings = make_settings(tmp_path, zendesk_webhook_secret=None)
    service = build_service(settings)
    client = create_app(settings, service=service).test_client()
    caplog.set_level(logging.ERROR)
    for _ in range(3):
        assert post(client, trigger_body()).status_code == 401
    errors = [r for r in caplog.records if "ZENDESK_WEBHOOK_SECRET" in r.getMessage()]
    assert len(errors) == 1
    service.queue.close()


# -- duplicates --------------------------------------------------------------------------------


def test_the_same_delivery_twenty_times_gives_one_job(app, client, fake_pipeline):
    statuses = [post(client, trigger_body("42")).status_code for _ in range(20)]
    assert statuses[0] == 202
    assert statuses[1:] == [200] * 19
    assert len(queued_events(app, fake_pipeline)) == 1


def test_the_same_delivery_twenty_times_at_once_gives_one_job(app, fake_pipeline):
    body = as_body(trigger_body("42"))
    headers = zendesk_headers(body)
    barrier = threading.Barrier(20)
    statuses: list[int] = []

    def deliver() -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(client.post(URL, data=body, headers=headers).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 19 + [202]
    assert len(queued_events(app, fake_pipeline)) == 1


def test_different_deliveries_of_the_same_ticket_are_separate_jobs(app, client, fake_pipeline):
    assert post(client, trigger_body("42"), invocation_id="1").status_code == 202
    assert post(client, trigger_body("42"), invocation_id="2").status_code == 202
    assert len(queued_events(app, fake_pipeline)) == 2


# -- what we ship to install in Zendesk ----------------------------------------------------------


def test_trigger_definition_embeds_the_shipped_body_template():
    trigger = json.loads((DEPLOY / "trigger.json").read_text())["trigger"]
    template = json.loads((DEPLOY / "trigger_body.json").read_text())
    [action] = trigger["actions"]
    assert action["field"] == "notification_webhook"
    webhook_id, body = action["value"]
    assert webhook_id == "${ZENDESK_WEBHOOK_ID}"
    assert json.loads(body) == template
    assert template["type"] == TRIGGER_EVENT_TYPE


def test_webhook_definitions_match_what_the_endpoint_handles():
    trigger_hook = json.loads((DEPLOY / "webhook.json").read_text())["webhook"]
    events_hook = json.loads((DEPLOY / "webhook_events.json").read_text())["webhook"]
    for hook in (trigger_hook, events_hook):
        assert hook["endpoint"].endswith(URL)
        assert (hook["http_method"], hook["request_format"], hook["status"]) == ("POST", "json", "active")
    assert trigger_hook["subscriptions"] == ["conditional_ticket_events"]
    assert events_hook["subscriptions"] == list(SUBSCRIBED_EVENT_TYPES)


def test_the_rendered_trigger_body_is_accepted(app, client, fake_pipeline):
    template = (DEPLOY / "trigger_body.json").read_text()
    rendered = (
        template.replace("{{ticket.id}}", "1234")
        .replace("{{ticket.status}}", "Open")
        .replace("{{ticket.priority}}", "Urgent")
        .replace("{{ticket.ticket_type}}", "Incident")
        .replace("{{ticket.tags}}", "bug_confirmed enterprise")
        .replace("{{ticket.updated_at_with_timestamp}}", "2026-11-20T15:00:00Z")
        .replace("{{current_user.id}}", "99")
        .replace("{{ticket.via}}", "Web form")
        .replace("{{ticket.link}}", "acme.zendesk.com/agent/tickets/1234")
    )
    assert "{{" not in rendered
    assert post(client, rendered.encode()).status_code == 202
    [event] = queued_events(app, fake_pipeline)
    assert event["ticket_id"] == 1234
    assert event["changes"] == {"status": "open", "priority": "urgent"}
