"""Fill the symptom index from Zendesk's cursor-based incremental ticket export, and keep it current.

``backfill`` walks ``GET /api/v2/incremental/tickets/cursor.json`` from ``start_time`` = now - N days,
page by page (up to 1,000 tickets each), indexing the tickets created in the window. After every page the
export's ``after_cursor`` is stored (``symptom_index_state``, name ``backfill``): an interrupted run
resumes where it stopped, and a finished one, run again, only reads what changed since. Once the export
reports the end of the stream, the index is marked filled from the window's start, and assessment takes
its history from the index (``worker.symptom_index.fetch_bundle``).

``keep_current`` is the follow-through job's small share: a few pages from the stored cursor, and the
pruning of tickets older than the lookback window (those under an escalation stay).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from rules.adapters.coerce import timestamp
from rules.similarity import SymptomMatcher
from worker.store import Store
from worker.symptom_index import BACKFILL, DELETED, index_for, mark_filled

log = logging.getLogger(__name__)

PER_PAGE = 1000
CATCH_UP_PAGES = 5
# Kept a day beyond the window, so a ticket at the window's edge is not pruned and fetched again.
PRUNE_MARGIN = timedelta(days=1)

Progress = Callable[[dict[str, Any]], None]


def backfill(
    store: Store,
    zendesk: Any,
    matcher: SymptomMatcher,
    *,
    days: float,
    now: datetime | None = None,
    restart: bool = False,
    per_page: int = PER_PAGE,
    max_pages: int | None = None,
    on_page: Progress | None = None,
) -> dict[str, Any]:
    """Index the tickets created in the last ``days`` days; resumable. Returns the stored state."""
    now = now or datetime.now(UTC)
    start = now - timedelta(days=days)
    index = index_for(store, matcher)
    state = store.index_state(BACKFILL) or {}
    stored_start = timestamp(state.get("start_time"))
    if restart or not state.get("cursor") or stored_start is None or stored_start > start:
        state = {
            "start_time": start.isoformat(),
            "days": days,
            "cursor": None,
            "pages": 0,
            "seen": 0,
            "indexed": 0,
            "through": None,
            "done": False,
        }
    window_start = timestamp(state["start_time"]) or start
    state["now"] = now.isoformat()
    pages = 0
    while True:
        cursor = state.get("cursor")
        page = zendesk.incremental_tickets(
            start_time=None if cursor else window_start, cursor=cursor or None, per_page=per_page
        )
        tickets = page["tickets"]
        keep = [t for t in tickets if _in_window(t, window_start)]
        written = index.add(store, keep) if keep else 0
        changed = [u for u in (timestamp(t.get("updated_at")) for t in tickets) if u is not None]
        state.update(
            cursor=page.get("after_cursor") or cursor,
            pages=int(state.get("pages") or 0) + 1,
            seen=int(state.get("seen") or 0) + len(tickets),
            indexed=int(state.get("indexed") or 0) + written,
            through=max(changed).isoformat() if changed else state.get("through"),
            done=bool(page.get("end_of_stream")),
        )
        store.set_index_state(BACKFILL, state)
        if on_page is not None:
            on_page(dict(state))
        pages += 1
        if state["done"] or not tickets or (max_pages is not None and pages >= max_pages):
            break
    if state["done"]:
        mark_filled(store, window_start)
    pruned = prune(store, days=max(days, float(state.get("days") or days)), now=now)
    return {**state, "pruned": pruned}


def _in_window(ticket: dict[str, Any], start: datetime) -> bool:
    if str(ticket.get("status") or "").lower() == DELETED:
        return True  # marks an indexed ticket as gone
    created = timestamp(ticket.get("created_at"))
    return created is None or created >= start


def prune(store: Store, *, days: float, now: datetime) -> int:
    return store.prune_symptoms(now - timedelta(days=days) - PRUNE_MARGIN)


def keep_current(ctx: Any, *, now: datetime | None = None) -> dict[str, Any]:
    """A few pages of what changed since the stored cursor (when a backfill ran), then pruning."""
    from worker.runtime import runtime_for

    rt = runtime_for(ctx.settings)
    now = now or datetime.now(UTC)
    days = rt.rules.thresholds.lookback_days
    state = ctx.store.index_state(BACKFILL) or {}
    if state.get("cursor") and state.get("done"):
        result = backfill(
            ctx.store,
            rt.zendesk,
            rt.matcher,
            days=float(state.get("days") or days),
            now=now,
            max_pages=CATCH_UP_PAGES,
        )
        return {"indexed": result["indexed"], "pruned": result["pruned"]}
    return {"pruned": prune(ctx.store, days=days, now=now)}
