"""Logs: one JSON object per line, with the ticket, delivery and job they are about, and never a secret."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from connector.http.zendesk_webhook import TRIGGER_EVENT_TYPE
from tests.conftest_service import (
    JIRA_SECRET,
    ZENDESK_SECRET,
    as_body,
    make_settings,
    sandbox_connector_settings,
    service_of,
    zendesk_headers,
)
from tests.test_metrics import lexical_rules
from worker import logging_setup
from worker.app import create_app
from worker.config import Settings
from worker.logging_setup import REDACTED, JsonFormatter, Scrubber


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Every record that reaches the root logger, as our JSON lines; DEBUG and up."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


# -- the pieces ---------------------------------------------------------------------------------


def test_a_line_is_json_with_the_context_fields(captured):
    log = logging.getLogger("escalate.test")
    logging_setup.configure(Settings())
    with logging_setup.bound(ticket_id=42, delivery_id="d-1", job_id="zendesk-d-1"):
        log.info("assessed %s", "ticket", extra={"verdict": "escalate"})
    log.info("outside")
    inside, outside = lines(captured)[-2:]
    assert inside["message"] == "assessed ticket"
    assert (inside["ticket_id"], inside["delivery_id"], inside["job_id"]) == (42, "d-1", "zendesk-d-1")
    assert (
        inside["verdict"] == "escalate" and inside["level"] == "info" and inside["logger"] == "escalate.test"
    )
    assert inside["ts"].endswith("+00:00")
    assert "ticket_id" not in outside


def test_the_scrubber_knows_every_form_a_secret_travels_in():
    scrubber = Scrubber()
    settings = Settings(
        zendesk_email="bot@acme.test",
        zendesk_api_token="zd-token-1234567",
        zendesk_webhook_secret=ZENDESK_SECRET,
        jira_email="bot@acme.test",
        jira_api_token="jira-token-7654321",
        jira_webhook_secret=JIRA_SECRET,
        redis_url="redis://:redis%2Fpass-word@redis:6379/0",
        database_url="postgresql+psycopg://escalate:pg-pass-word@db/escalate",
    )
    scrubber.add_settings(settings, {"ESCALATE_SIDEBAR_SECRET": "sidebar-secret-value-0123456789"})
    zendesk_basic = base64.b64encode(b"bot@acme.test/token:zd-token-1234567").decode()
    jira_basic = base64.b64encode(b"bot@acme.test:jira-token-7654321").decode()
    for secret in (
        "zd-token-1234567",
        ZENDESK_SECRET,
        "jira-token-7654321",
        JIRA_SECRET,
        "redis/pass-word",
        "redis%2Fpass-word",
        "pg-pass-word",
        "sidebar-secret-value-0123456789",
        zendesk_basic,
        jira_basic,
    ):
        assert scrubber.scrub(f"before {secret} after") == f"before {REDACTED} after", secret
    assert scrubber.scrub("nothing secret here") == "nothing secret here"


def test_short_values_are_not_treated_as_secrets():
    scrubber = Scrubber()
    scrubber.add("abc", None, "")
    assert scrubber.scrub("abc abc") == "abc abc"


def test_secrets_are_scrubbed_from_messages_arguments_exceptions_and_extras(captured):
    token = "leaky-token-0123456789"
    logging_setup.configure(Settings(jira_api_token=token))
    log = logging.getLogger("escalate.test")
    log.warning("calling with %s", token)
    log.info("header", extra={"authorization": f"Bearer {token}"})
    try:
        raise RuntimeError(f"refused token {token}")
    except RuntimeError:
        log.exception("call failed")
    text = captured.getvalue()
    assert token not in text
    assert text.count(REDACTED) >= 3
    assert "RuntimeError: refused token [REDACTED]" in text


def test_records_are_scrubbed_for_every_handler_not_only_ours(caplog):
    token = "another-leaky-token-42"
    logging_setup.configure(Settings(zendesk_api_token=token))
    caplog.set_level(logging.INFO)
    logging.getLogger("somewhere.else").info("token=%s", token)
    assert token not in caplog.text
    assert REDACTED in caplog.records[-1].getMessage()


# -- a real run ---------------------------------------------------------------------------------


@pytest.fixture
def empty_pg(_pg_store, pg_url) -> str:
    """The session's PostgreSQL database, emptied (the sandbox is fresh too: no stale Jira keys)."""
    with _pg_store.engine.begin() as connection:
        connection.execute(
            text(
                "TRUNCATE deliveries, assessments, escalations, escalation_tickets, audit_log "
                "RESTART IDENTITY CASCADE"
            )
        )
    return pg_url


@pytest.mark.slow
def test_a_real_run_logs_context_and_never_a_configured_secret(tmp_path, sandbox_state, captured, empty_pg):
    env = sandbox_state.environment()
    # A database URL with a password (the local PostgreSQL trusts, so any password is accepted).
    database_url = empty_pg.replace("://postgres@", "://postgres:pg-pass-word-123@", 1)
    assert "pg-pass-word-123" in database_url
    settings = make_settings(
        tmp_path,
        **sandbox_connector_settings(sandbox_state),
        database_url=database_url,
        rules_path=lexical_rules(tmp_path),
    )
    app = create_app(settings)
    client = app.test_client()
    for ticket in (101, 102, 104):
        body = as_body({"type": TRIGGER_EVENT_TYPE, "ticket_id": str(ticket)})
        headers = zendesk_headers(body, invocation_id=f"log-{ticket}")
        assert client.post("/webhooks/zendesk", data=body, headers=headers).status_code == 202
        assert client.post("/webhooks/zendesk", data=body, headers=headers).status_code == 200  # a retry
    assert service_of(app).queue.join(timeout=60)
    # Accidents the scrubber exists for: a secret in a message, in an exception, in a URL.
    log = logging.getLogger("worker.accident")
    log.error("zendesk said no to %s", settings.zendesk_api_token)
    log.error("database at %s", database_url)
    try:
        raise ValueError(f"bad signature with {ZENDESK_SECRET} / {JIRA_SECRET}")
    except ValueError:
        log.exception("verification crashed")

    records = lines(captured)
    text = captured.getvalue()
    secrets = [
        env["ZENDESK_API_TOKEN"],
        env["JIRA_API_TOKEN"],
        ZENDESK_SECRET,
        JIRA_SECRET,
        "pg-pass-word-123",
        base64.b64encode(f"{env['ZENDESK_EMAIL']}/token:{env['ZENDESK_API_TOKEN']}".encode()).decode(),
    ]
    for secret in secrets:
        assert secret not in text, f"a configured secret reached the logs: {secret[:4]}…"
    # The job's lines say which ticket, delivery and job they are about; the request's, which delivery.
    in_job = [r for r in records if r.get("job_id") == "zendesk-log-102"]
    assert in_job, "no line from the job of delivery log-102"
    assert {(r["ticket_id"], r["delivery_id"]) for r in in_job} == {(102, "log-102")}
    assert any(r["logger"].startswith("connector.") for r in in_job)  # the connectors' lines too
    duplicates = [r for r in records if r["message"].startswith("duplicate zendesk delivery")]
    assert {r["delivery_id"] for r in duplicates} == {"log-101", "log-102", "log-104"}
    service_of(app).queue.close()
    service_of(app).store.dispose()
