"""POST /webhooks/jira, in both modes: transitions and comments queued, everything else not."""

from __future__ import annotations

import logging

import pytest

from connector.http import signing
from tests.conftest_service import JIRA_SECRET, as_body, jira_headers, make_settings, queued_events
from worker.app import build_service, create_app

URL = "/webhooks/jira"


def issue_updated(items: list[dict], key: str = "ENG-7") -> dict:
    return {
        "timestamp": 1763650800000,
        "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_generic",
        "issue": {"id": "10001", "key": key, "fields": {"status": {"name": "In Progress"}}},
        "changelog": {"id": "20001", "items": items},
    }


STATUS_ITEM = {
    "field": "status",
    "fieldtype": "jira",
    "fieldId": "status",
    "from": "10000",
    "fromString": "To Do",
    "to": "3",
    "toString": "In Progress",
}


def comment_created(key: str = "ENG-7") -> dict:
    return {
        "timestamp": 1763650800000,
        "webhookEvent": "comment_created",
        "comment": {"id": "30001", "body": "Fix deployed to staging"},
        "issue": {"id": "10001", "key": key},
    }


def post(client, payload, **header_args):
    body = payload if isinstance(payload, bytes) else as_body(payload)
    return client.post(URL, data=body, headers=jira_headers(body, **header_args))


def test_hub_signature_round_trip():
    body = b'{"webhookEvent":"comment_created"}'
    header = signing.sign_hub(JIRA_SECRET, body)
    assert header.startswith("sha256=")
    assert signing.hub_signature_valid(JIRA_SECRET, body, header)
    assert signing.hub_signature_valid(JIRA_SECRET, body, header.upper().replace("SHA256=", "sha256="))
    assert not signing.hub_signature_valid("other", body, header)
    assert not signing.hub_signature_valid(JIRA_SECRET, body, header.replace("sha256=", "sha1="))


def test_status_change_is_queued(app, client, fake_pipeline):
    response = post(client, issue_updated([{"field": "assignee", "toString": "Ann"}, STATUS_ITEM]))
    assert response.status_code == 202
    [event] = queued_events(app, fake_pipeline)
    assert event["source"] == "jira"
    assert event["kind"] == "issue_status_changed"
    assert event["issue_key"] == "ENG-7"
    assert event["delivery_id"] == "1234567"
    assert event["changes"]["from"] == "To Do"
    assert event["changes"]["to"] == "In Progress"


def test_comment_is_queued(app, client, fake_pipeline):
    assert post(client, comment_created()).status_code == 202
    [event] = queued_events(app, fake_pipeline)
    assert event["kind"] == "issue_commented"
    assert event["changes"] == {"field": "comment", "comment_id": "30001"}


@pytest.mark.parametrize(
    "payload",
    [
        issue_updated([{"field": "assignee", "toString": "Ann"}]),
        issue_updated([]),
        {"webhookEvent": "jira:issue_created", "issue": {"key": "ENG-8"}},
        {"webhookEvent": "comment_updated", "issue": {"key": "ENG-8"}, "comment": {"id": "1"}},
    ],
)
def test_other_events_answer_200_and_queue_nothing(app, client, fake_pipeline, payload):
    response = post(client, payload)
    assert response.status_code == 200
    assert response.get_json()["status"] == "ignored"
    assert queued_events(app, fake_pipeline) == []


@pytest.mark.parametrize(
    "payload",
    [
        b"{",
        as_body(["x"]),
        as_body({"issue": {"key": "ENG-1"}}),
        as_body(comment_created(key="")),
        as_body(issue_updated([STATUS_ITEM], key="not a key")),
    ],
)
def test_malformed_requests_are_refused_with_400(app, client, fake_pipeline, payload):
    assert post(client, payload).status_code == 400
    assert queued_events(app, fake_pipeline) == []


def test_forged_or_unsigned_requests_are_refused(app, client, fake_pipeline):
    assert post(client, comment_created(), secret="guess").status_code == 401
    assert client.post(URL, json=comment_created()).status_code == 401
    assert queued_events(app, fake_pipeline) == []


def test_oversized_body_is_refused(app, client, fake_pipeline):
    payload = {**comment_created(), "padding": "x" * (1024 * 1024)}
    assert post(client, payload).status_code == 413
    assert queued_events(app, fake_pipeline) == []


def test_retries_with_the_same_identifier_give_one_job(app, client, fake_pipeline):
    statuses = [post(client, comment_created()).status_code for _ in range(20)]
    assert statuses.count(202) == 1
    assert len(queued_events(app, fake_pipeline)) == 1


def test_without_identifier_the_body_identifies_the_delivery(app, client, fake_pipeline):
    assert post(client, comment_created(), identifier=None).status_code == 202
    assert post(client, comment_created(), identifier=None).status_code == 200
    [event] = queued_events(app, fake_pipeline)
    assert event["delivery_id"].startswith("sha256-")


def test_missing_secret_refuses_everything(tmp_path, fake_pipeline, caplog):
    settings = make_settings(tmp_path, jira_webhook_secret=None)
    service = build_service(settings)
    client = create_app(settings, service=service).test_client()
    caplog.set_level(logging.ERROR)
    assert post(client, comment_created()).status_code == 401
    assert post(client, comment_created(), secret="").status_code == 401
    assert sum("JIRA_WEBHOOK_SECRET" in r.getMessage() for r in caplog.records) == 1
    service.queue.close()


# -- a Jira Service Management desk on the same site ----------------------------------------------


@pytest.fixture(params=["inline", "redis"])
def desk_app(request, tmp_path, fake_pipeline):
    """The app with JSM_PROJECT_KEY=DESK, in both modes."""
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    settings = make_settings(tmp_path, redis_url=redis_url, jsm_project_key="DESK")
    service = build_service(settings)
    yield create_app(settings, service=service)
    if redis_url is None:
        service.queue.join(timeout=5)
        service.queue.close()
    service.store.dispose()


@pytest.mark.parametrize(
    "payload",
    [
        {"webhookEvent": "jira:issue_created", "issue": {"key": "DESK-3"}},
        issue_updated([{"field": "priority", "fromString": "Low", "toString": "High"}], key="DESK-3"),
        issue_updated([STATUS_ITEM], key="DESK-3"),
        comment_created(key="desk-3"),
        {**comment_created(key="DESK-3"), "webhookEvent": "comment_updated"},
    ],
    ids=["created", "updated", "transitioned", "commented", "comment-edited"],
)
def test_a_desk_request_event_queues_an_assessment_of_the_request(desk_app, fake_pipeline, payload):
    answer = post(desk_app.test_client(), payload, identifier="jsm-delivery-1")

    assert answer.status_code == 202
    [event] = queued_events(desk_app, fake_pipeline)
    assert (event["kind"], event["issue_key"], event["source"]) == (
        "evaluate_request",
        payload["issue"]["key"],
        "jira",
    )
    assert event["delivery_id"] == "jsm-delivery-1"


def test_engineering_issues_keep_their_own_handling_beside_a_desk(desk_app, fake_pipeline):
    assert post(desk_app.test_client(), issue_updated([STATUS_ITEM], key="ENG-7")).status_code == 202
    [event] = queued_events(desk_app, fake_pipeline)
    assert (event["kind"], event["issue_key"]) == ("issue_status_changed", "ENG-7")


@pytest.mark.parametrize(
    "payload",
    [
        issue_updated(
            [{"field": "labels", "fromString": "", "toString": "escalate_suggested"}], key="DESK-3"
        ),
        {"webhookEvent": "jira:issue_created", "issue": {"key": "ENG-9"}},  # not a desk request
        {"webhookEvent": "jira:issue_deleted", "issue": {"key": "DESK-3"}},
    ],
    ids=["our-own-labels", "other-project-created", "deleted"],
)
def test_what_is_not_a_request_change_is_acknowledged_and_not_queued(desk_app, fake_pipeline, payload):
    assert post(desk_app.test_client(), payload).status_code == 200
    assert queued_events(desk_app, fake_pipeline) == []


def test_the_same_delivery_twice_queues_one_assessment(desk_app, fake_pipeline):
    client = desk_app.test_client()
    payload = {"webhookEvent": "jira:issue_created", "issue": {"key": "DESK-3"}}
    assert post(client, payload, identifier="again").status_code == 202
    assert post(client, payload, identifier="again").status_code == 200
    assert len(queued_events(desk_app, fake_pipeline)) == 1


def test_a_forged_desk_event_is_refused_and_nothing_queued(desk_app, fake_pipeline):
    body = as_body({"webhookEvent": "jira:issue_created", "issue": {"key": "DESK-3"}})
    answer = desk_app.test_client().post(URL, data=body, headers=jira_headers(body, secret="forged"))
    assert answer.status_code == 401
    assert queued_events(desk_app, fake_pipeline) == []


@pytest.mark.parametrize(
    ("to", "destination"), [("fixed escalate_create", ""), ("escalate_create_security", "security")]
)
def test_an_agent_adding_the_create_label_is_queued_with_what_to_create(
    desk_app, fake_pipeline, to, destination
):
    payload = issue_updated([{"field": "labels", "fromString": "fixed", "toString": to}], key="DESK-3")

    assert post(desk_app.test_client(), payload).status_code == 202
    [event] = queued_events(desk_app, fake_pipeline)
    assert event["kind"] == "evaluate_request"
    assert event["changes"]["create"] == destination


def test_removing_the_create_label_is_our_own_echo(desk_app, fake_pipeline):
    payload = issue_updated(
        [{"field": "labels", "fromString": "fixed escalate_create", "toString": "fixed"}], key="DESK-3"
    )
    assert post(desk_app.test_client(), payload).status_code == 200
    assert queued_events(desk_app, fake_pipeline) == []
