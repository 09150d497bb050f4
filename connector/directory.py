"""A short-lived cache of a helpdesk's directory: users, organizations, memberships, properties.

A case needs its requester's and the history's organizations every time, and they change rarely (an
account's ARR, its tier); refetching them costs calls on every job. Entries live ``ttl`` seconds
(``ZENDESK_DIRECTORY_TTL``, ``JSM_DIRECTORY_TTL``; 0 turns the cache off), at most ``maxsize`` of them,
the oldest first out. Thread-safe: the inline job thread and request threads may share a connector.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from cachetools import TTLCache

DEFAULT_TTL = 120.0
DEFAULT_MAXSIZE = 20_000


class Directory:
    MISS = object()

    def __init__(self, ttl: float = DEFAULT_TTL, maxsize: int = DEFAULT_MAXSIZE) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._items: TTLCache[Hashable, Any] | None = (
            TTLCache(maxsize=maxsize, ttl=ttl) if ttl > 0 else None
        )

    def get(self, key: Hashable) -> Any:
        """The cached value (None is a value: "looked up, not there"), or ``Directory.MISS``."""
        if self._items is None:
            return self.MISS
        with self._lock:
            return self._items.get(key, self.MISS)

    def put(self, key: Hashable, value: Any) -> None:
        if self._items is not None:
            with self._lock:
                self._items[key] = value

    def many(
        self, kind: str, ids: Iterable[Any], fetch: Callable[[list[int]], list[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        """The records of ``kind`` with these ids, those not cached from ``fetch(missing_ids)``; ids the
        helpdesk does not know are left out (and asked for again next time)."""
        wanted = sorted({int(i) for i in ids if i is not None and str(i).strip() != ""})
        if self._items is None:
            return fetch(wanted) if wanted else []
        with self._lock:
            found = {i: self._items.get((kind, i)) for i in wanted}
        missing = [i for i, record in found.items() if record is None]
        if missing:
            fetched = fetch(missing)
            with self._lock:
                for record in fetched:
                    key = record.get("id")
                    if key is not None:
                        self._items[(kind, int(key))] = record
                        found[int(key)] = record
        return [record for i in wanted if (record := found.get(i)) is not None]

    def clear(self) -> None:
        if self._items is not None:
            with self._lock:
                self._items.clear()
