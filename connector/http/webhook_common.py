"""What every webhook endpoint does the same way: cap the body, find the secret, answer, delegate.

The endpoints are plain WSGI applications on Werkzeug's request, mounted in front of the Flask app
(worker/app.py), not Flask views. A webhook is the service's most frequent request and its answer
needs nothing of Flask: no URL variables, templates, sessions or app context. Flask's request and
app contexts, URL matching and hooks were about a third of the app's CPU for a webhook. In-process,
6,000 signed deliveries into Redis, old and new code alternating: 580-720 us of CPU a webhook as a
Flask view, 300-340 us as this together with the intake's job template (worker/queue.py
``queued_fields``). Under gunicorn on 2 cores that took the intake from ~1,200 to 1,500-1,750
webhooks/s (bench/bench_intake.py).

A handler takes the request and the endpoint (its settings and the intake) and returns an ``Answer``;
the endpoint turns it into the HTTP response and leaves the outcome in the WSGI environ, where the
service's metrics (worker/metrics.py ``instrument_webhook``) count it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Request

from connector.http.events import AcceptOutcome, InboundEvent, Intake, IntakeUnavailable

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
# Where the app factory keeps the service object whose ``intake`` the endpoints delegate to.
EXTENSION_KEY = "escalate"
# The WSGI environ key where an endpoint leaves what became of a POST ("accepted", "duplicate", "ignored",
# "malformed", "unauthorized", "too_large", "unavailable", "error") for the metrics.
OUTCOME_KEY = "escalate.webhook_outcome"

_OUTCOME_OF_STATUS = {400: "malformed", 401: "unauthorized", 413: "too_large", 503: "unavailable"}


class Malformed(ValueError):
    """The request is authentic but not something we can read: 400, and the sender should not retry."""


class WebhookRequest(Request):
    # One byte over the cap: Werkzeug's limited stream stops quietly at its limit, so reading up to
    # the cap itself would hand us a truncated body instead of telling us it was too large.
    max_content_length = MAX_BODY_BYTES + 1


@dataclass(frozen=True)
class Answer:
    """An endpoint's answer: the status, the JSON object of the body, extra headers."""

    status: int
    fields: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def outcome(self) -> str:
        said = self.fields.get("status")
        if said in ("accepted", "duplicate", "ignored", "unavailable"):
            return str(said)
        return _OUTCOME_OF_STATUS.get(self.status, "error")


def reply(code: int, /, **fields: Any) -> Answer:
    return Answer(code, fields)


def read_body(request: Request) -> bytes:
    """The raw body, at most MAX_BODY_BYTES; raises RequestEntityTooLarge beyond that.

    The Content-Length check refuses honest large requests before reading anything; the request's
    limit makes Werkzeug stop a chunked or lying one while streaming it.
    """
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise RequestEntityTooLarge()
    body = request.get_data(cache=True)
    if len(body) > MAX_BODY_BYTES:
        raise RequestEntityTooLarge()
    return body


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


def delegate(event: InboundEvent, intake: Intake) -> Answer:
    """Hand the event to the intake and translate its answer into the status the sender acts on."""
    try:
        outcome = intake.accept(event)
    except IntakeUnavailable as exc:
        # 503 with a short Retry-After is one of the answers Zendesk retries; Jira retries 5xx too.
        log.warning("cannot queue %s delivery %s: %s", event.source, event.delivery_id, exc)
        return Answer(
            503, {"status": "unavailable", "error": str(exc)}, {"Retry-After": str(exc.retry_after)}
        )
    if outcome is AcceptOutcome.DUPLICATE:
        log.info("duplicate %s delivery %s ignored", event.source, event.delivery_id)
        return reply(200, status="duplicate", delivery_id=event.delivery_id)
    return reply(202, status="accepted", delivery_id=event.delivery_id, kind=event.kind.value)


def ignored(source: str, event_type: str, reason: str) -> Answer:
    # 2xx, not 4xx: the sender did nothing wrong and must not retry (Zulip's habit).
    log.info("%s event %r ignored: %s", source, event_type, reason)
    return reply(200, status="ignored", event_type=event_type, reason=reason)


class WebhookEndpoint:
    """One webhook URL as a WSGI application: POST only, a handler's ``Answer`` sent as JSON.

    ``config`` is read on every request (the Flask app's config, so a test or an operator's reload
    sees a changed secret).
    """

    def __init__(
        self,
        name: str,
        handler: Callable[[WebhookRequest, WebhookEndpoint], Answer],
        config: Mapping[str, Any],
        intake: Intake,
    ) -> None:
        self.name = name
        self.handler = handler
        self.config = config
        self.intake = intake
        self._reported: set[str] = set()

    def secret(self, config_key: str, request: Request) -> str | None:
        """The signing secret from the config, or None; a missing one is logged once per endpoint.

        Without a secret nothing can be verified, so the caller refuses everything (never accept
        unsigned).
        """
        value = self.config.get(config_key)
        if value:
            return str(value)
        if config_key not in self._reported:
            self._reported.add(config_key)
            log.error(
                "configuration error: %s is not set; refusing every request to %s", config_key, request.path
            )
        return None

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            answer = Answer(405, {"error": "POST only"}, {"Allow": "POST"})
        else:
            answer = self._answer(WebhookRequest(environ))
            environ[OUTCOME_KEY] = answer.outcome
        body = orjson.dumps(answer.fields)
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        headers.extend(answer.headers.items())
        start_response(f"{answer.status} {HTTP_STATUS_CODES.get(answer.status, 'Unknown')}", headers)
        return [body]

    def _answer(self, request: WebhookRequest) -> Answer:
        try:
            return self.handler(request, self)
        except RequestEntityTooLarge:
            return reply(413, error=f"body larger than {MAX_BODY_BYTES} bytes")
        except Exception:
            # What Flask did for a view that raised: log it with the traceback and answer 500, which
            # both senders retry.
            log.exception("%s webhook failed", self.name)
            return reply(500, error="internal error")


class WebhookRoutes:
    """WSGI middleware: a request for one of the webhook paths goes to its endpoint, any other to ``app``.

    Unlike Werkzeug's DispatcherMiddleware it leaves SCRIPT_NAME and PATH_INFO as they came, so the
    access log and the error messages show the path that was requested.
    """

    def __init__(self, app: WSGIApplication, endpoints: Mapping[str, WSGIApplication]) -> None:
        self.app = app
        self.endpoints = dict(endpoints)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return self.endpoints.get(environ.get("PATH_INFO", ""), self.app)(environ, start_response)
