"""The sandbox Zendesk's cursor-based incremental ticket export, in the documented shape.

``GET /api/v2/incremental/tickets/cursor.json?start_time=<unix>`` (or ``?cursor=<after_cursor>``), with
``per_page`` up to 1000 (default 1000). Tickets come in the order of their last change (``updated_at``,
then id), each once, at its current state. The answer::

    {"tickets": [...], "after_cursor": "...", "after_url": "...?cursor=...",
     "before_cursor": null, "before_url": null, "end_of_stream": true|false}

``after_cursor`` is given even at the end of the stream: a later request with it returns what changed
since. A ``start_time`` less than a minute old is refused with 400, as Zendesk does
(https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/).
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, jsonify, request

from connector.sandbox.common import basic_credentials
from connector.sandbox.zendesk_state import ZendeskState

MAX_PER_PAGE = 1000
MIN_AGE = timedelta(minutes=1)


def _error(status: int, error: str, description: str) -> tuple[Response, int]:
    return jsonify({"error": error, "description": description}), status


def _stamp(value: Any) -> float:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _encode(position: tuple[float, int]) -> str:
    return base64.urlsafe_b64encode(f"{position[0]!r}|{position[1]}".encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[float, int] | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, tid = raw.split("|")
        return float(stamp), int(tid)
    except (ValueError, UnicodeDecodeError):
        return None


def blueprint(state: ZendeskState) -> Blueprint:
    bp = Blueprint("zendesk_incremental", __name__, url_prefix="/api/v2/incremental")

    @bp.before_request
    def _authenticate() -> tuple[Response, int] | None:
        creds = basic_credentials()
        if not creds or state.authenticate(*creds) is None:
            return _error(401, "Couldn't authenticate you", "Sandbox answered 401")
        return None

    def export() -> Response | tuple[Response, int]:
        try:
            per_page = int(request.args.get("per_page", str(MAX_PER_PAGE)))
        except ValueError:
            return _error(400, "InvalidValue", "per_page must be an integer")
        if not 1 <= per_page <= MAX_PER_PAGE:
            return _error(400, "InvalidValue", f"per_page must be between 1 and {MAX_PER_PAGE}")
        cursor, start = request.args.get("cursor"), request.args.get("start_time")
        if (cursor is None) == (start is None):
            return _error(400, "InvalidValue", "give either start_time or cursor")
        if cursor is not None:
            after = _decode(cursor)
            if after is None:
                return _error(400, "InvalidValue", "invalid cursor")
        else:
            try:
                start_time = int(start or "")
            except ValueError:
                return _error(400, "InvalidValue", "start_time must be a Unix epoch time")
            if datetime.fromtimestamp(start_time, UTC) > datetime.now(UTC) - MIN_AGE:
                too_recent = "Too recent start_time. Use a start_time older than 1 minute"
                return _error(400, "InvalidValue", too_recent)
            after = (float(start_time), -1)
        changed = sorted(
            ((_stamp(t.get("updated_at")), int(t["id"])), t)
            for t in state.all_tickets()
            if (_stamp(t.get("updated_at")), int(t["id"])) > after
        )
        page = changed[:per_page]
        end = page[-1][0] if page else after
        next_cursor = _encode(end)
        base = request.base_url
        for _, ticket in page:
            ticket.pop("slas", None)
            ticket["url"] = f"{request.host_url.rstrip('/')}/api/v2/tickets/{ticket['id']}.json"
        return jsonify(
            {
                "tickets": [t for _, t in page],
                "after_cursor": next_cursor,
                "after_url": f"{base}?{urlencode({'cursor': next_cursor, 'per_page': per_page})}",
                "before_cursor": None,
                "before_url": None,
                "end_of_stream": len(changed) <= per_page,
            }
        )

    bp.add_url_rule("/tickets/cursor.json", "tickets_cursor", export, methods=["GET"])
    bp.add_url_rule("/tickets/cursor", "tickets_cursor_bare", export, methods=["GET"])
    return bp
