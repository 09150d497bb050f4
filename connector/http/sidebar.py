"""The Zendesk sidebar: the page agents see beside a ticket, and the small JSON API behind its buttons.

``POST /sidebar`` is the iframe's first load, signed by Zendesk (see ``sidebar_auth``); it answers the
page with a session token for the calls below. Every other route under ``/sidebar/api`` wants that
token in ``Authorization: Bearer`` and answers 401 without it, before looking at anything else:

- ``POST /sidebar/api/session`` {ticket_id}: bind the session to the ticket the ZAF SDK reports
- ``GET  /sidebar/api/tickets/<id>``: the view as JSON (decision and escalations)
- ``GET  /sidebar/api/tickets/<id>/panel``: the same, as the page's HTML fragment
- ``POST /sidebar/api/tickets/<id>/issues`` {destination}: create the linked issue (idempotent)
- ``POST /sidebar/api/tickets/<id>/dismissals`` {destination, reason, note}: decline the suggestion

Verify, extract, delegate: the work is the backend's (``sidebar_backend.SidebarBackend``), found on
the service object, so this module never imports ``worker``.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, render_template, request, url_for

from connector.http.sidebar_auth import (
    TICKET_ID,
    SidebarAuthConfig,
    Unauthorized,
    bearer,
    issue_session,
    verify_session,
    verify_zendesk_token,
)
from connector.http.sidebar_backend import BackendMissing, backend
from connector.http.sidebar_view import DESTINATIONS, DISMISS_REASONS, build_panel
from connector.http.webhook_common import EXTENSION_KEY

log = logging.getLogger(__name__)

bp = Blueprint(
    "sidebar",
    __name__,
    url_prefix="/sidebar",
    template_folder="../templates",
    static_folder="../static/sidebar",
    static_url_path="/static",
)

CONFIG_KEY = "escalate.sidebar_auth"
TOKEN_HEADER = "X-Escalate-Token"
MAX_NOTE_CHARS = 500
_REASON_CODES = frozenset(code for code, _ in DISMISS_REASONS)


def init_app(app: Flask, config: SidebarAuthConfig | None = None) -> None:
    """Register the blueprint; without ``config`` it is read from the environment on first use."""
    if config is not None:
        app.extensions[CONFIG_KEY] = config
    app.register_blueprint(bp)


def auth_config() -> SidebarAuthConfig:
    config: SidebarAuthConfig | None = current_app.extensions.get(CONFIG_KEY)
    if config is None:
        environ = dict(os.environ)
        settings = getattr(current_app.extensions.get(EXTENSION_KEY), "settings", None)
        if not environ.get("ZENDESK_URL") and getattr(settings, "zendesk_url", None):
            environ["ZENDESK_URL"] = str(settings.zendesk_url)
        config = SidebarAuthConfig.from_env(environ)
        current_app.extensions[CONFIG_KEY] = config
        if config.problems():
            log.error("configuration error: sidebar refuses every request; missing %s", config.problems())
    return config


# -- the page ------------------------------------------------------------------------------------


@bp.route("", methods=["GET", "POST"], strict_slashes=False)
def page() -> Response:
    config = auth_config()
    try:
        # GET carries no token: only Zendesk's signed POST opens the page.
        agent = verify_zendesk_token(
            request.form.get("token", "") if request.method == "POST" else "", config
        )
    except Unauthorized as exc:
        log.info("sidebar first load refused: %s", exc)
        return _html(render_template("sidebar/unauthorized.html"), 401)
    # Outside Zendesk (the demo, the tests) the ticket can come with the load; inside, the page asks
    # the ZAF SDK for it and binds the session then.
    raw_ticket = request.values.get("ticket_id", "").strip()
    ticket_id = raw_ticket if TICKET_ID.match(raw_ticket) else None
    token, _ = issue_session(agent, config, ticket_id=ticket_id)
    context: dict[str, Any] = {"panel": None, "error": None, "not_found": False}
    if ticket_id is not None:
        context.update(_panel_context(ticket_id))
    html = render_template(
        "sidebar/page.html",
        token=token,
        ticket_id=ticket_id or "",
        api_base=url_for("sidebar.page").rstrip("/") + "/api",
        **context,
    )
    return _html(html, 200)


def _panel_context(ticket_id: str) -> dict[str, Any]:
    try:
        view = backend().view(ticket_id)
    except BackendMissing as exc:
        log.error("sidebar: %s", exc)
        return {"panel": None, "error": "The sidebar is not connected to the service."}
    except Exception:
        log.exception("sidebar: view of ticket %s failed", ticket_id)
        return {"panel": None, "error": "The assessment could not be loaded. Try again in a moment."}
    if view is None:
        return {"panel": None, "not_found": True}
    return {"panel": build_panel(ticket_id, view)}


# -- authentication for the API -------------------------------------------------------------------


def _unauthorized(reason: str) -> Response:
    log.info("sidebar API request refused: %s", reason)
    response = jsonify(error="unauthorized")
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="escalate-sidebar"'
    return response


def authenticated(*, bound: bool) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """The session from the Bearer token, checked before anything else; ``bound`` routes also
    need the token's ticket to be the one in the URL. Each answer carries a renewed token."""

    def decorate(view: Callable[..., Response]) -> Callable[..., Response]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            config = auth_config()
            try:
                session = verify_session(bearer(request.headers.get("Authorization")), config)
            except Unauthorized as exc:
                return _unauthorized(str(exc))
            if bound and session.ticket_id != kwargs.get("ticket_id"):
                return _unauthorized(f"token for ticket {session.ticket_id}, not {kwargs.get('ticket_id')}")
            g.sidebar_session = session
            response = view(*args, **kwargs)
            try:
                renewed, _ = issue_session(
                    session.agent,
                    config,
                    ticket_id=session.ticket_id,
                    authenticated_at=session.authenticated_at,
                )
                response.headers[TOKEN_HEADER] = renewed
            except Unauthorized:
                pass  # past the session's maximum age: the current token runs out on its own
            return response

        return wrapper

    return decorate


# -- the API --------------------------------------------------------------------------------------


@bp.post("/api/session")
@authenticated(bound=False)
def bind_session() -> Response:
    session = g.sidebar_session
    ticket_id = str(_json_body().get("ticket_id", "")).strip()
    if not TICKET_ID.match(ticket_id):
        return _error(400, "ticket_id must be a Zendesk ticket id")
    if session.ticket_id is not None and session.ticket_id != ticket_id:
        # A ticket's token stays that ticket's: only the first load's unbound token may choose.
        return _error(403, "this session belongs to another ticket")
    token, bound = issue_session(
        session.agent, auth_config(), ticket_id=ticket_id, authenticated_at=session.authenticated_at
    )
    return jsonify(token=token, ticket_id=ticket_id, expires_at=bound.expires_at)


@bp.get("/api/tickets/<ticket_id>")
@authenticated(bound=True)
def ticket_view(ticket_id: str) -> Response:
    view = _call(lambda: backend().view(ticket_id))
    if isinstance(view, Response):
        return view
    if view is None:
        return _error(404, f"no ticket {ticket_id}")
    return jsonify({"ticket_id": ticket_id, **view})


@bp.get("/api/tickets/<ticket_id>/panel")
@authenticated(bound=True)
def ticket_panel(ticket_id: str) -> Response:
    view = _call(lambda: backend().view(ticket_id))
    if isinstance(view, Response):
        return view
    if view is None:
        return _html(render_template("sidebar/_missing.html", ticket_id=ticket_id), 404)
    return _html(render_template("sidebar/_panel.html", panel=build_panel(ticket_id, view)), 200)


@bp.post("/api/tickets/<ticket_id>/issues")
@authenticated(bound=True)
def create_issue(ticket_id: str) -> Response:
    destination = str(_json_body().get("destination", ""))
    if destination not in DESTINATIONS:
        return _error(400, f"destination must be one of {', '.join(DESTINATIONS)}")
    actor = g.sidebar_session.agent.actor
    # Two clicks racing in this process wait for each other; the backend's idempotency covers the rest.
    with _single_flight(("issue", ticket_id, destination)):
        escalation = _call(lambda: backend().create_issue(ticket_id, destination, actor))
    if isinstance(escalation, Response):
        return escalation
    log.info("sidebar: %s asked for a %s issue on ticket %s", actor, destination, ticket_id)
    return jsonify(escalation=escalation)


@bp.post("/api/tickets/<ticket_id>/dismissals")
@authenticated(bound=True)
def dismiss(ticket_id: str) -> Response:
    body = _json_body()
    destination = str(body.get("destination", ""))
    code = str(body.get("reason", ""))
    note = " ".join(str(body.get("note") or "").split())[:MAX_NOTE_CHARS]
    if destination not in DESTINATIONS:
        return _error(400, f"destination must be one of {', '.join(DESTINATIONS)}")
    if code not in _REASON_CODES:
        return _error(400, "choose a reason")
    if code == "other" and not note:
        return _error(400, "say why in the note")
    # The code is what the rules' owners count; the note is the agent's own words.
    reason = f"{code}: {note}" if note else code
    actor = g.sidebar_session.agent.actor
    with _single_flight(("dismiss", ticket_id, destination)):
        recorded = _call(lambda: backend().dismiss(ticket_id, destination, reason, actor))
    if isinstance(recorded, Response):
        return recorded
    return jsonify(dismissal=recorded)


@bp.route("/api/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
@authenticated(bound=False)
def unknown(rest: str) -> Response:
    """Anything else under the API: 401 without a token (as everywhere), 404 with one."""
    return _error(404, "no such endpoint")


# -- helpers --------------------------------------------------------------------------------------


@bp.after_request
def security_headers(response: Response) -> Response:
    config = auth_config()
    # No inline script or style anywhere: the page's own files only; Garden's CSS embeds data: SVGs.
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; "
        f"frame-ancestors {' '.join(config.frame_ancestors)}"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if request.endpoint != "sidebar.static":
        # The page holds a session token; nothing of it belongs in a cache.
        response.headers["Cache-Control"] = "no-store"
    return response


def _html(body: str, status: int) -> Response:
    return Response(body, status=status, mimetype="text/html")


def _error(status: int, message: str) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    return response


def _json_body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else {}


def _call(work: Callable[[], Any]) -> Any:
    """The backend's answer, or the error response the page shows (never a traceback)."""
    try:
        return work()
    except BackendMissing as exc:
        log.error("sidebar: %s", exc)
        return _error(503, "the sidebar is not connected to the service")
    except Exception:
        log.exception("sidebar: backend call failed")
        return _error(502, "the service could not complete this; try again in a moment")


class _KeyedLocks:
    """One lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, ...], tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: tuple[str, ...]) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users <= 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


_locks = _KeyedLocks()


def _single_flight(key: tuple[str, ...]) -> Any:
    return _locks.hold(key)
