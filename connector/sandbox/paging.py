"""Zendesk's two paging styles, for the sandbox's list endpoints.

Cursor (``page[size]``, then ``page[after]``): ``{"meta": {"has_more", "after_cursor", "before_cursor"},
"links": {"next", "prev"}}``. Offset (``page``, ``per_page``): ``{"next_page", "previous_page", "count"}``.
See https://developer.zendesk.com/api-reference/introduction/pagination/.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlencode

from flask import request


class PagingError(ValueError):
    pass


def _encode(index: int) -> str:
    return base64.urlsafe_b64encode(f"i{index}".encode()).decode().rstrip("=")


def _decode(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        return int(raw[1:]) if raw.startswith("i") else -1
    except (ValueError, UnicodeDecodeError):
        return -1


def _url(**overrides: Any) -> str:
    params = {k: v for k, v in request.args.items() if k not in ("page[after]", "page[before]", "page")}
    params.update({k: v for k, v in overrides.items() if v is not None})
    return f"{request.base_url}?{urlencode(params)}"


def wants_cursor() -> bool:
    return "page[size]" in request.args


def cursor_page(items: list[Any], key: str, *, max_size: int = 100) -> dict[str, Any]:
    try:
        size = int(request.args.get("page[size]", "100"))
    except ValueError:
        raise PagingError("page[size] must be an integer") from None
    if not 1 <= size <= max_size:
        raise PagingError(f"page[size] must be between 1 and {max_size}")
    start = 0
    if request.args.get("page[after]"):
        start = _decode(request.args["page[after]"])
        if start < 0:
            raise PagingError("invalid cursor")
    page = items[start : start + size]
    end = start + len(page)
    has_more = end < len(items)
    return {
        key: page,
        "meta": {
            "has_more": has_more,
            "after_cursor": _encode(end) if page else None,
            "before_cursor": _encode(start) if page and start else None,
        },
        "links": {"next": _url(**{"page[after]": _encode(end)}) if has_more else None, "prev": None},
    }


def offset_page(
    items: list[Any], key: str, *, max_per_page: int = 100, cap: int | None = None
) -> dict[str, Any]:
    """``cap``: results beyond it are never served (the search endpoint's 1,000)."""
    try:
        page = int(request.args.get("page", "1"))
        per_page = int(request.args.get("per_page", str(max_per_page)))
    except ValueError:
        raise PagingError("page and per_page must be integers") from None
    if page < 1 or not 1 <= per_page <= max_per_page:
        raise PagingError(f"page must be >= 1 and per_page between 1 and {max_per_page}")
    start = (page - 1) * per_page
    if cap is not None and start >= cap:
        raise OverflowError("past the result cap")
    reachable = len(items) if cap is None else min(len(items), cap)
    end = min(start + per_page, reachable)
    return {
        key: items[start:end],
        "next_page": _url(page=page + 1, per_page=per_page) if end < reachable else None,
        "previous_page": _url(page=page - 1, per_page=per_page) if page > 1 else None,
        "count": len(items),
    }
