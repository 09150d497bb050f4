"""What every webhook endpoint does the same way: cap the body, find the secret, answer, delegate."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from flask import Response, current_app, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from connector.http.events import AcceptOutcome, InboundEvent, Intake, IntakeUnavailable

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
# Where the app factory keeps the service object whose ``intake`` the endpoints delegate to.
EXTENSION_KEY = "escalate"
# The attribute of flask.g where ``reply`` leaves the status word it answered with ("accepted",
# "duplicate", "ignored", "unavailable"), so the request's after-hooks (worker/metrics.py) can count
# the outcome without parsing the body they were handed.
OUTCOME_ATTR = "escalate_webhook_status"


class Malformed(ValueError):
    """The request is authentic but not something we can read: 400, and the sender should not retry."""


def reply(code: int, /, **fields: Any) -> Response:
    response = jsonify(fields)
    response.status_code = code
    if "status" in fields:
        setattr(g, OUTCOME_ATTR, fields["status"])
    return response


def read_body() -> bytes:
    """The raw body, at most MAX_BODY_BYTES; raises RequestEntityTooLarge beyond that.

    The Content-Length check refuses honest large requests before reading anything; the
    per-request limit makes Werkzeug stop a chunked or lying one while streaming it.
    """
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise RequestEntityTooLarge()
    # One byte over the cap: Werkzeug's limited stream stops quietly at its limit, so reading up to
    # the cap itself would hand us a truncated body instead of telling us it was too large.
    request.max_content_length = MAX_BODY_BYTES + 1
    body = request.get_data(cache=True)
    if len(body) > MAX_BODY_BYTES:
        raise RequestEntityTooLarge()
    return body


def secret(config_key: str) -> str | None:
    """The signing secret from app config, or None; a missing one is logged once per app and key.

    Without a secret nothing can be verified, so the caller refuses everything (never accept unsigned).
    """
    value = current_app.config.get(config_key)
    if value:
        return str(value)
    reported: set[str] = current_app.extensions.setdefault("escalate.config_errors", set())
    if config_key not in reported:
        reported.add(config_key)
        log.error(
            "configuration error: %s is not set; refusing every request to %s", config_key, request.path
        )
    return None


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Malformed(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Malformed("body is not a JSON object")
    return data


def body_digest(body: bytes) -> str:
    """A delivery id for senders that omit theirs: the same bytes are the same delivery."""
    return "sha256-" + hashlib.sha256(body).hexdigest()


def intake() -> Intake:
    return current_app.extensions[EXTENSION_KEY].intake


def delegate(event: InboundEvent) -> Response:
    """Hand the event to the intake and translate its answer into the status the sender acts on."""
    try:
        outcome = intake().accept(event)
    except IntakeUnavailable as exc:
        # 503 with a short Retry-After is one of the answers Zendesk retries; Jira retries 5xx too.
        log.warning("cannot queue %s delivery %s: %s", event.source, event.delivery_id, exc)
        response = reply(503, status="unavailable", error=str(exc))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if outcome is AcceptOutcome.DUPLICATE:
        log.info("duplicate %s delivery %s ignored", event.source, event.delivery_id)
        return reply(200, status="duplicate", delivery_id=event.delivery_id)
    return reply(202, status="accepted", delivery_id=event.delivery_id, kind=event.kind.value)


def ignored(source: str, event_type: str, reason: str) -> Response:
    # 2xx, not 4xx: the sender did nothing wrong and must not retry (Zulip's habit).
    log.info("%s event %r ignored: %s", source, event_type, reason)
    return reply(200, status="ignored", event_type=event_type, reason=reason)
