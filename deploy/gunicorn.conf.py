"""Gunicorn settings for the Escalate web process.

    gunicorn -c deploy/gunicorn.conf.py "worker.app:create_app()"

Environment: ESCALATE_BIND (default 0.0.0.0:$PORT, PORT default 8000), WEB_CONCURRENCY (workers),
FORWARDED_ALLOW_IPS (the proxy in front; default 127.0.0.1), ESCALATE_ACCESS_LOG (default on), plus
the service's own settings (DESIGN.md, "Configuration").

The figures below are from bench/bench_intake.py on a 2-core machine.
"""

from __future__ import annotations

import multiprocessing
import os

bind = os.environ.get("ESCALATE_BIND") or f"0.0.0.0:{os.environ.get('PORT', '8000')}"

# A webhook is CPU work (HMAC, JSON, building the job) plus one Redis round trip of well under a
# millisecond, so one process per core and a spare keeps the cores busy. The usual 2 x CPU + 1 only
# adds processes taking turns on the same cores: on 2 cores, 5 sync workers served 1,700-1,850
# webhooks/s at ~940 us of CPU each, p99.9 ~170 ms; 3 served ~1,950/s at ~820 us, p99.9 ~33 ms. Capped
# so a big host does not open dozens of database connections. The sidebar's first look at a ticket
# waits on Zendesk and holds its process meanwhile: if agents' sidebars queue, raise WEB_CONCURRENCY.
workers = int(os.environ.get("WEB_CONCURRENCY") or min(multiprocessing.cpu_count() + 1, 8))
# Sync workers (behind a buffering proxy): with them `timeout` really bounds a request, which the
# threaded workers' heartbeat does not. gthread's keep-alive saves a TCP handshake per request but
# gained nothing here (2 x 4 and 3 x 2 threads: 1,840-1,950/s) and its tail was worse (p99 21-27 ms
# against 12-16 ms): a connection stays with one process, whose threads take turns on the GIL.
worker_class = "sync"

# Zendesk gives up on a webhook after about 12 s and then retries it. A request still running at
# 10 s is stuck (the Redis client gives up within a few seconds and the webhook answers 503):
# kill it before Zendesk's deadline, not after.
timeout = 10
graceful_timeout = 20

# The webhook endpoints cap bodies at 1 MiB themselves; these refuse absurd request lines/headers.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190

forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# Heartbeat files on tmpfs: a slow container disk must not make the arbiter kill healthy workers.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None

# One line per request on stdout, through the service's JSON formatter and secret scrubber: about 70 us
# of a webhook's ~830 us of CPU with gunicorn's own logger (2,030-2,060 webhooks/s without it against
# 1,750-1,950 with it, on 2 cores). The logger_class below builds the line in half the time (40 us
# against 84-112 us, on a slower core where a webhook costs about 1.8 ms). Now that a webhook skips Flask's
# request handling the line is about a fifth of it (on 2 cores: 1,978 webhooks/s without it against 1,664
# with it, at ~790 and ~990 us of CPU a webhook). ESCALATE_ACCESS_LOG=off turns
# it off where the CPU matters more than the line; say so in the deployment's notes. What remains: every
# webhook outcome is still counted (escalate_webhooks_total{outcome}, escalate_webhook_duration_seconds)
# and the service still logs bad signatures, stale timestamps, duplicates, ignored events and 503s;
# accepted deliveries, the other 400/401/413 answers and the sidebar's requests then leave no line.
_ACCESS_LOG_OFF = os.environ.get("ESCALATE_ACCESS_LOG", "on").strip().lower() in ("0", "off", "false", "no")
accesslog = None if _ACCESS_LOG_OFF else "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
# Never log query strings: the sidebar's first load may carry a signed token.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss'
# gunicorn's logger, building only the atoms the format above names (worker/access_log.py).
logger_class = "worker.access_log.AccessLogger"


def on_starting(server: object) -> None:
    """Migrate once in the arbiter, before any worker starts, so workers never race on DDL.

    Workers still call the (then no-op) upgrade from create_app; ESCALATE_AUTO_MIGRATE=0 turns both
    off for deployments that migrate as a separate release step (`escalate db upgrade`).
    """
    from worker.config import Settings
    from worker.store import Store

    settings = Settings.from_env()
    if not settings.auto_migrate:
        return
    store = Store.from_url(settings.database_url)
    try:
        store.upgrade()
    finally:
        # No connection may survive into the forked workers.
        store.dispose()
