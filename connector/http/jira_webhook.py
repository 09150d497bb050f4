"""POST /webhooks/jira: status changes and comments on the issues our escalations point at, and, when a
Jira Service Management desk is configured (``JSM_PROJECT_KEY``), its requests being created, updated or
commented on, which are assessed like Zendesk tickets. The issue key's project tells the two apart; the
receiver never calls Jira to find out.

Jira admin webhooks with a secret sign the raw body: ``X-Hub-Signature: sha256=<hex>``; the
``X-Atlassian-Webhook-Identifier`` header stays the same across Jira's retries of one delivery.
A transition arrives as ``jira:issue_updated`` with a ``changelog.items[]`` entry for ``status``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connector.http import signing
from connector.http.events import EventKind, InboundEvent, Source
from connector.http.webhook_common import (
    Answer,
    Malformed,
    WebhookEndpoint,
    WebhookRequest,
    body_digest,
    delegate,
    ignored,
    parse_json_object,
    read_body,
    reply,
)

log = logging.getLogger(__name__)

PATH = "/webhooks/jira"

SECRET_CONFIG_KEY = "JIRA_WEBHOOK_SECRET"
DESK_CONFIG_KEY = "JSM_PROJECT_KEY"
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
# What a desk request's events mean: each is a reason to judge the request again.
REQUEST_EVENTS = frozenset({"jira:issue_created", "jira:issue_updated", "comment_created", "comment_updated"})
SUPPORTED_EVENTS: tuple[str, ...] = tuple(sorted(set(EVENT_HANDLERS) | REQUEST_EVENTS))
# Fields only Escalate itself writes on a request; an update touching nothing else is our own echo.
OWN_FIELDS = frozenset({"labels"})
# The label an agent adds to a JSM request to have its escalation carried out (the sidebar's button).
CREATE_LABEL = "escalate_create"


def _desk_project(config: Mapping[str, Any]) -> str | None:
    value = config.get(DESK_CONFIG_KEY)
    return str(value).upper() if value else None


def _is_request(key: str, desk: str | None) -> bool:
    return desk is not None and key.upper().startswith(f"{desk}-")


def _request_event(event_type: str, body: Mapping[str, Any]) -> Extracted:
    key = _issue_key(body)
    changes: dict[str, Any] = {"event": event_type}
    if event_type == "jira:issue_updated":
        changelog = body.get("changelog")
        raw_items = changelog.get("items") if isinstance(changelog, Mapping) else None
        items = [i for i in (raw_items if isinstance(raw_items, list) else []) if isinstance(i, Mapping)]
        touched = {str(i.get("field") or i.get("fieldId") or "").lower() for i in items}
        create = _create_label_added(items)
        if create is not None:
            changes["create"] = create
        elif touched and touched <= OWN_FIELDS:
            raise Ignore("request update touching only labels")
    return Extracted(EventKind.EVALUATE_REQUEST, key, changes)


def _create_label_added(items: list[Mapping[str, Any]]) -> str | None:
    """An agent's "create the issue" on a JSM request, which has no sidebar: the label ``escalate_create``
    (the suggested destination) or ``escalate_create_<destination>`` added. Returns the destination ("" for
    the suggested one), or None when no such label was added."""
    for item in items:
        if str(item.get("field") or item.get("fieldId") or "").lower() != "labels":
            continue
        before = set(str(item.get("fromString") or "").split())
        for label in str(item.get("toString") or "").split():
            if label not in before and (label == CREATE_LABEL or label.startswith(CREATE_LABEL + "_")):
                return label[len(CREATE_LABEL) + 1 :]
    return None


def receive(request: WebhookRequest, endpoint: WebhookEndpoint) -> Answer:
    body = read_body(request)
    key = endpoint.secret(SECRET_CONFIG_KEY, request)
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
        try:
            if event_type in REQUEST_EVENTS and _is_request(_issue_key(data), _desk_project(endpoint.config)):
                extracted = _request_event(event_type, data)
            elif event_type in EVENT_HANDLERS:
                extracted = EVENT_HANDLERS[event_type](data)
            else:
                return ignored("jira", event_type, "event we do not act on")
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
    return delegate(event, endpoint.intake)
