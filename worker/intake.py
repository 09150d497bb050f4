"""The intake: take a verified event, queue it exactly once per delivery, or say why not (503).

With Redis, "seen" and "queued" are written together, by one Lua script (one round trip; Redis runs a
script atomically, so no other command lands between its steps):

1. if the delivery's long-lived mark exists, it is a duplicate;
2. if the job (named after the delivery) exists, it is a duplicate too; the mark is written again,
   as it was queued: RQ keeps a failed job longer than the mark lives;
3. otherwise write the job's hash exactly as RQ serialises it (worker/queue.py ``queued_fields``),
   push its id on the queue, register the queue with RQ, and, last, set the mark (7 days), which
   outlives the job hash RQ deletes after the result TTL.

Of N concurrent copies of a delivery exactly one becomes a job: the scripts run one after another.
A mark never exists for a delivery that was not enqueued: it is the script's last write, so a script
that fails part-way (an error inside Redis; the webhook answers 500, as when RQ's own script failed)
leaves at most a job without its mark, whose own ledger in the store covers the long-term dedupe (a
processed delivery is skipped). If Redis cannot be reached the webhook answers 503 with nothing
recorded, and Zendesk's retry is accepted; if the answer is lost after the script ran, the retry
finds the mark and is a duplicate. The alternative, mark first with SET NX and delete it when the
enqueue fails, has a window where the delete fails too and the delivery is lost for good; this has
none.

Before this was one script the same steps took four round trips (EXISTS, RQ's queue registration,
RQ's unique-enqueue script, SET) and about 500 us of the web process's CPU per delivery; now one,
about 220 us (bench/bench_intake.py: 1,100 -> 1,900 webhooks/s on 2 cores, with the worker count).

Without Redis (inline), the store's unique (source, delivery_id) is the dedupe: record, then run.
"""

from __future__ import annotations

import logging

from rq.job import Job
from sqlalchemy.exc import SQLAlchemyError

from connector.http.events import AcceptOutcome, InboundEvent
from worker.queue import REDIS_ERRORS, InlineQueue, QueueUnavailable, RedisQueue, job_id_for
from worker.store import Store

log = logging.getLogger(__name__)

DEDUPE_TTL_SECONDS = 7 * 24 * 3600
MARK_PREFIX = "escalate:delivery:"

# Steps 1-3 of the module docstring. KEYS: the mark, the job hash, the queue, RQ's set of queues.
# ARGV: the job id, the mark's TTL, the job hash's TTL (-1: none), then the hash's field/value pairs.
# Returns 1 when it queued the job, 0 for a duplicate. The hash, expiry and push are what RQ's own
# unique enqueue does (rq/scripts.py), plus the SADD RQ otherwise sends in a transaction of its own.
ACCEPT_SCRIPT = """
if redis.call("EXISTS", KEYS[1]) == 1 then
    return 0
end
if redis.call("EXISTS", KEYS[2]) == 1 then
    redis.call("SET", KEYS[1], ARGV[1], "EX", ARGV[2])
    return 0
end
redis.call("HSET", KEYS[2], unpack(ARGV, 4))
if tonumber(ARGV[3]) > 0 then
    redis.call("EXPIRE", KEYS[2], ARGV[3])
end
redis.call("RPUSH", KEYS[3], ARGV[1])
redis.call("SADD", KEYS[4], KEYS[3])
redis.call("SET", KEYS[1], ARGV[1], "EX", ARGV[2])
return 1
"""


def describe_event(event: InboundEvent) -> str:
    """The job description `escalate jobs failed` shows."""
    subject = f"ticket {event.ticket_id}" if event.ticket_id is not None else f"issue {event.issue_key}"
    return f"{event.source.value} {event.kind.value} {subject} (delivery {event.delivery_id})"


class RedisIntake:
    def __init__(self, queue: RedisQueue, *, dedupe_ttl: int = DEDUPE_TTL_SECONDS) -> None:
        self.queue = queue
        self.dedupe_ttl = dedupe_ttl
        # EVALSHA, and the script's text only when Redis does not know it (first use, after a restart).
        self.script = queue.connection.register_script(ACCEPT_SCRIPT)

    def accept(self, event: InboundEvent) -> AcceptOutcome:
        job_id = job_id_for(event.source.value, event.delivery_id)
        keys = [MARK_PREFIX + job_id, Job.key_for(job_id), self.queue.rq.key, self.queue.rq.redis_queues_keys]
        fields = self.queue.queued_fields(event.to_dict(), describe_event(event))
        # -1: no TTL on the job hash, as RQ's enqueue of a job without one.
        args = [job_id, self.dedupe_ttl, -1, *fields]
        try:
            queued = self.script(keys=keys, args=args)
        except REDIS_ERRORS as exc:
            raise QueueUnavailable(f"redis unavailable: {exc}") from exc
        return AcceptOutcome.ENQUEUED if queued == 1 else AcceptOutcome.DUPLICATE


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
