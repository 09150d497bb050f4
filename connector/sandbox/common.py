"""What both sandbox servers share: the demo credentials, Basic auth, the request log, time formats and
the ``/_sandbox`` inspection endpoints.

The credentials below are the sandbox's own, published on purpose so the demo and the tests can use
them; they open nothing but these local servers.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from flask import Blueprint, Flask, Response, jsonify, request

from connector.sandbox.faults import Faults, fault_from_json, install

ZENDESK_EMAIL = "escalate-bot@sandbox.escalate.test"
ZENDESK_TOKEN = "sandbox-zendesk-token"
JIRA_EMAIL = "escalate-bot@sandbox.escalate.test"
JIRA_TOKEN = "sandbox-jira-token"


def iso(moment: datetime) -> str:
    """Zendesk's timestamp format: ``2026-11-20T15:00:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def basic_credentials() -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user, sep, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def bearer_token() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


class RequestLog:
    """Every API request a sandbox served (method, path, query, JSON body, status), for assertions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[dict[str, Any]] = []

    def record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def matching(self, method: str, path_prefix: str = "/") -> list[dict[str, Any]]:
        return [
            e for e in self.entries() if e["method"] == method.upper() and e["path"].startswith(path_prefix)
        ]


class SandboxState(Protocol):
    faults: Faults
    requests: RequestLog

    def reset(self) -> None: ...

    def dump(self) -> dict[str, Any]: ...


def instrument(app: Flask, state: SandboxState, error_body: Callable[[int], dict[str, Any]]) -> None:
    """Faults before, the request log after, and the ``/_sandbox`` blueprint."""
    install(app, state.faults, error_body)

    @app.after_request
    def _log(response: Response) -> Response:
        if not request.path.startswith("/_sandbox"):
            state.requests.record(
                {
                    "method": request.method,
                    "path": request.path,
                    "query": request.query_string.decode("utf-8", "replace"),
                    "json": request.get_json(silent=True),
                    "status": response.status_code,
                    "at": iso(utcnow()),
                }
            )
        return response

    app.register_blueprint(inspection_blueprint(state))


def inspection_blueprint(state: SandboxState) -> Blueprint:
    bp = Blueprint("sandbox_inspection", __name__, url_prefix="/_sandbox")

    @bp.get("/state")
    def dump() -> Response:
        return jsonify(state.dump())

    @bp.post("/reset")
    def reset() -> Response:
        state.reset()
        return jsonify({"reset": True})

    @bp.get("/requests")
    def requests_log() -> Response:
        return jsonify({"requests": state.requests.entries()})

    @bp.delete("/requests")
    def clear_requests() -> Response:
        state.requests.clear()
        return jsonify({"cleared": True})

    @bp.get("/faults")
    def list_faults() -> Response:
        return jsonify({"faults": state.faults.as_list()})

    @bp.post("/faults")
    def add_fault() -> tuple[Response, int]:
        fault = fault_from_json(state.faults, request.get_json(force=True) or {})
        return jsonify({"added": fault.__dict__}), 201

    @bp.delete("/faults")
    def clear_faults() -> Response:
        state.faults.clear()
        return jsonify({"cleared": True})

    return bp
