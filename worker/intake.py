"""The intake: take a verified event, queue it exactly once per delivery, or say why not (503).

With Redis, consistency between "seen" and "queued" comes from ordering, not from a transaction:

1. a short-circuit: if the delivery's long-lived mark exists, it is a duplicate;
2. enqueue with the job id derived from the delivery id and ``unique=True``: RQ checks and enqueues
   in one Lua script, so of N concurrent copies exactly one becomes a job, the rest get
   DuplicateJobError (a duplicate too);
3. only then set the mark (7 days), which outlives the job hash RQ deletes after the result TTL.

A mark therefore never exists for a delivery that was not enqueued: if Redis fails at step 2 the
webhook answers 503 with nothing recorded, and Zendesk's retry is accepted. If it fails at step 3
the job is queued anyway; we answer 202 and only lose the long-term dedupe, which the job's own
ledger in the store covers (a processed delivery is skipped). The alternative, mark first with
SET NX and delete it when the enqueue fails, has a window where the delete fails too and the
delivery is lost for good; this order has none.

Without Redis (inline), the store's unique (source, delivery_id) is the dedupe: record, then run.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from connector.http.events import AcceptOutcome, InboundEvent
from worker.queue import REDIS_ERRORS, InlineQueue, QueueUnavailable, RedisQueue, job_id_for
from worker.store import Store

log = logging.getLogger(__name__)

DEDUPE_TTL_SECONDS = 7 * 24 * 3600
MARK_PREFIX = "escalate:delivery:"


def describe_event(event: InboundEvent) -> str:
    """The job description `escalate jobs failed` shows."""
    subject = f"ticket {event.ticket_id}" if event.ticket_id is not None else f"issue {event.issue_key}"
    return f"{event.source.value} {event.kind.value} {subject} (delivery {event.delivery_id})"


class RedisIntake:
    def __init__(self, queue: RedisQueue, *, dedupe_ttl: int = DEDUPE_TTL_SECONDS) -> None:
        self.queue = queue
        self.dedupe_ttl = dedupe_ttl

    def accept(self, event: InboundEvent) -> AcceptOutcome:
        job_id = job_id_for(event.source.value, event.delivery_id)
        mark = MARK_PREFIX + job_id
        redis = self.queue.connection
        try:
            if redis.exists(mark):
                return AcceptOutcome.DUPLICATE
        except REDIS_ERRORS as exc:
            raise QueueUnavailable(f"redis unavailable: {exc}") from exc
        enqueued = self.queue.submit(event.to_dict(), job_id, describe_event(event))
        try:
            redis.set(mark, job_id, ex=self.dedupe_ttl)
        except RedisError:
            log.warning("job %s queued but its dedupe mark was not written", job_id, exc_info=True)
        return AcceptOutcome.ENQUEUED if enqueued else AcceptOutcome.DUPLICATE


class InlineIntake:
    def __init__(self, store: Store, queue: InlineQueue) -> None:
        self.store = store
        self.queue = queue

    def accept(self, event: InboundEvent) -> AcceptOutcome:
        source = event.source.value
        try:
            recorded = self.store.record_delivery(
                source, event.delivery_id, kind=event.kind.value, subject=event.subject
            )
        except SQLAlchemyError as exc:
            # Inline, the database is the queue: when it cannot record, the sender should retry.
            raise QueueUnavailable(f"database unavailable: {type(exc).__name__}") from exc
        if not recorded:
            return AcceptOutcome.DUPLICATE
        try:
            self.queue.submit(event.to_dict(), job_id_for(source, event.delivery_id), describe_event(event))
        except Exception:
            # Not queued, so not seen: the sender's retry must be accepted.
            self.store.forget_delivery(source, event.delivery_id)
            raise
        return AcceptOutcome.ENQUEUED
