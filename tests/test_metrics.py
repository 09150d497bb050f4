"""GET /metrics after real traffic, and the health checks an orchestrator acts on.

Real traffic: signed webhooks into the app (Redis mode), then the queued jobs run by an RQ worker in this
process through the real pipeline against the sandbox Zendesk and Jira, one of them rate limited by the
sandbox and one for a ticket that does not exist. Metrics are process-wide counters, so the assertions
compare a scrape before with a scrape after.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rq import SimpleWorker

from connector.http.zendesk_webhook import TRIGGER_EVENT_TYPE
from tests.conftest_service import (
    JIRA_SECRET,
    ZENDESK_SECRET,
    as_body,
    jira_headers,
    make_settings,
    sandbox_connector_settings,
    service_of,
    zendesk_headers,
)
from worker import jobs
from worker.app import create_app

FAMILIES = (
    "escalate_webhooks",
    "escalate_webhook_duration_seconds",
    "escalate_queue_jobs",
    "escalate_queue_oldest_job_age_seconds",
    "escalate_queue_workers",
    "escalate_queue_up",
    "escalate_jobs",
    "escalate_job_duration_seconds",
    "escalate_job_failures",
    "escalate_decisions",
    "escalate_connector_calls",
    "escalate_connector_call_duration_seconds",
    "escalate_rate_limit_waits",
    "escalate_rate_limit_wait_seconds",
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: Any, **headers: str) -> tuple[set[str], Samples]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.data
    assert response.mimetype == "text/plain"
    families, samples = set(), {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        families.add(family.name)
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return families, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def lexical_rules(tmp_path: Path) -> str:
    """The shipped rules with the lexical matcher (no model to load) and the sandbox's L2 group."""
    text = Path("rules/default_rules.yaml").read_text(encoding="utf-8")
    text = text.replace("  matcher: auto ", "  matcher: lexical ", 1).replace(
        "{group_id: null}", "{group_id: 2}", 1
    )
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture
def live_app(tmp_path, redis_url, sandbox_state, monkeypatch) -> Iterator[Any]:
    """The app on Redis with the real pipeline; the worker-side settings in the environment, as an RQ
    worker process would have them."""
    env = sandbox_state.environment()
    rules = lexical_rules(tmp_path)
    settings = make_settings(
        tmp_path,
        redis_url=redis_url,
        **sandbox_connector_settings(sandbox_state),
        rules_path=rules,
    )
    for name, val in {
        **env,
        "REDIS_URL": redis_url,
        "DATABASE_URL": settings.database_url,
        "ESCALATE_RULES": rules,
        "ESCALATE_QUEUE": settings.queue_name,
    }.items():
        monkeypatch.setenv(name, val)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("ESCALATE_METRICS_TOKEN", raising=False)
    monkeypatch.setattr(jobs, "_context", None)
    app = create_app(settings)
    yield app
    service_of(app).store.dispose()


def zendesk_delivery(client: Any, ticket_id: int | str, delivery: str, **kwargs: Any) -> int:
    body = as_body({"type": TRIGGER_EVENT_TYPE, "ticket_id": str(ticket_id)})
    return client.post(
        "/webhooks/zendesk", data=body, headers=zendesk_headers(body, invocation_id=delivery, **kwargs)
    ).status_code


@pytest.mark.slow
def test_metrics_expose_every_family_after_real_traffic(live_app, sandbox_state, redis_url):
    client = live_app.test_client()
    _, before = scrape(client)

    # Webhooks: accepted, duplicate, unauthorized, malformed, ignored; Jira too.
    assert zendesk_delivery(client, 101, "m-101") == 202  # outage: the sandbox will rate-limit it
    assert zendesk_delivery(client, 102, "m-102") == 202  # security report: escalates automatically
    assert zendesk_delivery(client, 104, "m-104") == 202  # how-to question: stays in support
    assert zendesk_delivery(client, 99999, "m-missing") == 202  # no such ticket: fails permanently
    assert zendesk_delivery(client, 101, "m-101") == 200  # Zendesk's retry of a delivery we have
    assert zendesk_delivery(client, 104, "m-forged", secret="not-the-secret") == 401
    bad = b"{not json"
    assert client.post("/webhooks/zendesk", data=bad, headers=zendesk_headers(bad)).status_code == 400
    comment = as_body(
        {"webhookEvent": "comment_created", "issue": {"key": "ENG-404"}, "comment": {"id": "1"}}
    )
    assert (
        client.post(
            "/webhooks/jira", data=comment, headers=jira_headers(comment, identifier="m-j1")
        ).status_code
        == 202
    )
    other = as_body({"webhookEvent": "worklog_updated", "issue": {"key": "ENG-1"}})
    assert (
        client.post("/webhooks/jira", data=other, headers=jira_headers(other, identifier="m-j2")).status_code
        == 200
    )
    assert JIRA_SECRET and ZENDESK_SECRET

    time.sleep(1.1)  # so the oldest job's age is visibly above zero
    families, queued = scrape(client)
    assert value(queued, "escalate_queue_jobs", state="queued") == 5
    assert value(queued, "escalate_queue_oldest_job_age_seconds") >= 1
    assert value(queued, "escalate_queue_up") == 1
    assert value(queued, "escalate_queue_workers") == 0

    delta = _delta(before, queued)
    assert delta("escalate_webhooks_total", source="zendesk", outcome="accepted") == 4
    assert delta("escalate_webhooks_total", source="zendesk", outcome="duplicate") == 1
    assert delta("escalate_webhooks_total", source="zendesk", outcome="unauthorized") == 1
    assert delta("escalate_webhooks_total", source="zendesk", outcome="malformed") == 1
    assert delta("escalate_webhooks_total", source="jira", outcome="accepted") == 1
    assert delta("escalate_webhooks_total", source="jira", outcome="ignored") == 1
    assert delta("escalate_webhook_duration_seconds_count", source="zendesk") == 7

    # The first call to Zendesk answers 429 with Retry-After: 30.
    sandbox_state.zendesk_state.faults.rate_limit(retry_after=30, count=1, prefix="/api/v2/tickets")
    queue = service_of(live_app).queue.rq
    SimpleWorker([queue], connection=Redis.from_url(redis_url)).work(burst=True, with_scheduler=False)

    families, after = scrape(client)
    assert set(FAMILIES) <= families, sorted(set(FAMILIES) - families)
    delta = _delta(before, after)
    assert delta("escalate_jobs_total", kind="evaluate_ticket", outcome="processed") == 2
    assert delta("escalate_jobs_total", kind="evaluate_ticket", outcome="rate_limited") == 1
    assert delta("escalate_jobs_total", kind="evaluate_ticket", outcome="failed_permanent") == 1
    assert delta("escalate_jobs_total", kind="issue_commented", outcome="processed") == 1
    assert delta("escalate_job_failures_total", kind="evaluate_ticket", error="NotFoundError") == 1
    assert delta("escalate_job_duration_seconds_count") == 5
    assert delta("escalate_decisions_total", escalate="true", destination="security") == 1
    assert delta("escalate_decisions_total", escalate="false", destination="none", severity="none") == 1
    assert delta("escalate_connector_calls_total", service="zendesk", status="200") > 0
    assert delta("escalate_connector_calls_total", service="zendesk", status="404") >= 1
    assert delta("escalate_connector_calls_total", service="zendesk", status="429") == 1
    assert delta("escalate_connector_calls_total", service="jira", method="POST", status="201") >= 1
    assert delta("escalate_connector_call_duration_seconds_count", service="jira") >= 1
    assert delta("escalate_rate_limit_waits_total", service="zendesk") == 1
    assert delta("escalate_rate_limit_wait_seconds_total", service="zendesk") == 30
    # The rate-limited job waits in the scheduled registry; the missing ticket's job is in failed.
    assert value(after, "escalate_queue_jobs", state="scheduled") == 1
    assert value(after, "escalate_queue_jobs", state="failed") == 1
    assert value(after, "escalate_queue_jobs", state="queued") == 0


def _delta(before: Samples, after: Samples):
    return lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)


# -- health -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_readyz_fails_while_redis_is_stopped_and_recovers(tmp_path, own_redis, fake_pipeline):
    app = create_app(make_settings(tmp_path, redis_url=own_redis.url))
    client = app.test_client()
    assert client.get("/readyz").status_code == 200
    assert client.get("/healthz").status_code == 200

    own_redis.stop()
    down = client.get("/readyz")
    assert down.status_code == 503
    assert down.get_json()["checks"]["redis"].startswith("error")
    assert down.get_json()["checks"]["database"] == "ok"
    assert client.get("/healthz").status_code == 200  # the process is fine: do not restart it
    _, samples = scrape(client)
    assert value(samples, "escalate_queue_up") == 0  # and the scrape itself still answers

    own_redis.start()
    deadline = time.monotonic() + 10
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "readyz did not recover after Redis came back"
        time.sleep(0.2)
    _, samples = scrape(client)
    assert value(samples, "escalate_queue_up") == 1
    service_of(app).store.dispose()


def test_metrics_can_require_a_token(inline_app, monkeypatch):
    monkeypatch.setenv("ESCALATE_METRICS_TOKEN", "a-long-metrics-token")
    client = inline_app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    scrape(client, Authorization="Bearer a-long-metrics-token")


def test_inline_mode_reports_its_own_queue(inline_app):
    families, samples = scrape(inline_app.test_client())
    assert "escalate_queue_jobs" in families
    assert ("escalate_queue_up", frozenset({("queue", "inline")})) in samples
