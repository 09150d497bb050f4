"""A local Jira: the REST endpoints the Jira connector (through the ``jira`` client and its session)
calls, in Jira's documented shapes, backed by ``JiraState``.

API under ``/rest/api/{2|3|latest}`` (Basic ``email:token`` or Bearer ``token``; serverInfo is open):
``GET serverInfo`` (``versionNumbers``, ``deploymentType`` Cloud/Server), ``GET myself``, ``GET field``,
``GET project/{key}``, ``POST issue`` (v2: wiki text; v3: ADF, checked), ``GET issue/{key}``,
``GET|POST search`` (Server only; Cloud answers 410 as the retired endpoint does), ``GET|POST
search/jql`` (Cloud only), ``GET|POST issue/{key}/remotelink`` (upsert by ``globalId``),
``GET|POST issue/{key}/comment``, ``GET|POST issue/{key}/transitions``, ``GET issueLinkType``,
``POST issueLink``; and ``GET /rest/applinks/latest/listApplicationlinks`` (empty).

Inspection (no auth): ``/_sandbox/state``, ``/_sandbox/reset``, ``/_sandbox/requests``,
``/_sandbox/faults``, ``POST /_sandbox/config`` (``deployment_type``, ``search_delay_s``),
``POST /_sandbox/issues/{key}/status`` (``{"name": "In Progress"}``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, request

from connector.sandbox import jira_edit
from connector.sandbox.common import JIRA_EMAIL, basic_credentials, bearer_token, instrument
from connector.sandbox.jira_jql import JqlError
from connector.sandbox.jira_state import (
    FieldErrors,
    JiraState,
    Missing,
    description_as,
    jira_time,
    status_view,
)
from connector.sandbox.jsm_app import register_jsm
from connector.sandbox.seed import LINK_TYPES

ALL_FIELDS = (
    "summary",
    "description",
    "issuetype",
    "project",
    "labels",
    "status",
    "priority",
    "security",
    "created",
    "updated",
    "issuelinks",
    "comment",
    "reporter",
)


def error_body(status: int) -> dict[str, Any]:
    return {"errorMessages": [f"Sandbox answered {status}"], "errors": {}}


def _errors(status: int, messages: list[str], errors: dict[str, str] | None = None) -> tuple[Response, int]:
    return jsonify({"errorMessages": messages, "errors": errors or {}}), status


def create_app(state: JiraState | None = None) -> Flask:
    state = state or JiraState()
    app = Flask(__name__)
    app.config["SANDBOX_STATE"] = state
    instrument(app, state, error_body)
    app.register_blueprint(_api(state))
    app.register_blueprint(_extras(state))
    app.register_blueprint(jira_edit.blueprint(state))  # PUT issue/{key}, issue properties
    register_jsm(app, state)  # Jira Service Management on the same site: /rest/servicedeskapi/...

    @app.get("/rest/applinks/latest/listApplicationlinks")
    def applinks() -> Response:
        return jsonify([])

    return app


def _fields_wanted() -> set[str]:
    raw = [part for value in request.args.getlist("fields") for part in value.split(",") if part]
    if isinstance(request.get_json(silent=True), dict):
        raw += list(request.get_json(silent=True).get("fields") or [])
    if not raw or any(f in ("*all", "*navigable") for f in raw):
        return set(ALL_FIELDS)
    return {f for f in raw if not f.startswith("-")}


def _api(state: JiraState) -> Blueprint:
    bp = Blueprint("jira_api", __name__, url_prefix="/rest/api/<version>")

    def base() -> str:
        return request.host_url.rstrip("/")

    def ver(version: str) -> str:
        return "3" if version == "3" else "2"

    def issue_ref(issue: dict[str, Any], version: str) -> dict[str, Any]:
        return {
            "id": issue["id"],
            "key": issue["key"],
            "self": f"{base()}/rest/api/{version}/issue/{issue['id']}",
            "fields": {"summary": issue["summary"], "status": status_view(issue["status"])},
        }

    def issue_view(issue: dict[str, Any], version: str, wanted: set[str]) -> dict[str, Any]:
        project = state.projects[issue["project"]]
        links = []
        for link in state.issue_links:
            if issue["key"] not in (link["inward"], link["outward"]):
                continue
            lt = next(t for t in LINK_TYPES if t[1] == link["type"])
            other_key = link["outward"] if link["inward"] == issue["key"] else link["inward"]
            side = "outwardIssue" if link["inward"] == issue["key"] else "inwardIssue"
            links.append(
                {
                    "id": link["id"],
                    "type": {"id": lt[0], "name": lt[1], "inward": lt[2], "outward": lt[3]},
                    side: issue_ref(state.find(other_key), version),
                }
            )
        every = {
            "summary": issue["summary"],
            "description": description_as(issue, version),
            "issuetype": {**issue["issuetype"], "subtask": False},
            "project": {"id": project["id"], "key": project["key"], "name": project["name"]},
            "labels": issue["labels"],
            "status": status_view(issue["status"]),
            "priority": {"name": issue["priority"]} if issue["priority"] else None,
            "security": issue["security"],
            "created": jira_time(issue["created"]),
            "updated": jira_time(issue["updated"]),
            "issuelinks": links,
            "comment": {
                "comments": [comment_view(issue, c, version) for c in issue["comments"]],
                "startAt": 0,
                "maxResults": len(issue["comments"]),
                "total": len(issue["comments"]),
            },
            "reporter": issue.get("reporter") or {"displayName": "Escalate Bot", "emailAddress": JIRA_EMAIL},
        }
        return {
            "expand": "renderedFields,names,schema,transitions,changelog",
            "id": issue["id"],
            "self": f"{base()}/rest/api/{version}/issue/{issue['id']}",
            "key": issue["key"],
            "fields": {k: v for k, v in every.items() if k in wanted},
        }

    def comment_view(issue: dict[str, Any], comment: dict[str, Any], version: str) -> dict[str, Any]:
        body = comment["body"]
        if version == "2" and comment["format"] == "adf":
            body = description_as({"description": body, "description_format": "adf"}, "2")
        elif version == "3" and comment["format"] == "wiki":
            body = description_as({"description": body, "description_format": "wiki"}, "3")
        return {
            "id": comment["id"],
            "self": f"{base()}/rest/api/{version}/issue/{issue['id']}/comment/{comment['id']}",
            "author": {"displayName": "Escalate Bot"},
            "body": body,
            "created": jira_time(comment["created"]),
            "updated": jira_time(comment["updated"]),
        }

    @bp.before_request
    def _authenticate() -> tuple[Response, int] | None:
        if (request.view_args or {}).get("version") not in ("2", "3", "latest"):
            return _errors(404, ["No such REST API version."])
        if request.endpoint == "jira_api.server_info":
            return None
        if not state.authenticate(basic_credentials(), bearer_token()):
            return _errors(
                401, ["You are not authenticated. Authentication required to perform this operation."]
            )
        return None

    @bp.errorhandler(FieldErrors)
    def _field_errors(exc: FieldErrors) -> tuple[Response, int]:
        return _errors(400, exc.messages, exc.errors)

    @bp.errorhandler(Missing)
    def _missing(exc: Missing) -> tuple[Response, int]:
        return _errors(404, ["Issue does not exist or you do not have permission to see it."])

    @bp.errorhandler(JqlError)
    def _jql(exc: JqlError) -> tuple[Response, int]:
        return _errors(400, [str(exc)])

    @bp.get("/serverInfo")
    def server_info(version: str) -> Response:
        cloud = state.is_cloud
        numbers = [1001, 0, 0] if cloud else [9, 12, 15]
        return jsonify(
            {
                "baseUrl": base(),
                "version": "1001.0.0-SNAPSHOT" if cloud else "9.12.15",
                "versionNumbers": numbers,
                "deploymentType": state.deployment_type,
                "buildNumber": 100283 if cloud else 9120015,
                "buildDate": "2026-11-01T00:00:00.000+0000",
                "serverTime": jira_time(datetime.now(UTC)),
                "scmInfo": "sandbox",
                "serverTitle": "Escalate sandbox Jira",
            }
        )

    @bp.get("/myself")
    def myself(version: str) -> Response:
        me = {
            "self": f"{base()}/rest/api/{ver(version)}/myself",
            "emailAddress": JIRA_EMAIL,
            "displayName": "Escalate Bot",
            "active": True,
            "timeZone": "UTC",
        }
        me.update(
            {"accountId": "5b10ac8d82e05b22cc7d4ef5"}
            if state.is_cloud
            else {"name": "escalate-bot", "key": "escalate-bot"}
        )
        return jsonify(me)

    @bp.get("/field")
    def fields(version: str) -> Response:
        return jsonify(
            [
                {
                    "id": f,
                    "key": f,
                    "name": f.capitalize(),
                    "custom": False,
                    "navigable": True,
                    "searchable": True,
                    "clauseNames": [f],
                }
                for f in ALL_FIELDS
            ]
        )

    @bp.get("/project/<key>")
    def project(version: str, key: str):
        found = state.projects.get(key) or next((p for p in state.projects.values() if p["id"] == key), None)
        if found is None:
            return _errors(404, [f"No project could be found with key '{key}'."])
        return jsonify({k: v for k, v in found.items() if k != "counter"})

    @bp.post("/issue")
    def create_issue(version: str) -> tuple[Response, int]:
        body = request.get_json(silent=True) or {}
        issue = state.create_issue(body.get("fields"), ver(version))
        return jsonify(
            {
                "id": issue["id"],
                "key": issue["key"],
                "self": f"{base()}/rest/api/{ver(version)}/issue/{issue['id']}",
            }
        ), 201

    @bp.get("/issue/<key>")
    def get_issue(version: str, key: str) -> Response:
        return jsonify(issue_view(state.find(key), ver(version), _fields_wanted()))

    def search_args() -> dict[str, Any]:
        args: dict[str, Any] = dict(request.args)
        if request.method == "POST":
            args.update(request.get_json(silent=True) or {})
        return args

    @bp.route("/search", methods=["GET", "POST"])
    def search(version: str):
        if state.is_cloud:
            return _errors(
                410, ["The requested API has been removed. Please migrate to the /rest/api/3/search/jql API."]
            )
        args = search_args()
        start, size = int(args.get("startAt") or 0), int(args.get("maxResults") or 50)
        found = state.search(str(args.get("jql") or ""))
        wanted = _fields_wanted()
        return jsonify(
            {
                "expand": "schema,names",
                "startAt": start,
                "maxResults": size,
                "total": len(found),
                "issues": [issue_view(i, ver(version), wanted) for i in found[start : start + size]],
            }
        )

    @bp.route("/search/jql", methods=["GET", "POST"])
    def search_jql(version: str):
        if not state.is_cloud:
            return _errors(404, ["null for uri: /rest/api/2/search/jql"])
        args = search_args()
        start = int(args.get("nextPageToken") or 0)
        size = int(args.get("maxResults") or 50)
        found = state.search(str(args.get("jql") or ""))
        wanted = _fields_wanted()
        page: dict[str, Any] = {
            "issues": [issue_view(i, ver(version), wanted) for i in found[start : start + size]],
            "isLast": start + size >= len(found),
        }
        if not page["isLast"]:
            page["nextPageToken"] = str(start + size)
        return jsonify(page)

    @bp.route("/issue/<key>/remotelink", methods=["GET", "POST"])
    def remote_links(version: str, key: str):
        issue = state.find(key)
        links_url = f"{base()}/rest/api/{ver(version)}/issue/{issue['id']}/remotelink"
        if request.method == "GET":
            wanted = request.args.get("globalId")
            return jsonify(
                [
                    {**link, "self": f"{links_url}/{link['id']}"}
                    for link in issue["remote_links"]
                    if wanted in (None, link["globalId"])
                ]
            )
        link, created = state.upsert_remote_link(key, request.get_json(silent=True) or {})
        self_url = f"{links_url}/{link['id']}"
        return jsonify({"id": link["id"], "self": self_url}), 201 if created else 200

    @bp.route("/issue/<key>/comment", methods=["GET", "POST"])
    def comments(version: str, key: str):
        issue = state.find(key)
        if request.method == "GET":
            items = [comment_view(issue, c, ver(version)) for c in issue["comments"]]
            return jsonify({"startAt": 0, "maxResults": len(items), "total": len(items), "comments": items})
        body = (request.get_json(silent=True) or {}).get("body")
        comment = state.add_comment(key, body, ver(version))
        return jsonify(comment_view(issue, comment, ver(version))), 201

    @bp.route("/issue/<key>/transitions", methods=["GET", "POST"])
    def transitions(version: str, key: str):
        if request.method == "GET":
            return jsonify({"expand": "transitions", "transitions": state.transitions(key)})
        transition = (request.get_json(silent=True) or {}).get("transition") or {}
        state.transition(key, str(transition.get("id")))
        return Response(status=204)

    @bp.get("/issueLinkType")
    def link_types(version: str) -> Response:
        return jsonify(
            {
                "issueLinkTypes": [
                    {
                        "id": i,
                        "name": n,
                        "inward": inward,
                        "outward": outward,
                        "self": f"{base()}/rest/api/{ver(version)}/issueLinkType/{i}",
                    }
                    for i, n, inward, outward in LINK_TYPES
                ]
            }
        )

    @bp.post("/issueLink")
    def link_issues(version: str) -> Response:
        body = request.get_json(silent=True) or {}
        state.link_issues(
            str((body.get("type") or {}).get("name") or (body.get("type") or {}).get("id")),
            str((body.get("inwardIssue") or {}).get("key")),
            str((body.get("outwardIssue") or {}).get("key")),
        )
        return Response(status=201)

    return bp


def _extras(state: JiraState) -> Blueprint:
    bp = Blueprint("jira_sandbox_extras", __name__, url_prefix="/_sandbox")

    @bp.post("/config")
    def configure():
        body = request.get_json(force=True) or {}
        try:
            state.configure(
                deployment_type=body.get("deployment_type"), search_delay_s=body.get("search_delay_s")
            )
        except ValueError as exc:
            return jsonify({"error": str(exc)}), 400
        return jsonify({"deployment_type": state.deployment_type, "search_delay_s": state.search_delay_s})

    @bp.post("/issues/<key>/status")
    def set_status(key: str):
        try:
            state.set_status(key, str((request.get_json(force=True) or {}).get("name")))
        except Missing:
            return jsonify({"error": "no such issue"}), 404
        except FieldErrors as exc:
            return jsonify({"error": str(exc)}), 400
        return jsonify({"key": key, "status": state.find(key)["status"]})

    return bp
