"""A local Zendesk Support API: the endpoints the Zendesk connector (through zenpy) calls, in the shapes
Zendesk documents, backed by ``ZendeskState``.

API (Basic auth ``{email}/token:{token}``, 401 otherwise; every path also without ``.json``):
``GET users/me``, ``GET users/{id}``, ``GET users/show_many?ids=``, ``GET organizations/{id}``,
``GET organizations/show_many?ids=``, ``GET groups``, ``GET tickets/{id}[?include=slas]``,
``PUT tickets/{id}``, ``GET tickets/show_many?ids=``, ``GET tickets/{id}/comments`` and
``GET tickets/{id}/audits`` (cursor or offset paging), ``GET|PUT|POST|DELETE tickets/{id}/tags``,
``GET search`` (offset paging, 1,000-result cap answered with 422), ``GET search/export`` (cursor
paging, ``filter[type]`` required).

Inspection (no auth): ``/_sandbox/state``, ``/_sandbox/reset``, ``/_sandbox/requests``,
``/_sandbox/faults``, ``POST /_sandbox/tickets`` (add a ticket), ``GET /_sandbox/tickets/{id}/notes``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, g, jsonify, request

from connector.sandbox import zendesk_incremental
from connector.sandbox.common import basic_credentials, instrument
from connector.sandbox.paging import PagingError, cursor_page, offset_page, wants_cursor
from connector.sandbox.zendesk_search import QueryError, compile_query
from connector.sandbox.zendesk_state import RecordInvalid, ZendeskState

SEARCH_CAP = 1000
_ERRORS = {
    401: "Couldn't authenticate you",
    429: "TooManyRequests",
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
}


def error_body(status: int) -> dict[str, Any]:
    return {"error": _ERRORS.get(status, "Error"), "description": f"Sandbox answered {status}"}


def _error(status: int, error: Any, description: str | None = None, **extra: Any) -> tuple[Response, int]:
    body: dict[str, Any] = {"error": error}
    if description:
        body["description"] = description
    body.update(extra)
    return jsonify(body), status


def _not_found() -> tuple[Response, int]:
    return _error(404, "RecordNotFound", "Not found")


def _ids() -> list[int]:
    try:
        return [int(x) for x in request.args.get("ids", "").split(",") if x.strip()]
    except ValueError:
        return []


def create_app(state: ZendeskState | None = None) -> Flask:
    state = state or ZendeskState()
    app = Flask(__name__)
    app.config["SANDBOX_STATE"] = state
    instrument(app, state, error_body)
    app.register_blueprint(_api(state))
    app.register_blueprint(_extras(state))
    app.register_blueprint(zendesk_incremental.blueprint(state))  # GET incremental/tickets/cursor
    return app


def _route(bp: Blueprint, rule: str, methods: list[str]) -> Callable:
    """Register ``rule`` with and without the ``.json`` suffix, as Zendesk answers both."""

    def decorator(view: Callable) -> Callable:
        bp.add_url_rule(rule + ".json", view_func=view, methods=methods)
        bp.add_url_rule(rule, endpoint=view.__name__ + "_bare", view_func=view, methods=methods)
        return view

    return decorator


def _api(state: ZendeskState) -> Blueprint:
    bp = Blueprint("zendesk_api", __name__, url_prefix="/api/v2")

    def base() -> str:
        return request.host_url.rstrip("/")

    def with_url(kind: str, record: dict[str, Any] | None) -> dict[str, Any] | None:
        if record is not None:
            record["url"] = f"{base()}/api/v2/{kind}/{record['id']}.json"
        return record

    def ticket_view(ticket: dict[str, Any], include_slas: bool) -> dict[str, Any]:
        if not include_slas:
            ticket.pop("slas", None)
        return with_url("tickets", ticket) or ticket

    @bp.before_request
    def _authenticate() -> tuple[Response, int] | None:
        creds = basic_credentials()
        user = state.authenticate(*creds) if creds else None
        if user is None:
            return _error(401, "Couldn't authenticate you")
        g.user = user
        return None

    @bp.after_request
    def _remember_writes(response: Response) -> Response:
        if request.method in ("PUT", "POST", "DELETE") and response.status_code < 400:
            state.record_write(request.method, request.path, request.get_json(silent=True))
        return response

    @bp.errorhandler(PagingError)
    def _bad_paging(exc: PagingError) -> tuple[Response, int]:
        return _error(400, {"title": "Invalid attribute", "message": str(exc)})

    @_route(bp, "/users/me", ["GET"])
    def me() -> Response:
        return jsonify({"user": with_url("users", dict(g.user))})

    @_route(bp, "/users/<int:uid>", ["GET"])
    def user(uid: int):
        found = with_url("users", state.user(uid))
        return jsonify({"user": found}) if found else _not_found()

    @_route(bp, "/users/show_many", ["GET"])
    def users_many() -> Response:
        users = [with_url("users", u) for u in (state.user(i) for i in _ids()) if u]
        return jsonify({"users": users, "next_page": None, "previous_page": None, "count": len(users)})

    @_route(bp, "/organizations/<int:oid>", ["GET"])
    def organization(oid: int):
        found = with_url("organizations", state.organization(oid))
        return jsonify({"organization": found}) if found else _not_found()

    @_route(bp, "/organizations/show_many", ["GET"])
    def organizations_many() -> Response:
        orgs = [with_url("organizations", o) for o in (state.organization(i) for i in _ids()) if o]
        return jsonify({"organizations": orgs, "next_page": None, "previous_page": None, "count": len(orgs)})

    @_route(bp, "/groups", ["GET"])
    def groups() -> Response:
        found = [with_url("groups", dict(x)) for x in state.dump()["groups"]]
        return jsonify({"groups": found, "next_page": None, "previous_page": None, "count": len(found)})

    @_route(bp, "/tickets/<int:tid>", ["GET"])
    def ticket(tid: int):
        found = state.ticket(tid)
        if found is None:
            return _not_found()
        include = request.args.get("include", "").split(",")
        return jsonify({"ticket": ticket_view(found, "slas" in include)})

    @_route(bp, "/tickets/<int:tid>", ["PUT"])
    def update_ticket(tid: int):
        if state.ticket(tid) is None:
            return _not_found()
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("ticket"), dict):
            return _error(400, "InvalidJSON", 'expected {"ticket": {...}}')
        try:
            updated, audit = state.update_ticket(tid, body["ticket"], g.user["id"])
        except RecordInvalid as exc:
            return _error(422, "RecordInvalid", "Record validation errors", details=exc.details)
        return jsonify({"ticket": ticket_view(updated, False), "audit": audit})

    @_route(bp, "/tickets/show_many", ["GET"])
    def tickets_many() -> Response:
        found = [ticket_view(t, False) for t in (state.ticket(i) for i in _ids()) if t]
        return jsonify({"tickets": found, "next_page": None, "previous_page": None, "count": len(found)})

    @_route(bp, "/tickets/<int:tid>/comments", ["GET"])
    def comments(tid: int):
        if state.ticket(tid) is None:
            return _not_found()
        items = state.ticket_comments(tid)
        if request.args.get("sort_order") == "desc":
            items.reverse()
        return jsonify(cursor_page(items, "comments") if wants_cursor() else offset_page(items, "comments"))

    @_route(bp, "/tickets/<int:tid>/audits", ["GET"])
    def audits(tid: int):
        if state.ticket(tid) is None:
            return _not_found()
        items = state.ticket_audits(tid)
        return jsonify(cursor_page(items, "audits") if wants_cursor() else offset_page(items, "audits"))

    @_route(bp, "/tickets/<int:tid>/tags", ["GET", "PUT", "POST", "DELETE"])
    def tags(tid: int):
        found = state.ticket(tid)
        if found is None:
            return _not_found()
        if request.method == "GET":
            return jsonify({"tags": found["tags"]})
        body = request.get_json(silent=True) or {}
        wanted = body.get("tags")
        if not isinstance(wanted, list) or not all(isinstance(t, str) for t in wanted):
            return _error(400, "InvalidJSON", 'expected {"tags": [...]}')
        return jsonify({"tags": state.modify_tags(tid, request.method, wanted)})

    def search_results() -> list[dict[str, Any]]:
        wanted_type, matches = compile_query(request.args.get("query", ""))
        filter_type = request.args.get("filter[type]") or wanted_type
        if filter_type not in (None, "ticket"):
            return []  # the sandbox keeps no searchable users or organizations
        found = [ticket_view(t, False) for t in state.all_tickets() if matches(t)]
        for item in found:
            item["result_type"] = "ticket"
        return found

    @_route(bp, "/search", ["GET"])
    def search():
        try:
            page = offset_page(search_results(), "results", cap=SEARCH_CAP)
        except QueryError as exc:
            return _error(400, "InvalidQuery", str(exc))
        except OverflowError:
            return _error(422, "invalid", f"Search results are limited to {SEARCH_CAP}; use the export API")
        page["facets"] = None
        return jsonify(page)

    @_route(bp, "/search/export", ["GET"])
    def search_export():
        if not request.args.get("filter[type]"):
            return _error(400, {"title": "Invalid attribute", "message": "filter[type] is required"})
        try:
            page = cursor_page(search_results(), "results", max_size=1000)
        except QueryError as exc:
            return _error(400, "InvalidQuery", str(exc))
        page["facets"] = None
        return jsonify(page)

    return bp


def _extras(state: ZendeskState) -> Blueprint:
    bp = Blueprint("zendesk_sandbox_extras", __name__, url_prefix="/_sandbox")

    @bp.post("/tickets")
    def add_ticket() -> tuple[Response, int]:
        return jsonify({"ticket": state.add_ticket(**(request.get_json(force=True) or {}))}), 201

    @bp.get("/tickets/<int:tid>/notes")
    def notes(tid: int) -> Response:
        return jsonify({"notes": state.internal_notes(tid)})

    return bp
