"""Calls whose JSON is used as Zendesk sent it: zenpy's session and URL, without zenpy's objects.

zenpy maps a response into objects and ``to_dict()`` dumps and parses them again to give the JSON back:
for the two reads every assessment makes (the ticket and its audits) that was about half of their cost
in the worker, more than the request itself against a nearby server; for a ticket update (the note,
whose answer is the whole ticket and its audit) a third. Going through the client's own
session keeps everything else the same: its authentication, our error hook (a 4xx/5xx raises the typed
connector error inside ``Session.send``, as for zenpy's calls) and the call metrics, and the URL is built
from the same API object, honouring ``ZENPY_FORCE_SCHEME``/``ZENPY_FORCE_NETLOC`` as zenpy does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import requests
from zenpy import Zenpy

from connector.errors import PermanentError
from connector.http_client import url_path
from connector.zendesk_client import SERVICE

PAGE_SIZE = 100  # the cursor-paging maximum of Zendesk's list endpoints


def get(client: Zenpy, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``GET /api/v2/{path}``'s JSON body."""
    return _json(client.tickets, "get", _url(client, path), params=params)


def put(client: Zenpy, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """``PUT /api/v2/{path}`` with a JSON body; the answer's JSON body."""
    return _json(client.tickets, "put", _url(client, path), json=body)


def _url(client: Zenpy, path: str) -> str:
    api = client.tickets
    scheme = os.environ.get("ZENPY_FORCE_SCHEME") or api.protocol
    return f"{scheme}://{api.base_url}/{api.api_prefix}/{path}"


def cursor_pages(client: Zenpy, path: str, key: str, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` items of a cursor-paged list (``meta.has_more`` and ``links.next``)."""
    page = get(client, path, {"page[size]": min(PAGE_SIZE, max(limit, 1))})
    items = list(page.get(key) or ())
    while len(items) < limit and (page.get("meta") or {}).get("has_more"):
        following = (page.get("links") or {}).get("next")
        if not following:
            break
        page = _json(client.tickets, "get", following)
        items += page.get(key) or ()
    return items[:limit]


def _json(api: Any, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
    response = api.session.request(method, url, timeout=api.timeout, **kwargs)
    try:
        body = response.json()
    except requests.JSONDecodeError:
        body = None
    if not isinstance(body, dict):  # a proxy's error page, a truncated body: not Zendesk's answer
        where = f"{method.upper()} {url_path(response.url)}"
        raise PermanentError(SERVICE, f"{where} answered {response.status_code} without a JSON object")
    return body
