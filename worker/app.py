"""The app factory: settings in, a Flask app with the webhook endpoints and health checks out.

The service object (settings, store, queue, intake) lives in ``app.extensions["escalate"]``; the
sidebar's blueprint in ``connector.http`` finds it there, and the webhook endpoints are handed its
intake when they are mounted, which is how both delegate without importing the worker.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, Response, current_app, jsonify

from connector.http import jira_webhook, sidebar, zendesk_webhook
from connector.http.events import Intake
from connector.http.webhook_common import EXTENSION_KEY, WebhookEndpoint, WebhookRoutes
from worker import logging_setup, metrics  # issue 7: JSON logs without secrets; /metrics
from worker.config import Settings
from worker.intake import InlineIntake, RedisIntake
from worker.jobs import JobContext
from worker.queue import InlineQueue, RedisQueue
from worker.sidebar_backend import SidebarBackend
from worker.store import Store


@dataclass
class Service:
    settings: Settings
    store: Store
    queue: RedisQueue | InlineQueue
    intake: Intake

    def job_context(self) -> JobContext:
        return JobContext(settings=self.settings, store=self.store, queue=self.queue)

    def __post_init__(self) -> None:
        # What the agent's sidebar asks of the service; connector.http.sidebar finds it here.
        self.sidebar = SidebarBackend(self.job_context)


def build_service(settings: Settings, store: Store | None = None) -> Service:
    store = store or Store.from_url(settings.database_url)
    if settings.redis_url is None:
        # Inline: the jobs run in this process, against this process's store.
        holder: list[Service] = []
        inline = InlineQueue(lambda: holder[0].job_context())
        service = Service(settings, store, inline, InlineIntake(store, inline))
        holder.append(service)
        return service
    queue = RedisQueue.from_url(settings.redis_url, settings.queue_name)
    return Service(settings, store, queue, RedisIntake(queue))


def create_app(settings: Settings | None = None, *, service: Service | None = None) -> Flask:
    settings = settings or (service.settings if service else Settings.from_env())
    logging_setup.configure(settings)  # issue 7: JSON logs with ticket/delivery/job ids, secrets scrubbed
    service = service or build_service(settings)
    if settings.auto_migrate:
        service.store.upgrade()
    if settings.inline:
        from worker.followthrough import start_inline  # issue 6: follow-through checks on a timer thread

        start_inline(service)

    app = Flask("escalate")
    app.config.update(
        ZENDESK_WEBHOOK_SECRET=settings.zendesk_webhook_secret,
        JIRA_WEBHOOK_SECRET=settings.jira_webhook_secret,
        JSM_PROJECT_KEY=settings.jsm_project_key,
        # The webhook endpoints cap their own bodies at 1 MiB; this is the ceiling for the rest.
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
    )
    app.extensions[EXTENSION_KEY] = service

    app.register_blueprint(sidebar.bp)
    metrics.init_app(app, service.queue)  # issue 7: GET /metrics
    app.add_url_rule("/healthz", "healthz", healthz)
    app.add_url_rule("/readyz", "readyz", readyz)
    # The webhooks are WSGI endpoints in front of Flask, not views (connector/http/webhook_common.py
    # says why); their outcomes are counted and timed on the way out (issue 7).
    webhooks = {
        module.PATH: metrics.instrument_webhook(
            source, WebhookEndpoint(source, module.receive, app.config, service.intake)
        )
        for source, module in (("zendesk", zendesk_webhook), ("jira", jira_webhook))
    }
    app.wsgi_app = WebhookRoutes(app.wsgi_app, webhooks)  # type: ignore[method-assign]
    # A missing webhook secret is logged by its endpoint, once, when it refuses the first request.
    return app


def healthz() -> Response:
    """The process answers: for the load balancer's liveness check; touches nothing else."""
    return jsonify(status="ok")


def readyz() -> Response:
    """Ready when the database and (if configured) Redis answer; 503 otherwise, so traffic waits."""
    service: Service = current_app.extensions[EXTENSION_KEY]
    checks: dict[str, str] = {}
    try:
        service.store.ping()
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    if isinstance(service.queue, RedisQueue):
        try:
            service.queue.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
    else:
        checks["queue"] = "inline"
    ready = all(value in ("ok", "inline") for value in checks.values())
    response = jsonify(status="ready" if ready else "unavailable", checks=checks)
    response.status_code = 200 if ready else 503
    return response
