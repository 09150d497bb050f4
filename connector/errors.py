"""The typed errors every outbound call ends in, whichever client made it.

Callers decide what to do from the type alone: ``RateLimited`` and ``TransientError`` are worth a later
retry (the worker reschedules, honouring ``retry_after``), ``AuthError``, ``NotFoundError`` and
``PermanentError`` are not. The clients themselves never retry or sleep (DESIGN.md: zenpy and the jira
client both sleep in-process on 429 unless told not to), so a worker thread is never parked on a timer.

Messages are built from the method, the URL path and the service's own error text; never from headers,
query strings or request bodies, so no credential can leak into a log line or a job's failure record.
"""

from __future__ import annotations

import email.utils
import json
import math
from datetime import UTC, datetime
from typing import Any

# Retry-After missing on a 429 (Jira Cloud sometimes omits it): wait this long rather than hammer.
DEFAULT_RETRY_AFTER = 60.0
_MAX_DETAIL = 300


class ConnectorError(Exception):
    """Base of every error a connector raises."""

    retryable = False

    def __init__(
        self,
        service: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service
        self.status = status
        self.message = message
        self.retry_after = retry_after

    def __reduce__(self):  # keeps the keyword-only arguments when RQ pickles a failed job
        return (_rebuild, (type(self), self.service, self.message, self.status, self.retry_after))


def _rebuild(cls, service, message, status, retry_after):
    if cls is RateLimited:
        return cls(service, message, retry_after=retry_after or DEFAULT_RETRY_AFTER, status=status)
    return cls(service, message, status=status, retry_after=retry_after)


class ConfigError(ValueError):
    """A connector's configuration cannot work (a missing or malformed setting); the message names the
    setting, never its value. Retrying cannot help until an operator fixes it."""


class AuthError(ConnectorError):
    """401/403: wrong or revoked credentials, or the account lacks a permission."""


class NotFoundError(ConnectorError):
    """404: the ticket, issue or object does not exist (or is invisible to this account)."""


class RateLimited(ConnectorError):
    """429: try again no sooner than ``retry_after`` seconds from now."""

    retryable = True

    def __init__(self, service: str, message: str, *, retry_after: float, status: int | None = 429) -> None:
        super().__init__(service, message, status=status, retry_after=retry_after)
        self.retry_after: float = retry_after


class TransientError(ConnectorError):
    """5xx, 409 conflicts, timeouts, refused or dropped connections: the same call may succeed later."""

    retryable = True


class PermanentError(ConnectorError):
    """Any other 4xx, a validation failure or an unreadable answer: retrying the same call won't help."""


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def error_detail(body: Any) -> str:
    """The service's own words about an error, from Zendesk's or Jira's JSON shapes, shortened."""
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return " ".join(body.split())[:_MAX_DETAIL]
    parts: list[str] = []
    if isinstance(body, dict):
        # Zendesk: {"error": "RecordNotFound", "description": "Not found", "details": {...}}
        err = body.get("error")
        if isinstance(err, dict):  # Zendesk's newer {"error": {"title", "message"}}
            parts += [str(err.get("title") or ""), str(err.get("message") or "")]
        elif err:
            parts.append(str(err))
        if body.get("description"):
            parts.append(str(body["description"]))
        if isinstance(body.get("details"), dict):
            parts.append(json.dumps(body["details"], sort_keys=True))
        # Jira: {"errorMessages": [...], "errors": {"field": "message"}}
        messages = body.get("errorMessages")
        if isinstance(messages, list):
            parts += [str(m) for m in messages]
        errors = body.get("errors")
        if isinstance(errors, dict):
            parts += [f"{k}: {v}" for k, v in sorted(errors.items())]
        if body.get("message"):
            parts.append(str(body["message"]))
    return "; ".join(p for p in parts if p)[:_MAX_DETAIL]


def from_status(
    service: str,
    status: int,
    *,
    method: str,
    path: str,
    retry_after_header: str | None = None,
    body: Any = None,
) -> ConnectorError:
    """The typed error for an HTTP error status."""
    detail = error_detail(body) if body is not None else ""
    message = f"{method} {path} answered {status}" + (f": {detail}" if detail else "")
    retry_after = parse_retry_after(retry_after_header)
    if status == 429:
        return RateLimited(
            service, message, retry_after=DEFAULT_RETRY_AFTER if retry_after is None else retry_after
        )
    if status in (401, 403):
        return AuthError(service, message, status=status)
    if status in (404, 410):
        return NotFoundError(service, message, status=status)
    if status >= 500 or status in (408, 409):
        # 409 is Zendesk's answer to concurrent updates of one ticket; a later try normally succeeds.
        return TransientError(service, message, status=status, retry_after=retry_after)
    return PermanentError(service, message, status=status)
