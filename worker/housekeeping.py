"""The store's daily pruning (``worker.store.retention``): the job RQ's cron scheduler runs, and its
registration beside the follow-through check (``escalate followthrough cron``)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from worker.store.retention import Windows, prune

log = logging.getLogger(__name__)

# Once a day at 03:17 UTC: off the hour, when support traffic is usually lowest.
PRUNE_CRON = "17 3 * * *"
PRUNE_TIMEOUT = 3600


def prune_store(now: str | None = None) -> dict[str, int]:
    """The scheduled RQ job: delete what is past its window (windows from the worker's environment)."""
    from worker.jobs import worker_context

    at = datetime.fromisoformat(now) if now else datetime.now(UTC)
    counts = prune(worker_context().store.engine, Windows.from_env(), now=at)
    log.info("store pruned: %s", ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "nothing kept")
    return counts


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
