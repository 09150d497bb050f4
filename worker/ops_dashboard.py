"""The queue dashboard: RQ's own rq-dashboard when it is installed, else a one-page read-only view;
either way behind HTTP Basic authentication and read-only unless told otherwise.

``create_dashboard()`` returns a WSGI app, so it can run on its own (`escalate dashboard`), under
gunicorn (``gunicorn "worker.ops_dashboard:create_dashboard()"``), or be mounted beside the service with
werkzeug's ``DispatcherMiddleware``. Keep it off the internet-facing address the webhooks use: the jobs
it shows carry ticket contents.

rq-dashboard 0.9.0 was checked against rq 3.0 and Flask 3.1 (queues, workers, job lists and job pages
all answer); it is optional (``pip install rq-dashboard``) because it brings arrow, six and
redis-sentinel-url with it.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, jsonify, render_template_string, request

from worker.config import Settings

READ_METHODS = ("GET", "HEAD", "OPTIONS")


class DashboardError(Exception):
    """The dashboard cannot start; the message says which setting to fix."""


def create_dashboard(
    settings: Settings | None = None, *, allow_actions: bool = False, environ: Mapping[str, str] | None = None
) -> Flask:
    env = os.environ if environ is None else environ
    settings = settings or Settings.from_env(env)
    if settings.redis_url is None:
        raise DashboardError("REDIS_URL is not set: inline mode has no queue to show")
    password = (env.get("ESCALATE_DASHBOARD_PASSWORD") or "").strip()
    if len(password) < 12:
        raise DashboardError("set ESCALATE_DASHBOARD_PASSWORD (12 characters or more) to start the dashboard")
    user = (env.get("ESCALATE_DASHBOARD_USER") or "admin").strip()

    app = Flask("escalate_dashboard")
    app.config["ESCALATE_DASHBOARD_KIND"] = _mount_rq_dashboard(app, settings) or "built-in"
    if app.config["ESCALATE_DASHBOARD_KIND"] == "built-in":
        _mount_builtin(app, settings)

    @app.before_request
    def _guard() -> Response | None:
        auth = request.authorization
        given_user = (auth.username or "") if auth else ""
        given_password = (auth.password or "") if auth else ""
        user_ok = hmac.compare_digest(given_user.encode(), user.encode())
        password_ok = hmac.compare_digest(given_password.encode(), password.encode())
        if not (user_ok and password_ok):
            return Response(
                "authentication required\n",
                401,
                {"WWW-Authenticate": 'Basic realm="Escalate queue", charset="UTF-8"'},
            )
        if request.method not in READ_METHODS and not allow_actions:
            return Response("read-only dashboard (start it with --allow-actions to change jobs)\n", 403)
        return None

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    return app


def _mount_rq_dashboard(app: Flask, settings: Settings) -> str | None:
    try:
        import rq_dashboard
    except ImportError:
        return None
    app.config.from_object(rq_dashboard.default_settings)
    app.config["RQ_DASHBOARD_REDIS_URL"] = settings.redis_url
    rq_dashboard.web.setup_rq_connection(app)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix="/")
    return "rq-dashboard"


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Escalate queue</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;color:#2f3941}
table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #d8dcde;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f8f9f9}
.muted{color:#68737d}</style></head><body>
<h1>Queue “{{ s.queue }}”</h1>
{% if s.error %}<p><strong>Redis does not answer:</strong> {{ s.error }}</p>{% else %}
<p class="muted">Read at {{ s.at }}. The oldest waiting job has waited {{ '%.0f' % s.oldest_age }} s.</p>
<table><tr>{% for k in s.counts %}<th>{{ k }}</th>{% endfor %}</tr>
<tr>{% for v in s.counts.values() %}<td>{{ v }}</td>{% endfor %}</tr></table>
<h2>Workers ({{ s.workers|length }})</h2>
<table><tr><th>name</th><th>state</th><th>current job</th><th>last heartbeat</th></tr>
{% for w in s.workers %}<tr><td>{{ w.name }}</td><td>{{ w.state }}</td><td>{{ w.job or '' }}</td>
<td>{{ w.heartbeat or '' }}</td></tr>{% endfor %}</table>
<h2>Failed jobs ({{ s.failed|length }} newest)</h2>
<p class="muted">Requeue from a shell: <code>escalate jobs requeue JOB_ID</code> or <code>--all</code>.</p>
<table><tr><th>job</th><th>failed at</th><th>what</th><th>reason</th></tr>
{% for j in s.failed %}<tr><td>{{ j.id }}</td><td>{{ j.failed_at or '' }}</td><td>{{ j.description }}</td>
<td>{{ j.reason }}</td></tr>{% endfor %}</table>{% endif %}
</body></html>"""


def queue_status(settings: Settings, failed_limit: int = 50) -> dict[str, Any]:
    """What the built-in page and its JSON show: counts by state, the oldest wait, workers, failures."""
    from rq import Queue, Worker

    from worker.cli_jobs import failed_jobs
    from worker.metrics import oldest_job_age, queue_counts
    from worker.queue import redis_connection

    assert settings.redis_url is not None
    status: dict[str, Any] = {
        "queue": settings.queue_name,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        queue = Queue(settings.queue_name, connection=redis_connection(settings.redis_url))
        status["counts"] = queue_counts(queue)
        status["oldest_age"] = oldest_job_age(queue)
        status["workers"] = [
            {
                "name": w.name,
                "state": str(w.get_state()),
                "job": w.get_current_job_id(),
                "heartbeat": w.last_heartbeat.isoformat(timespec="seconds") if w.last_heartbeat else None,
            }
            for w in Worker.all(queue=queue)
        ]
        status["failed"] = failed_jobs(queue, failed_limit)
    except Exception as exc:
        status["error"] = type(exc).__name__
    return status


def _mount_builtin(app: Flask, settings: Settings) -> None:
    @app.get("/")
    def page() -> str:
        return render_template_string(_PAGE, s=queue_status(settings))

    @app.get("/status.json")
    def status() -> Response:
        return jsonify(queue_status(settings))
