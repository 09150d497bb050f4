"""`escalate doctor`, `escalate metrics serve` and `escalate dashboard`: the operator's commands.

The main CLI calls ``register(subparsers)``; every command sets ``func``, called with the parsed
arguments and returning the exit status.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

LEVEL_MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
# An idle RQ worker renews its registration about every 7 minutes (its worker_ttl is 420 s).
WORKER_HEARTBEAT_MAX_AGE = 600.0


def register(subparsers: Any) -> None:
    doctor = subparsers.add_parser(
        "doctor",
        help="check configuration, credentials and connectivity (Zendesk, Jira, Redis, database)",
        description="Reads the environment like the service does and says, in words, what will not work.",
    )
    doctor.add_argument("--json", action="store_true", help="one JSON object per finding")
    doctor.add_argument("--offline", action="store_true", help="skip the calls to Zendesk and Jira")
    doctor.add_argument("--timeout", type=float, default=5.0, help="seconds per network check (default 5)")
    doctor.set_defaults(func=cmd_doctor)

    metrics = subparsers.add_parser("metrics", help="serve Prometheus metrics for worker-only machines")
    metrics_commands = metrics.add_subparsers(dest="metrics_command", required=True, metavar="COMMAND")
    serve = metrics_commands.add_parser(
        "serve",
        help="serve /metrics from PROMETHEUS_MULTIPROC_DIR (a worker pod's sidecar, a worker machine)",
    )
    serve.add_argument("--bind", default="0.0.0.0:9102", help="address:port (default 0.0.0.0:9102)")
    serve.add_argument(
        "--with-queue", action="store_true", help="add the queue depth and age gauges (reads REDIS_URL)"
    )
    serve.set_defaults(func=cmd_metrics_serve)

    dashboard = subparsers.add_parser(
        "dashboard",
        help="a read-only queue dashboard behind a password (rq-dashboard when installed)",
        description="Needs REDIS_URL and ESCALATE_DASHBOARD_PASSWORD (user: ESCALATE_DASHBOARD_USER, "
        "default 'admin'). Listens on localhost by default: reach it through SSH or an internal proxy.",
    )
    dashboard.add_argument("--bind", default="127.0.0.1:9181", help="address:port (default 127.0.0.1:9181)")
    dashboard.add_argument(
        "--allow-actions",
        action="store_true",
        help="let rq-dashboard requeue and delete jobs (default: read-only)",
    )
    dashboard.set_defaults(func=cmd_dashboard)

    probe = subparsers.add_parser("probe", help="health probes for process managers (Kubernetes, compose)")
    probe_commands = probe.add_subparsers(dest="probe_command", required=True, metavar="WHAT")
    worker = probe_commands.add_parser(
        "worker",
        help="exit 0 while this host's RQ worker keeps its heartbeat in Redis (or Redis is down)",
    )
    worker.add_argument(
        "--max-age", type=float, default=WORKER_HEARTBEAT_MAX_AGE, help="seconds a heartbeat stays fresh"
    )
    worker.set_defaults(func=cmd_probe_worker)


# -- doctor -------------------------------------------------------------------------------------


def cmd_doctor(args: argparse.Namespace) -> int:
    from worker import doctor, logging_setup
    from worker.config import Settings

    settings = Settings.from_env()
    logging_setup.SCRUBBER.add_settings(settings)  # nothing printed here may carry a secret
    findings = doctor.run(settings, network=not args.offline, timeout=args.timeout)
    for finding in findings:
        message = logging_setup.SCRUBBER.scrub(finding.message)
        if args.json:
            print(json.dumps({**finding.as_dict(), "message": message}))
        else:
            print(f"{LEVEL_MARK.get(finding.level, finding.level)}  {finding.area:<13} {message}")
    failed = sum(f.level == "fail" for f in findings)
    warned = sum(f.level == "warn" for f in findings)
    if not args.json:
        verdict = "ready" if not failed else f"{failed} problem(s) to fix"
        print(f"\n{verdict}; {warned} warning(s).")
    return 1 if failed else 0


# -- metrics ------------------------------------------------------------------------------------


def split_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"escalate: --bind {bind!r} is not address:port")
    return host.strip("[]"), int(port)


def cmd_metrics_serve(args: argparse.Namespace) -> int:
    import os

    from prometheus_client import make_wsgi_app
    from werkzeug.serving import make_server

    from connector.metrics import multiprocess_dir
    from worker import logging_setup
    from worker.config import Settings
    from worker.metrics import TOKEN_ENV, authorized, build_registry

    settings = Settings.from_env()
    logging_setup.configure(settings)
    if multiprocess_dir() is None:
        print("PROMETHEUS_MULTIPROC_DIR is not set: there is nothing to serve from here.", file=sys.stderr)
        return 2
    queue = None
    if args.with_queue:
        if settings.redis_url is None:
            print("--with-queue needs REDIS_URL.", file=sys.stderr)
            return 2
        from worker.queue import RedisQueue

        queue = RedisQueue.from_url(settings.redis_url, settings.queue_name)
    exposition = make_wsgi_app(build_registry(queue))
    token = os.environ.get(TOKEN_ENV)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        if not authorized(environ.get("HTTP_AUTHORIZATION"), token):
            start_response("401 Unauthorized", [("WWW-Authenticate", "Bearer")])
            return [b"metrics need a bearer token\n"]
        return exposition(environ, start_response)

    host, port = split_bind(args.bind)
    server = make_server(host, port, app, threaded=True)
    print(f"serving metrics from {multiprocess_dir()} on http://{args.bind}/metrics", file=sys.stderr)
    server.serve_forever()
    return 0


# -- dashboard ----------------------------------------------------------------------------------


def cmd_dashboard(args: argparse.Namespace) -> int:
    from werkzeug.serving import make_server

    from worker.config import Settings
    from worker.ops_dashboard import DashboardError, create_dashboard

    try:
        app = create_dashboard(Settings.from_env(), allow_actions=args.allow_actions)
    except DashboardError as exc:
        print(f"escalate: {exc}", file=sys.stderr)
        return 2
    host, port = split_bind(args.bind)
    server = make_server(host, port, app, threaded=True)
    print(
        f"queue dashboard ({app.config['ESCALATE_DASHBOARD_KIND']}) on http://{args.bind}/", file=sys.stderr
    )
    server.serve_forever()
    return 0


# -- probes -------------------------------------------------------------------------------------


def cmd_probe_worker(args: argparse.Namespace) -> int:
    """Liveness of `escalate worker` on this host: a worker registered from this hostname, heartbeat fresh.

    A Redis outage passes (restarting the worker would not bring Redis back); a worker that stopped
    beating, or never registered, fails.
    """
    import socket
    from datetime import UTC, datetime

    from rq import Worker

    from worker.config import Settings
    from worker.queue import REDIS_ERRORS, redis_connection

    settings = Settings.from_env()
    if settings.redis_url is None:
        print("REDIS_URL is not set: there is no worker to probe", file=sys.stderr)
        return 1
    host = socket.gethostname()
    try:
        mine = [w for w in Worker.all(connection=redis_connection(settings.redis_url)) if w.hostname == host]
    except REDIS_ERRORS as exc:
        print(f"Redis unreachable ({type(exc).__name__}): not this worker's fault; passing")
        return 0
    if not mine:
        print(f"no RQ worker registered from {host}", file=sys.stderr)
        return 1
    beats = [w.last_heartbeat for w in mine if w.last_heartbeat is not None]
    newest = max(beats) if beats else None
    if newest is None:
        print(f"the worker on {host} has no heartbeat yet", file=sys.stderr)
        return 1
    age = (datetime.now(UTC) - (newest if newest.tzinfo else newest.replace(tzinfo=UTC))).total_seconds()
    if age > args.max_age:
        print(f"the worker on {host} last beat {age:.0f}s ago (limit {args.max_age:.0f}s)", file=sys.stderr)
        return 1
    print(f"worker on {host} alive (heartbeat {age:.0f}s ago)")
    return 0
