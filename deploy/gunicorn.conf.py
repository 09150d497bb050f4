"""Gunicorn settings for the Escalate web process.

    gunicorn -c deploy/gunicorn.conf.py "worker.app:create_app()"

Environment: ESCALATE_BIND (default 0.0.0.0:$PORT, PORT default 8000), WEB_CONCURRENCY (workers),
FORWARDED_ALLOW_IPS (the proxy in front; default 127.0.0.1), plus the service's own settings
(DESIGN.md, "Configuration").
"""

from __future__ import annotations

import multiprocessing
import os

bind = os.environ.get("ESCALATE_BIND") or f"0.0.0.0:{os.environ.get('PORT', '8000')}"

# The webhook handlers only verify and enqueue, so they are short: the usual 2 x CPU + 1, capped
# so a big host does not open dozens of database connections.
workers = int(os.environ.get("WEB_CONCURRENCY") or min(2 * multiprocessing.cpu_count() + 1, 8))
# Sync workers (behind a buffering proxy): with them `timeout` really bounds a request, which the
# threaded workers' heartbeat does not.
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

accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
# Never log query strings: the sidebar's first load may carry a signed token.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss'


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
