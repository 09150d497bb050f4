"""Jira Service Management on the sandbox Jira: the ``/rest/servicedeskapi`` endpoints the JSM connector
calls, in their documented shapes (Atlassian's "Jira Service Management Cloud REST API"), backed by
``JsmState``. ``register_jsm`` mounts them on the Jira sandbox app, so one site serves both, as it does
for a real JSM customer. The desk (project ``DESK`` and its requests) appears on first JSM use.

Shapes: paged lists are ``{_expands, size, start, limit, isLastPage, values, _links}`` (``start``/``limit``,
at most 100 a page); times are DateDTOs ``{iso8601, jira, friendly, epochMillis}``; durations
``{millis, friendly}``; users ``{accountId, emailAddress, displayName, active, timeZone, _links}``;
errors ``{errorMessage, i18nErrorMessage}``.

API (Basic ``email:token`` or Bearer as the Jira sandbox; customers: Basic ``their email`` +
``CUSTOMER_TOKEN``, and they see only their requests and public comments): ``GET info`` (open),
``GET servicedesk``, ``GET servicedesk/{id}``, ``GET servicedesk/{id}/requesttype``,
``GET servicedesk/{id}/organization[?accountId]``, ``GET organization[?accountId]``,
``GET organization/{id}``, ``GET organization/{id}/user``, ``GET organization/{id}/property``,
``GET|PUT|DELETE organization/{id}/property/{key}``, ``GET request/{key}[?expand=requestType,serviceDesk,
participant,sla]``, ``GET|POST request/{key}/comment`` (``public``/``internal`` filters; ``public: false``
makes an internal comment), ``GET request/{key}/comment/{id}``, ``GET request/{key}/sla[/{id}]`` (agents
only), ``GET request/{key}/participant``.

Jira platform calls the JSM side needs: ``GET /rest/api/{2|3}/issue/{key}/changelog`` (Cloud only, as in
Jira), and ``PUT /rest/api/{2|3}/issue/{key}`` when it sets custom fields only (the L2 hand-over's queue or
group field). The Jira sandbox's own issue edit (``jira_edit``) knows priority, labels and summary and
refuses other fields; a custom-field-only edit is answered here, before routing, and the values are kept
(a request's in its ``requestFieldValues``).

Inspection (no auth): ``GET /_sandbox/jsm/state``, ``POST /_sandbox/jsm/reset``,
``POST /_sandbox/jsm/clock`` (``{"now": ISO time | null}``: the moment SLA cycles are judged at),
``POST /_sandbox/jsm/requests/{key}/status`` (``{"status": "Resolved"}``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, g, jsonify, request

from connector.sandbox.common import basic_credentials, bearer_token
from connector.sandbox.jira_state import JiraState, Missing, jira_time
from connector.sandbox.jsm_state import (
    BOT,
    CUSTOMER_TOKEN,
    ORGANIZATIONS_FIELD,
    PRODUCT_AREA_FIELD,
    JsmError,
    JsmState,
    jsm_state_for,
)

MAX_LIMIT = 100
_EXPANDS = ["participant", "status", "sla", "requestType", "serviceDesk", "attachment", "action", "comment"]
_FIELD_LABELS = {ORGANIZATIONS_FIELD: "Organizations", PRODUCT_AREA_FIELD: "Product area"}
_ISSUE_EDIT = re.compile(r"^/rest/api/(?:2|3|latest)/issue/([^/]+)$")


class Refused(Exception):
    def __init__(self, status: int, message: str, key: str = "sd.error") -> None:
        super().__init__(message)
        self.status, self.message, self.key = status, message, key


def register_jsm(app: Flask, jira: JiraState) -> JsmState:
    """Serve JSM beside the Jira API of ``app``; returns the desk's state."""
    state = jsm_state_for(jira)
    app.config["JSM_STATE"] = state

    @app.before_request
    def _seeded() -> tuple[Response, int] | Response | None:
        if request.path.startswith(("/rest/servicedeskapi/", "/_sandbox/jsm/")):
            state.ensure()  # first use, or first use since a Jira reset dropped the desk
        return _custom_field_edit(state)

    app.register_blueprint(_api(state))
    app.register_blueprint(_jira_extras(state))
    app.register_blueprint(_extras(state))
    return state


def _custom_field_edit(state: JsmState) -> tuple[Response, int] | Response | None:
    """Answer ``PUT /rest/api/{v}/issue/{key}`` that sets custom fields only; None for anything else."""
    match = _ISSUE_EDIT.match(request.path)
    if request.method != "PUT" or match is None:
        return None
    body = request.get_json(silent=True)
    fields = body.get("fields") if isinstance(body, dict) and not body.get("update") else None
    if (
        not isinstance(fields, dict)
        or not fields
        or not all(str(f).startswith("customfield_") for f in fields)
    ):
        return None
    if not state.jira.authenticate(basic_credentials(), bearer_token()):
        refused = "You are not authenticated. Authentication required to perform this operation."
        return jsonify({"errorMessages": [refused], "errors": {}}), 401
    try:
        state.set_custom_fields(match.group(1), fields)
    except Missing:
        messages = ["Issue does not exist or you do not have permission to see it."]
        return jsonify({"errorMessages": messages, "errors": {}}), 404
    return Response(status=204)


# ----- shapes ---------------------------------------------------------------------------------------
def base() -> str:
    return request.host_url.rstrip("/")


def date_dto(moment: datetime | None) -> dict[str, Any] | None:
    if moment is None:
        return None
    moment = moment.astimezone(UTC)
    return {
        "iso8601": moment.strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "jira": jira_time(moment),
        "friendly": moment.strftime("%d/%b/%y %I:%M %p"),
        "epochMillis": int(moment.timestamp() * 1000),
    }


def duration_dto(span: timedelta) -> dict[str, Any]:
    millis = int(span.total_seconds() * 1000)
    minutes = abs(millis) // 60000
    friendly = f"{'-' if millis < 0 else ''}{minutes // 60}h {minutes % 60}m"
    return {"millis": millis, "friendly": friendly}


def user_dto(user: dict[str, Any]) -> dict[str, Any]:
    account = user["accountId"]
    rest = f"{base()}/rest/api/2/user?{urlencode({'accountId': account})}"
    return {
        "accountId": account,
        "emailAddress": user["emailAddress"],
        "displayName": user["displayName"],
        "active": True,
        "timeZone": "UTC",
        "_links": {"jiraRest": rest, "avatarUrls": {}, "self": rest},
    }


def org_dto(org: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": org["id"],
        "name": org["name"],
        "_links": {"self": f"{base()}/rest/servicedeskapi/organization/{org['id']}"},
    }


def service_desk_dto(state: JsmState) -> dict[str, Any]:
    sd = state.service_desk
    return {**sd, "_links": {"self": f"{base()}/rest/servicedeskapi/servicedesk/{sd['id']}"}}


def request_type_dto(state: JsmState, rt: dict[str, Any]) -> dict[str, Any]:
    sd = state.service_desk["id"]
    return {
        "_expands": ["field"],
        "id": rt["id"],
        "_links": {"self": f"{base()}/rest/servicedeskapi/servicedesk/{sd}/requesttype/{rt['id']}"},
        "name": rt["name"],
        "description": rt["description"],
        "helpText": "",
        "issueTypeId": rt["issueTypeId"],
        "serviceDeskId": sd,
        "groupIds": [],
    }


def comment_dto(state: JsmState, record: dict[str, Any], comment: dict[str, Any]) -> dict[str, Any]:
    issue_id = state.issue(record["key"])["id"]
    return {
        "_expands": ["attachment", "renderedBody"],
        "id": comment["id"],
        "body": comment["body"],
        "public": comment["public"],
        "author": user_dto(state.user(comment["author"])),
        "created": date_dto(comment["created"]),
        "_links": {"self": f"{base()}/rest/servicedeskapi/request/{issue_id}/comment/{comment['id']}"},
    }


def sla_dto(state: JsmState, record: dict[str, Any], sla: dict[str, Any]) -> dict[str, Any]:
    now = state.now()
    issue_id = state.issue(record["key"])["id"]
    goal = sla["goal"]
    view: dict[str, Any] = {
        "id": sla["id"],
        "name": sla["name"],
        "_links": {"self": f"{base()}/rest/servicedeskapi/request/{issue_id}/sla/{sla['id']}"},
        "completedCycles": [
            {
                "startTime": date_dto(c["start"]),
                "stopTime": date_dto(c["stop"]),
                "breachTime": date_dto(c["breach_at"]),
                "breached": c["stop"] > c["breach_at"],
                "goalDuration": duration_dto(goal),
                "elapsedTime": duration_dto(c["stop"] - c["start"]),
                "remainingTime": duration_dto(c["breach_at"] - c["stop"]),
            }
            for c in sla["completed"]
        ],
        "slaDisplayFormat": "NEW_SLA_FORMAT",
    }
    ongoing = sla["ongoing"]
    if ongoing:
        view["ongoingCycle"] = {
            "startTime": date_dto(ongoing["start"]),
            "breachTime": date_dto(ongoing["breach_at"]),
            "breached": ongoing["breach_at"] < now,
            "paused": bool(ongoing.get("paused")),
            "withinCalendarHours": False,
            "goalDuration": duration_dto(goal),
            "elapsedTime": duration_dto(now - ongoing["start"]),
            "remainingTime": duration_dto(ongoing["breach_at"] - now),
        }
    return view


def request_dto(state: JsmState, record: dict[str, Any], expand: set[str]) -> dict[str, Any]:
    issue = state.issue(record["key"])
    status, category = state.current_status(record)
    sd = state.service_desk["id"]
    values = [
        {"fieldId": "summary", "label": "Summary", "value": issue["summary"]},
        {"fieldId": "description", "label": "Description", "value": issue["description"] or ""},
    ]
    if record["organization_ids"]:
        orgs = [org_dto(state.organization(o)) for o in record["organization_ids"]]
        values.append({"fieldId": ORGANIZATIONS_FIELD, "label": "Organizations", "value": orgs})
    for fid, value in record["fields"].items():
        values.append({"fieldId": fid, "label": _FIELD_LABELS.get(fid, fid), "value": value})
    view: dict[str, Any] = {
        "_expands": _EXPANDS,
        "issueId": issue["id"],
        "issueKey": issue["key"],
        "requestTypeId": record["request_type_id"],
        "serviceDeskId": sd,
        "createdDate": date_dto(issue["created"]),
        "reporter": user_dto(state.user(record["reporter"])),
        "requestFieldValues": values,
        "currentStatus": {
            "status": status,
            "statusCategory": category.upper(),
            "statusDate": date_dto(record["status_date"]),
        },
        "_links": {
            "jiraRest": f"{base()}/rest/api/2/issue/{issue['id']}",
            "web": f"{base()}/servicedesk/customer/portal/{sd}/{issue['key']}",
            "agent": f"{base()}/browse/{issue['key']}",
            "self": f"{base()}/rest/servicedeskapi/request/{issue['id']}",
        },
    }
    if "requestType" in expand:
        view["requestType"] = request_type_dto(state, state.request_types[record["request_type_id"]])
    if "serviceDesk" in expand:
        view["serviceDesk"] = service_desk_dto(state)
    if "participant" in expand:
        view["participants"] = paged([user_dto(state.user(p)) for p in record["participants"]])
    if "sla" in expand and is_agent():
        view["sla"] = paged([sla_dto(state, record, s) for s in record["sla"]])
    return view


def paged(items: list[Any]) -> dict[str, Any]:
    try:
        start = int(request.args.get("start", 0))
        limit = int(request.args.get("limit", 50))
    except ValueError:
        raise Refused(400, "start and limit must be integers", "sd.paging.error") from None
    if start < 0 or limit < 1:
        raise Refused(400, "start must be >= 0 and limit >= 1", "sd.paging.error")
    limit = min(limit, MAX_LIMIT)
    page = items[start : start + limit]
    last = start + len(page) >= len(items)
    args = {k: v for k, v in request.args.items() if k not in ("start", "limit")}
    links: dict[str, Any] = {"base": f"{base()}/rest/servicedeskapi", "context": "", "self": request.url}
    if not last:
        links["next"] = f"{request.base_url}?{urlencode({**args, 'start': start + limit, 'limit': limit})}"
    if start > 0:
        links["prev"] = (
            f"{request.base_url}?{urlencode({**args, 'start': max(0, start - limit), 'limit': limit})}"
        )
    return {
        "_expands": [],
        "size": len(page),
        "start": start,
        "limit": limit,
        "isLastPage": last,
        "values": page,
        "_links": links,
    }


def is_agent() -> bool:
    return getattr(g, "jsm_caller", {}).get("kind") == "agent"


def _flag(name: str, default: bool) -> bool:
    value = request.args.get(name)
    return default if value is None else value.strip().lower() != "false"


# ----- /rest/servicedeskapi -------------------------------------------------------------------------
def _api(state: JsmState) -> Blueprint:
    bp = Blueprint("jsm_api", __name__, url_prefix="/rest/servicedeskapi")

    @bp.before_request
    def _authenticate() -> tuple[Response, int] | None:
        if request.endpoint == "jsm_api.info":
            return None
        basic, bearer = basic_credentials(), bearer_token()
        if state.jira.authenticate(basic, bearer):
            g.jsm_caller = state.users[BOT["accountId"]]
            return None
        if basic is not None and basic[1] == CUSTOMER_TOKEN:
            customer = state.customer_by_email(basic[0])
            if customer is not None:
                g.jsm_caller = customer
                return None
        return _error(401, "You are not authenticated.", "sd.security.authentication.error")

    @bp.errorhandler(Refused)
    def _refused(exc: Refused) -> tuple[Response, int]:
        return _error(exc.status, exc.message, exc.key)

    @bp.errorhandler(Missing)
    def _missing(exc: Missing) -> tuple[Response, int]:
        return _error(404, f"{exc.args[0]} does not exist or you do not have permission to see it.")

    @bp.errorhandler(JsmError)
    def _bad(exc: JsmError) -> tuple[Response, int]:
        return _error(400, str(exc))

    def agents_only() -> None:
        if not is_agent():
            raise Refused(403, "You do not have permission to perform this operation.", "sd.permission.error")

    def desk(sd: str) -> None:
        if sd not in (
            state.service_desk["id"],
            state.service_desk["projectKey"],
            state.service_desk["projectId"],
        ):
            raise Missing(f"Service desk {sd}")

    def visible(key: str) -> dict[str, Any]:
        record = state.request(key)
        if not is_agent() and not state.can_see(g.jsm_caller["accountId"], record):
            raise Missing(key)
        return record

    def member_filter(orgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        account = request.args.get("accountId")
        if not is_agent():
            account = g.jsm_caller["accountId"]
        return [o for o in orgs if account is None or account in o["members"]]

    @bp.get("/info")
    def info() -> Response:
        return jsonify(
            {
                "version": "10.3.0",
                "platformVersion": "9.12.15",
                "buildDate": date_dto(datetime(2026, 11, 1, tzinfo=UTC)),
                "buildChangeSet": "sandbox",
                "isLicensedForUse": True,
                "_links": {"self": f"{base()}/rest/servicedeskapi/info"},
            }
        )

    @bp.get("/servicedesk")
    def service_desks() -> Response:
        return jsonify(paged([service_desk_dto(state)]))

    @bp.get("/servicedesk/<sd>")
    def service_desk(sd: str) -> Response:
        desk(sd)
        return jsonify(service_desk_dto(state))

    @bp.get("/servicedesk/<sd>/requesttype")
    def request_types(sd: str) -> Response:
        desk(sd)
        return jsonify(paged([request_type_dto(state, rt) for rt in state.request_types.values()]))

    @bp.get("/servicedesk/<sd>/organization")
    def desk_organizations(sd: str) -> Response:
        desk(sd)
        return jsonify(paged([org_dto(o) for o in member_filter(list(state.organizations.values()))]))

    @bp.get("/organization")
    def organizations() -> Response:
        return jsonify(paged([org_dto(o) for o in member_filter(list(state.organizations.values()))]))

    def readable_org(org_id: str) -> dict[str, Any]:
        org = state.organization(org_id)
        if not is_agent() and g.jsm_caller["accountId"] not in org["members"]:
            raise Missing(f"Organization {org_id}")
        return org

    @bp.get("/organization/<org_id>")
    def organization(org_id: str) -> Response:
        return jsonify(org_dto(readable_org(org_id)))

    @bp.get("/organization/<org_id>/user")
    def organization_users(org_id: str) -> Response:
        agents_only()
        org = state.organization(org_id)
        return jsonify(paged([user_dto(state.user(a)) for a in org["members"]]))

    @bp.get("/organization/<org_id>/property")
    def property_keys(org_id: str) -> Response:
        org = readable_org(org_id)
        url = f"{base()}/rest/servicedeskapi/organization/{org_id}/property"
        return jsonify({"keys": [{"self": f"{url}/{k}", "key": k} for k in org["properties"]]})

    @bp.route("/organization/<org_id>/property/<key>", methods=["GET", "PUT", "DELETE"])
    def organization_property(org_id: str, key: str):
        org = readable_org(org_id)
        if request.method == "GET":
            if key not in org["properties"]:
                raise Refused(404, f"The property with key '{key}' does not exist.", "sd.property.not.found")
            return jsonify({"key": key, "value": org["properties"][key]})
        agents_only()
        if request.method == "DELETE":
            if org["properties"].pop(key, None) is None:
                raise Refused(404, f"The property with key '{key}' does not exist.", "sd.property.not.found")
            return Response(status=204)
        value = request.get_json(silent=True)
        if value is None:
            raise Refused(400, "The property value must be valid JSON.", "sd.property.invalid")
        created = key not in org["properties"]
        org["properties"][key] = value
        return Response(status=201 if created else 200)

    @bp.get("/request/<key>")
    def get_request(key: str) -> Response:
        expand = {e.strip() for v in request.args.getlist("expand") for e in v.split(",") if e.strip()}
        return jsonify(request_dto(state, visible(key), expand))

    @bp.route("/request/<key>/comment", methods=["GET", "POST"])
    def comments(key: str):
        record = visible(key)
        if request.method == "POST":
            body = request.get_json(silent=True) or {}
            public = body.get("public", True)
            if not isinstance(public, bool):
                raise Refused(400, "public must be true or false")
            if not is_agent() and not public:
                raise Refused(400, "Customers can only add public comments.", "sd.comment.public.only")
            comment = state.add_comment(
                record["key"], g.jsm_caller["accountId"], body.get("body"), public=public
            )
            return jsonify(comment_dto(state, record, comment)), 201
        want_public, want_internal = _flag("public", True), _flag("internal", True) and is_agent()
        items = [
            comment_dto(state, record, c)
            for c in record["comments"]
            if (c["public"] and want_public) or (not c["public"] and want_internal)
        ]
        return jsonify(paged(items))

    @bp.get("/request/<key>/comment/<comment_id>")
    def comment(key: str, comment_id: str) -> Response:
        record = visible(key)
        found = next((c for c in record["comments"] if c["id"] == comment_id), None)
        if found is None or (not found["public"] and not is_agent()):
            raise Missing(f"Comment {comment_id}")
        return jsonify(comment_dto(state, record, found))

    @bp.get("/request/<key>/sla")
    def slas(key: str) -> Response:
        agents_only()
        record = visible(key)
        return jsonify(paged([sla_dto(state, record, s) for s in record["sla"]]))

    @bp.get("/request/<key>/sla/<sla_id>")
    def sla(key: str, sla_id: str) -> Response:
        agents_only()
        record = visible(key)
        found = next((s for s in record["sla"] if s["id"] == sla_id), None)
        if found is None:
            raise Missing(f"SLA {sla_id}")
        return jsonify(sla_dto(state, record, found))

    @bp.get("/request/<key>/participant")
    def participants(key: str) -> Response:
        record = visible(key)
        return jsonify(paged([user_dto(state.user(p)) for p in record["participants"]]))

    return bp


def _error(status: int, message: str, key: str = "sd.error") -> tuple[Response, int]:
    return jsonify({"errorMessage": message, "i18nErrorMessage": {"i18nKey": key, "parameters": []}}), status


# ----- Jira platform endpoints the JSM side needs ------------------------------------------------------
def _jira_extras(state: JsmState) -> Blueprint:
    bp = Blueprint("jsm_jira_extras", __name__, url_prefix="/rest/api/<version>")

    def jira_error(status: int, messages: list[str], errors: dict[str, str] | None = None):
        return jsonify({"errorMessages": messages, "errors": errors or {}}), status

    @bp.before_request
    def _authenticate():
        if (request.view_args or {}).get("version") not in ("2", "3", "latest"):
            return jira_error(404, ["No such REST API version."])
        if not state.jira.authenticate(basic_credentials(), bearer_token()):
            return jira_error(
                401, ["You are not authenticated. Authentication required to perform this operation."]
            )
        return None

    @bp.errorhandler(Missing)
    def _missing(exc: Missing):
        return jira_error(404, ["Issue does not exist or you do not have permission to see it."])

    @bp.get("/issue/<key>/changelog")
    def changelog(version: str, key: str):
        if not state.jira.is_cloud:  # Server and Data Center: only ?expand=changelog on the issue
            return jira_error(404, [f"null for uri: /rest/api/{version}/issue/{key}/changelog"])
        issue = state.issue(key)
        record = state.requests.get(issue["key"])
        histories = [
            {
                "id": c["id"],
                "author": {"accountId": BOT["accountId"], "displayName": BOT["displayName"]},
                "created": jira_time(c["at"]),
                "items": [
                    {
                        "field": c["field"],
                        "fieldtype": "jira",
                        "fieldId": c["field"],
                        "from": None,
                        "fromString": c["from"],
                        "to": None,
                        "toString": c["to"],
                    }
                ],
            }
            for c in (record or {}).get("changes", [])
        ]
        start, size = int(request.args.get("startAt") or 0), int(request.args.get("maxResults") or 100)
        page = histories[start : start + size]
        return jsonify(
            {
                "self": request.url,
                "startAt": start,
                "maxResults": size,
                "total": len(histories),
                "isLast": start + len(page) >= len(histories),
                "values": page,
            }
        )

    return bp


# ----- /_sandbox/jsm ---------------------------------------------------------------------------------
def _extras(state: JsmState) -> Blueprint:
    bp = Blueprint("jsm_sandbox", __name__, url_prefix="/_sandbox/jsm")

    @bp.get("/state")
    def dump() -> Response:
        return jsonify(state.dump())

    @bp.post("/reset")
    def reset() -> Response:
        state.reset()
        return jsonify({"reset": True})

    @bp.post("/clock")
    def clock():
        value = (request.get_json(force=True) or {}).get("now")
        if value is None:
            state.clock = None
        else:
            try:
                state.clock = datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)
            except ValueError:
                return jsonify({"error": "now must be an ISO 8601 time or null"}), 400
        return jsonify({"now": date_dto(state.now())})

    @bp.post("/requests/<key>/status")
    def set_status(key: str):
        try:
            state.set_status(key, str((request.get_json(force=True) or {}).get("status")))
        except Missing:
            return jsonify({"error": "no such request"}), 404
        except JsmError as exc:
            return jsonify({"error": str(exc)}), 400
        return jsonify({"key": key, "status": state.request(key)["status"]})

    return bp
