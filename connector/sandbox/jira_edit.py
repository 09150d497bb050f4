"""The sandbox Jira's issue edit and issue entity properties, in Jira's documented shapes.

``PUT /rest/api/{2|3}/issue/{key}`` with ``{"fields": {"priority": {"name"}, "labels": [...],
"summary"}, "update": {"labels": [{"add": x}, {"remove": y}]}}`` answers 204;
``GET|PUT|DELETE /rest/api/{2|3}/issue/{key}/properties/{name}`` keeps any JSON value per issue
(``GET`` answers ``{"key": name, "value": ...}``, 404 when unset; ``PUT`` 201 when new, 200 when
replaced). Same authentication as the rest of the API.
"""

from __future__ import annotations

import copy
from typing import Any

from flask import Blueprint, Response, jsonify, request

from connector.sandbox.common import basic_credentials, bearer_token
from connector.sandbox.jira_state import FieldErrors, JiraState, Missing
from connector.sandbox.seed import PRIORITIES


def _errors(status: int, messages: list[str], errors: dict[str, str] | None = None) -> tuple[Response, int]:
    return jsonify({"errorMessages": messages, "errors": errors or {}}), status


def _valid_label(label: Any) -> bool:
    return isinstance(label, str) and bool(label) and " " not in label and len(label) <= 255


def edit_issue(state: JiraState, key: str, body: dict[str, Any]) -> None:
    """Validate the whole edit first, then apply it (Jira applies an edit all or nothing)."""
    issue = state.find(key)
    fields = body.get("fields") or {}
    update = body.get("update") or {}
    if not isinstance(fields, dict) or not isinstance(update, dict):
        raise FieldErrors(messages=["fields and update must be objects"])
    errors: dict[str, str] = {}
    labels = list(issue["labels"])
    if "priority" in fields:
        name = (fields["priority"] or {}).get("name")
        if name not in PRIORITIES:
            errors["priority"] = f"Specify a valid priority ({name} is not one)."
    if "labels" in fields:
        if not isinstance(fields["labels"], list) or not all(_valid_label(x) for x in fields["labels"]):
            errors["labels"] = "Labels must be strings without spaces."
        else:
            labels = list(fields["labels"])
    if "summary" in fields and not (isinstance(fields["summary"], str) and fields["summary"].strip()):
        errors["summary"] = "You must specify a summary of the issue."
    for op in update.get("labels") or []:
        for verb, label in (op or {}).items():
            if verb not in ("add", "remove", "set") or (verb != "set" and not _valid_label(label)):
                errors["labels"] = f"Invalid label operation {verb!r}."
            elif verb == "add" and label not in labels:
                labels.append(label)
            elif verb == "remove" and label in labels:
                labels.remove(label)
            elif verb == "set":
                labels = list(label or [])
    unknown = set(fields) - {"priority", "labels", "summary"}
    if unknown:
        refused = "Field cannot be set. It is not on the appropriate screen, or unknown."
        errors.update(dict.fromkeys(unknown, refused))
    if errors:
        raise FieldErrors(errors)
    if "priority" in fields:
        issue["priority"] = fields["priority"]["name"]
    if "summary" in fields:
        issue["summary"] = fields["summary"]
    issue["labels"] = labels
    state.touch(issue)


def blueprint(state: JiraState) -> Blueprint:
    bp = Blueprint("jira_edit", __name__, url_prefix="/rest/api/<version>")

    @bp.before_request
    def _authenticate() -> tuple[Response, int] | None:
        if (request.view_args or {}).get("version") not in ("2", "3", "latest"):
            return _errors(404, ["No such REST API version."])
        if not state.authenticate(basic_credentials(), bearer_token()):
            refused = "You are not authenticated. Authentication required to perform this operation."
            return _errors(401, [refused])
        return None

    @bp.errorhandler(FieldErrors)
    def _field_errors(exc: FieldErrors) -> tuple[Response, int]:
        return _errors(400, exc.messages, exc.errors)

    @bp.errorhandler(Missing)
    def _missing(exc: Missing) -> tuple[Response, int]:
        return _errors(404, ["Issue does not exist or you do not have permission to see it."])

    @bp.put("/issue/<key>")
    def edit(version: str, key: str) -> Response:
        edit_issue(state, key, request.get_json(silent=True) or {})
        return Response(status=204)

    @bp.route("/issue/<key>/properties/<name>", methods=["GET", "PUT", "DELETE"])
    def prop(version: str, key: str, name: str):
        issue = state.find(key)
        properties = issue.setdefault("properties", {})
        if request.method == "GET":
            if name not in properties:
                return _errors(404, [f"The property with key '{name}' does not exist."])
            return jsonify({"key": name, "value": copy.deepcopy(properties[name])})
        if request.method == "DELETE":
            properties.pop(name, None)
            return Response(status=204)
        value = request.get_json(silent=True)
        if value is None:
            return _errors(400, ["The property value must be valid JSON."])
        created = name not in properties
        properties[name] = value
        return Response(status=201 if created else 200)

    @bp.get("/issue/<key>/properties")
    def keys(version: str, key: str) -> Response:
        names = sorted((state.find(key).get("properties") or {}).keys())
        return jsonify({"keys": [{"key": n, "self": f"{request.base_url}/{n}"} for n in names]})

    return bp
