"""The RQ worker classes `escalate worker` runs: RQ's own, with fewer heartbeats per job.

RQ's worker loop renews its key (``heartbeat``: HSET and two EXPIREs, three round trips) before it
dequeues, after it dequeues and after each job: nine round trips a job, one in four of the Redis
commands a worker sends when jobs are short (bench/bench_pipeline.py, steady mode, py-spy). A heartbeat
that would move the key's expiry by less than ``HEARTBEAT_SLACK`` seconds is skipped here: the key then
lives at most that much less than RQ asked for, on a TTL of minutes. A heartbeat inside a pipeline (RQ
sets the job's timeout there) is never skipped, and one that asks for a later expiry always goes out.
"""

from __future__ import annotations

import time
from typing import Any

from rq import SimpleWorker, Worker

HEARTBEAT_SLACK = 1.0


class ThrottledHeartbeat:
    """Skips a heartbeat that would change nothing that matters (see the module's docstring)."""

    worker_ttl: int
    # The earliest the worker's key can expire, by the heartbeats sent (monotonic clock).
    _alive_until = 0.0

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        wanted = time.monotonic() + (timeout or self.worker_ttl + 60)
        if pipeline is None and wanted - self._alive_until < HEARTBEAT_SLACK:
            return
        super().heartbeat(timeout, pipeline)  # type: ignore[misc]
        # A pipeline's expiry may be shorter than the last one, and lands only if the pipeline runs:
        # count the earlier of the two.
        self._alive_until = wanted if pipeline is None else min(self._alive_until, wanted)


class EscalateSimpleWorker(ThrottledHeartbeat, SimpleWorker):
    """Jobs in the worker's own process (the default)."""


class EscalateWorker(ThrottledHeartbeat, Worker):
    """A fork per job (`escalate worker --fork`)."""
