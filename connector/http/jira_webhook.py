"""POST /webhooks/jira: status changes and comments on the issues our escalations point at.

Jira admin webhooks with a secret sign the raw body: ``X-Hub-Signature: sha256=<hex>``; the
``X-Atlassian-Webhook-Identifier`` header stays the same across Jira's retries of one delivery.
A transition arrives as ``jira:issue_updated`` with a ``changelog.items[]`` entry for ``status``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from connector.http import signing
from connector.http.events import EventKind, InboundEvent, Source
from connector.http.webhook_common import (
    MAX_BODY_BYTES,
    Malformed,
    body_digest,
    delegate,
    ignored,
    parse_json_object,
    read_body,
    reply,
    secret,
)

log = logging.getLogger(__name__)

bp = Blueprint("jira_webhook", __name__)

SECRET_CONFIG_KEY = "JIRA_WEBHOOK_SECRET"
SIGNATURE_HEADER = "X-Hub-Signature"
IDENTIFIER_HEADER = "X-Atlassian-Webhook-Identifier"


@dataclass(frozen=True)
class Extracted:
    kind: EventKind
    issue_key: str
    changes: Mapping[str, Any] = field(default_factory=dict)


class Ignore(Exception):
    """A known event type whose content we do not act on (an update that is not a transition)."""


def _issue_key(body: Mapping[str, Any]) -> str:
    issue = body.get("issue")
    key = issue.get("key") if isinstance(issue, Mapping) else None
    if not isinstance(key, str) or not key:
        raise Malformed("event without issue.key")
    return key


def _issue_updated(body: Mapping[str, Any]) -> Extracted:
    changelog = body.get("changelog")
    items = changelog.get("items") if isinstance(changelog, Mapping) else None
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping) and "status" in (item.get("field"), item.get("fieldId")):
            changes = {
                "field": "status",
                "from": item.get("fromString"),
                "to": item.get("toString"),
                "from_id": item.get("from"),
                "to_id": item.get("to"),
            }
            return Extracted(EventKind.ISSUE_STATUS_CHANGED, _issue_key(body), changes)
    raise Ignore("issue update without a status change")


def _comment_created(body: Mapping[str, Any]) -> Extracted:
    comment = body.get("comment")
    changes: dict[str, Any] = {"field": "comment"}
    if isinstance(comment, Mapping):
        changes["comment_id"] = comment.get("id")
    return Extracted(EventKind.ISSUE_COMMENTED, _issue_key(body), changes)


EVENT_HANDLERS: dict[str, Callable[[Mapping[str, Any]], Extracted]] = {
    "jira:issue_updated": _issue_updated,
    "comment_created": _comment_created,
}
SUPPORTED_EVENTS: tuple[str, ...] = tuple(sorted(EVENT_HANDLERS))


@bp.post("/webhooks/jira")
def receive() -> Response:
    try:
        body = read_body()
    except RequestEntityTooLarge:
        return reply(413, error=f"body larger than {MAX_BODY_BYTES} bytes")

    key = secret(SECRET_CONFIG_KEY)
    if key is None:
        return reply(401, error="webhook secret not configured")
    header = request.headers.get(SIGNATURE_HEADER, "")
    if not header:
        return reply(401, error="missing signature")
    if not signing.hub_signature_valid(key, body, header):
        log.warning("jira webhook with a bad signature from %s", request.remote_addr)
        return reply(401, error="bad signature")

    try:
        data = parse_json_object(body)
        event_type = data.get("webhookEvent")
        if not isinstance(event_type, str) or not event_type:
            raise Malformed("body has no webhookEvent")
        handler = EVENT_HANDLERS.get(event_type)
        if handler is None:
            return ignored("jira", event_type, "event we do not act on")
        try:
            extracted = handler(data)
        except Ignore as exc:
            return ignored("jira", event_type, str(exc))
        event = InboundEvent(
            source=Source.JIRA,
            delivery_id=request.headers.get(IDENTIFIER_HEADER) or body_digest(body),
            kind=extracted.kind,
            event_type=event_type,
            issue_key=extracted.issue_key,
            changes=extracted.changes,
            payload=data,
        )
    except (Malformed, ValueError) as exc:
        return reply(400, error=str(exc))
    return delegate(event)
