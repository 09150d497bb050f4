"""The store's daily pruning (``worker.store.retention``): the job RQ's cron scheduler runs, its
registration beside the follow-through check (``escalate followthrough cron``), and inline mode's
equivalent, run from the follow-through ticker's thread (there is no cron without Redis)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from worker.store import Store
from worker.store.retention import Windows, prune

log = logging.getLogger(__name__)

# Once a day at 03:17 UTC: off the hour, when support traffic is usually lowest.
PRUNE_CRON = "17 3 * * *"
PRUNE_TIMEOUT = 3600
INLINE_PRUNE_EVERY = 24 * 3600.0


def prune_store(now: str | None = None) -> dict[str, int]:
    """The scheduled RQ job: delete what is past its window (windows from the worker's environment)."""
    from worker.jobs import worker_context

    at = datetime.fromisoformat(now) if now else datetime.now(UTC)
    if at.tzinfo is None:  # a replay's "2026-11-27T03:17:00": UTC, as the store keeps times
        at = at.replace(tzinfo=UTC)
    return _prune(worker_context().store, at)


def _prune(store: Store, now: datetime) -> dict[str, int]:
    counts = prune(store.engine, Windows.from_env(), now=now)
    log.info("store pruned: %s", ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "all kept")
    return counts


class InlinePrune:
    """Inline mode's prune: at the ticker's first tick, then once ``every`` seconds."""

    def __init__(self, every: float = INLINE_PRUNE_EVERY) -> None:
        self.every = every
        self._last: float | None = None

    def maybe_run(self, store: Store) -> dict[str, int] | None:
        """Prune if it is due; None when it is not."""
        if self._last is not None and time.monotonic() - self._last < self.every:
            return None
        self._last = time.monotonic()  # a failed prune waits its turn too, rather than every tick
        return _prune(store, datetime.now(UTC))


def register(scheduler: Any, queue_name: str) -> None:
    """Add the daily prune to an RQ cron scheduler."""
    scheduler.register(
        prune_store,
        queue_name,
        cron=PRUNE_CRON,
        job_timeout=PRUNE_TIMEOUT,
        result_ttl=7 * 24 * 3600,
        failure_ttl=7 * 24 * 3600,
        name="escalate-prune",
    )
