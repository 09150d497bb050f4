"""Assemble the JSM case bundle (``rules.adapters.jsm`` describes it) for one request.

Calls, in order; each through the ``jira`` client's own session (auth, timeout, no retries, typed errors):

1. ``GET /rest/servicedeskapi/request/{key}?expand=requestType`` — required; everything else is optional.
2. ``GET /rest/api/2/issue/{key}?fields=…`` — priority, labels, issue type, Jira status, custom fields
   (Server/Data Center: ``&expand=changelog``).
3. Cloud: ``GET /rest/api/2/issue/{key}/changelog`` (paged by ``startAt``/``isLast``) — priority changes.
4. ``GET /rest/servicedeskapi/request/{key}/comment?public=true&internal=true`` — public replies and
   internal comments, told apart by ``public``; paged by ``start``/``limit`` until ``isLastPage``.
5. ``GET …/request/{key}/sla`` — each SLA's ongoing cycle and completed cycles.
6. ``GET …/request/{key}/participant``.
7. History: JQL ``<JSM_HISTORY_JQL> ORDER BY created DESC`` through the client (Cloud: ``search/jql`` with
   ``nextPageToken``; Server: ``search`` with ``startAt``), read until the first request older than the
   window. Sorting and cutting here, instead of a ``created >=`` clause, keeps the query one the
   sandbox's JQL subset answers and reads the same pages from a real Jira.
8. Organizations: from the request's Organizations field when configured; and for the reporter, the
   comment authors not yet known as customers or agents, and (up to ``membership_lookups``) the
   history's reporters: ``GET …/servicedesk/{id}/organization?accountId=…`` (needs an agent).
9. ``GET …/organization/{id}/property/{JSM_ORG_PROPERTY_KEY}`` for every organization found (404: none).

JSM has no bulk lookup for 8 and 9, and organizations change rarely: a ``Directory`` keeps both
answers for a few minutes across the cases one connector assembles.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, TypeVar

from jira import JIRA

from connector.directory import Directory
from connector.errors import AuthError, NotFoundError, PermanentError
from connector.jira_client import jira_errors
from connector.jira_connector import parse_jira_time
from connector.jsm_config import JsmConfig
from rules.adapters.jsm import request_field_values

log = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_HISTORY_DAYS = 14
DEFAULT_HISTORY_LIMIT = 1000
DEFAULT_COMMENT_LIMIT = 1000
PAGE = 100
# Servicedesk API resources once marked experimental still want this header on Server/Data Center.
HEADERS = {"X-ExperimentalApi": "opt-in", "Accept": "application/json"}


class ServiceDeskApi:
    """``/rest/servicedeskapi`` through a ``jira`` client's session; errors surface as ``JIRAError``."""

    def __init__(self, client: JIRA, server_url: str) -> None:
        self.client = client
        self.base = f"{server_url.rstrip('/')}/rest/servicedeskapi"

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.client._session.get(f"{self.base}/{path}", params=params, headers=HEADERS).json()

    def post(self, path: str, payload: dict[str, Any]) -> Any:
        response = self.client._session.post(f"{self.base}/{path}", data=json.dumps(payload), headers=HEADERS)
        return response.json()

    def pages(self, path: str, params: dict[str, Any] | None = None, *, limit: int = PAGE) -> Iterator[Any]:
        """Every ``values`` item of a paged resource (``start``/``limit``/``isLastPage``)."""
        start = 0
        while True:
            page = self.get(path, {**(params or {}), "start": start, "limit": limit})
            values = page.get("values") or []
            yield from values
            if page.get("isLastPage", True) or not values:
                return
            start += len(values)


def search_issues(
    client: JIRA, jql: str, fields: list[str], page_size: int = PAGE
) -> Iterator[dict[str, Any]]:
    """Issues of a JQL search, page after page, on Cloud (``search/jql``) or Server (``search``)."""
    if client._is_cloud:
        token: str | None = None
        while True:
            page = client.enhanced_search_issues(
                jql, nextPageToken=token, maxResults=page_size, fields=list(fields), json_result=True
            )
            yield from page.get("issues") or []
            token = page.get("nextPageToken")
            if page.get("isLast", True) or not token:
                return
    start = 0
    while True:
        page = client.search_issues(
            jql, startAt=start, maxResults=page_size, fields=list(fields), json_result=True
        )
        issues = page.get("issues") or []
        yield from issues
        start += len(issues)
        if not issues or start >= int(page.get("total") or 0):
            return


def assemble(
    client: JIRA,
    config: JsmConfig,
    server_url: str,
    key: str,
    *,
    now: datetime | None = None,
    history_days: int = DEFAULT_HISTORY_DAYS,
    history_limit: int = DEFAULT_HISTORY_LIMIT,
    comment_limit: int = DEFAULT_COMMENT_LIMIT,
    include_changelog: bool = True,
    cache: Directory | None = None,
) -> dict[str, Any]:
    now = (now or datetime.now(UTC)).astimezone(UTC)
    cache = cache or Directory(ttl=0)
    api = ServiceDeskApi(client, server_url)
    request = api.get(f"request/{key}", {"expand": "requestType"})
    key = str(request.get("issueKey") or key)
    bundle: dict[str, Any] = {
        "now": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": "jsm",
        "request": request,
        "mapping": config.mapping().to_dict(),
    }
    cloud = bool(client._is_cloud)
    expand = "changelog" if include_changelog and not cloud else None
    issue = _optional(
        "issue", lambda: client.issue(key, fields=",".join(config.issue_fields()), expand=expand).raw
    )
    if issue is not None:
        if not cloud and include_changelog:
            bundle["changelog"] = list((issue.pop("changelog", None) or {}).get("histories") or [])
        bundle["issue"] = issue
    if include_changelog and cloud:
        changelog = _optional("changelog", lambda: list(_changelog(client, server_url, key)))
        if changelog is not None:
            bundle["changelog"] = changelog
    params = {"public": "true", "internal": "true"}
    comments = _optional(
        "comments", lambda: list(islice(api.pages(f"request/{key}/comment", params), comment_limit))
    )
    if comments is not None:
        bundle["comments"] = comments
    for section, path in (("sla", f"request/{key}/sla"), ("participants", f"request/{key}/participant")):
        found = _optional(section, lambda path=path: list(api.pages(path)))
        if found is not None:
            bundle[section] = found
    if history_days > 0 and history_limit > 0:
        since = now - timedelta(days=history_days)
        history = _optional("history", lambda: recent_requests(client, config, since, history_limit, key))
        if history is not None:
            bundle["history"] = history

    desk = config.service_desk_id or str(request.get("serviceDeskId") or "")
    organizations: dict[str, dict[str, Any]] = {}
    if config.organization_field:
        field = config.organization_field
        value = request_field_values(request).get(field)
        values = [value if value is not None else ((issue or {}).get("fields") or {}).get(field)]
        values += [(h.get("fields") or {}).get(field) for h in bundle.get("history", [])]
        for org in (o for v in values if isinstance(v, list) for o in v):
            if isinstance(org, dict) and org.get("id") is not None:
                organizations.setdefault(str(org["id"]), org)
    memberships = _memberships(api, desk, config, bundle, organizations, cache) if desk else {}
    if memberships:
        bundle["memberships"] = memberships
    bundle["organizations"] = list(organizations.values())
    properties = {}
    for oid in organizations:
        prop = organization_property(api, oid, config.org_property_key, cache)
        if prop is not None:
            properties[oid] = prop
    bundle["organization_properties"] = properties
    return bundle


def recent_requests(client: JIRA, config: JsmConfig, since: datetime, limit: int, exclude: str) -> list[dict]:
    """The desk's requests created at or after ``since``, newest first, up to ``limit``."""
    jql = f"{config.history_filter()} ORDER BY created DESC"
    found = []
    for issue in search_issues(client, jql, config.issue_fields()):
        created = parse_jira_time((issue.get("fields") or {}).get("created"))
        if created is not None and created < since:
            break
        if issue.get("key") != exclude:
            found.append(issue)
            if len(found) >= limit:
                break
    return found


def _changelog(client: JIRA, server_url: str, key: str) -> Iterator[dict[str, Any]]:
    """Cloud's ``GET /rest/api/2/issue/{key}/changelog`` (``values``, ``startAt``, ``isLast``)."""
    start = 0
    while True:
        page = client._session.get(
            f"{server_url.rstrip('/')}/rest/api/2/issue/{key}/changelog",
            params={"startAt": start, "maxResults": PAGE},
        ).json()
        values = page.get("values") or []
        yield from values
        start += len(values)
        if page.get("isLast", True) or not values:
            return


def _account(user: Any) -> str | None:
    if not isinstance(user, dict):
        return None
    value = user.get("accountId") or user.get("key") or user.get("name")
    return str(value) if value else None


def _memberships(
    api: ServiceDeskApi,
    desk: str,
    config: JsmConfig,
    bundle: dict[str, Any],
    organizations: dict[str, dict[str, Any]],
    cache: Directory,
) -> dict[str, list[str]]:
    """Which of the desk's organizations the accounts that matter belong to (see the module doc)."""
    reporter = _account(bundle["request"].get("reporter"))
    participants = {_account(p) for p in bundle.get("participants", [])}
    internal = {_account(c.get("author")) for c in bundle.get("comments", []) if c.get("public") is False}
    authors = [_account(c.get("author")) for c in bundle.get("comments", [])]
    case_accounts = [reporter, *(a for a in authors if a not in participants and a not in internal)]
    field = config.organization_field
    history_reporters = [  # a request whose Organizations field says nothing: its reporter's organization
        _account(fields.get("reporter"))
        for fields in ((h.get("fields") or {}) for h in bundle.get("history", []))
        if not (field and fields.get(field))
    ]
    wanted = list(dict.fromkeys(a for a in case_accounts if a))
    extra = [a for a in dict.fromkeys(history_reporters) if a and a not in wanted]
    if len(extra) > config.membership_lookups:
        log.info(
            "history reporters' organizations: %d of %d looked up", config.membership_lookups, len(extra)
        )
    memberships: dict[str, list[str]] = {}
    path = f"servicedesk/{desk}/organization"
    for account in [*wanted, *extra[: config.membership_lookups]]:
        orgs = cache.get(("member", desk, account))
        if orgs is Directory.MISS:
            orgs = _optional(
                f"organizations of {account}",
                lambda account=account: list(api.pages(path, {"accountId": account})),
            )
            if orgs is None:
                continue
            cache.put(("member", desk, account), orgs)
        memberships[account] = [str(o["id"]) for o in orgs if o.get("id") is not None]
        for org in orgs:
            if org.get("id") is not None:
                organizations.setdefault(str(org["id"]), org)
    return memberships


def organization_property(
    api: ServiceDeskApi, org_id: str, key: str, cache: Directory
) -> dict[str, Any] | None:
    found = cache.get(("property", org_id, key))
    if found is not Directory.MISS:
        return found
    try:
        with jira_errors():
            found = api.get(f"organization/{org_id}/property/{key}")
    except NotFoundError:
        log.debug("organization %s has no %r property", org_id, key)
        found = None
    except (AuthError, PermanentError) as exc:
        log.warning("organization %s property %r unreadable: %s", org_id, key, exc.message)
        return None
    cache.put(("property", org_id, key), found)
    return found


def _optional(section: str, fetch: Callable[[], T]) -> T | None:
    """A section the case can do without: a refusal leaves it out ("unknown"); a rate limit or an outage
    propagates, because a later retry gives the rules a fuller picture."""
    try:
        with jira_errors():
            return fetch()
    except (AuthError, NotFoundError, PermanentError) as exc:
        log.warning("JSM case bundle without %s: %s", section, exc.message)
        return None
