"""Counts of the calls made to Zendesk and Jira, and the multi-process plumbing every Escalate metric shares.

This module lives in ``connector`` because the clients count their own calls and ``connector`` never
imports ``worker`` (DESIGN.md). The service's other families and the ``/metrics`` endpoint are in
``worker/metrics.py``, which imports this module first.

**Several processes, one set of numbers.** gunicorn runs several web processes and an RQ worker forks a
"work horse" per job, so a counter kept in one process's memory is lost or partial. With
``PROMETHEUS_MULTIPROC_DIR`` set, prometheus_client's multi-process mode writes every sample to a small
memory-mapped file per process in that directory, and whoever serves ``/metrics`` adds the files up
(``worker/metrics_dir.py``). Stock prometheus_client names those files after the pid; here each process
gets an identifier of its own (host, pid and a random token, so pids reused after a restart or repeated in
another container sharing the directory never collide) and holds an exclusive ``flock`` on a lock file
beside its samples for as long as it lives. The collector can therefore tell a finished work horse from a
running process, whatever PID namespace either is in, and fold the finished ones into an archive instead
of reading one more file per job forever.

Without ``PROMETHEUS_MULTIPROC_DIR`` (tests, ``escalate demo``, inline mode in one process) metrics live in
the process, in prometheus_client's default registry.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import socket
from collections.abc import Callable
from typing import IO, Any

from prometheus_client import Counter, Histogram, values

from connector.errors import DEFAULT_RETRY_AFTER, parse_retry_after

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# esc.<host>.<pid>.<token>: what names this process's files (``counter_<ident>.db``) and its lock
# (``<ident>.lock``). Anything else in the directory is not ours to fold away.
IDENT_RE = re.compile(r"esc\.[A-Za-z0-9-]{1,64}\.\d{1,10}\.[0-9a-f]{8}")
LOCK_SUFFIX = ".lock"

_this: dict[str, Any] = {"pid": None, "ident": None, "lock": None}


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def process_identifier() -> str:
    """This process's identifier, made (with its held lock file) on first use after a start or a fork.

    prometheus_client calls it on every update, so after the first call it is one ``getpid``.
    """
    pid = os.getpid()
    if _this["pid"] != pid:
        host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:64] or "host"
        ident = f"esc.{host}.{pid}.{secrets.token_hex(4)}"
        path = multiprocess_dir() or "."
        os.makedirs(path, exist_ok=True)
        final = os.path.join(path, ident + LOCK_SUFFIX)
        # Locked under a temporary name, then renamed: the lock file never exists unlocked, so the
        # collector cannot mistake a process that is just starting for one that has ended. Held until
        # this process exits (the kernel releases it then, even on SIGKILL); a forked child inherits the
        # descriptor, which only keeps its parent counted as alive while the child lives.
        lock: IO[str] = open(final + ".new", "w")  # noqa: SIM115
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(final + ".new", final)
        _this.update(pid=pid, ident=ident, lock=lock)
    return str(_this["ident"])


def _use_own_identifiers() -> None:
    """Switch prometheus_client's multi-process values to ``process_identifier``.

    Must run before any metric child is created: labelled metrics (all of ours) create their children
    on first ``.labels()``, which is always after this module's import.
    """
    path = multiprocess_dir()
    if path is None:
        return
    os.makedirs(path, exist_ok=True)
    values.ValueClass = values.MultiProcessValue(process_identifier=process_identifier)


_use_own_identifiers()


# -- calls to Zendesk and Jira ------------------------------------------------------------------

CALLS = Counter(
    "escalate_connector_calls",
    "HTTP calls to Zendesk and Jira that got an answer, by service, method and HTTP status",
    ["service", "method", "status"],
)
CALL_SECONDS = Histogram(
    "escalate_connector_call_duration_seconds",
    "Time from sending a call to Zendesk or Jira to its answer",
    ["service"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RATE_LIMIT_WAITS = Counter(
    "escalate_rate_limit_waits",
    "429 answers from Zendesk or Jira: each one makes a job wait (rescheduled, never a sleep)",
    ["service"],
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "escalate_rate_limit_wait_seconds",
    "Seconds of waiting the services asked for in Retry-After on their 429 answers",
    ["service"],
)


def count_response(service: str) -> Callable[..., Any]:
    """A ``requests`` response hook counting every answered call; install it before any hook that raises.

    Calls that get no answer (refused, timed out) never reach a response hook; they surface as the
    jobs' ``TransientError`` failures in ``escalate_job_failures_total``.
    """

    def hook(response: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            request = response.request
            method = (request.method if request is not None else None) or "?"
            CALLS.labels(service, method.upper(), str(response.status_code)).inc()
            if response.elapsed is not None:
                CALL_SECONDS.labels(service).observe(response.elapsed.total_seconds())
            if response.status_code == 429:
                wait = parse_retry_after(response.headers.get("Retry-After"))
                RATE_LIMIT_WAITS.labels(service).inc()
                RATE_LIMIT_WAIT_SECONDS.labels(service).inc(DEFAULT_RETRY_AFTER if wait is None else wait)
        except Exception:  # counting must never change what a call does
            pass
        return response

    return hook
