"""The app factory, its health checks and the settings it is built from."""

from __future__ import annotations

import pytest

from tests.conftest_service import make_settings, service_of
from worker.app import build_service, create_app
from worker.config import DEFAULT_DATABASE_URL, Settings
from worker.intake import InlineIntake, RedisIntake
from worker.queue import InlineQueue, RedisQueue
from worker.store import TicketRef


def test_settings_defaults_mean_sqlite_and_inline():
    settings = Settings.from_env({})
    assert settings.database_url == DEFAULT_DATABASE_URL == "sqlite:///var/escalate.sqlite3"
    assert settings.redis_url is None and settings.inline
    assert settings.queue_name == "escalate"
    assert settings.auto_migrate


def test_settings_read_every_documented_variable():
    env = {name: f"value-of-{name}" for name in Settings.ENV_NAMES.values()}
    env["ESCALATE_AUTO_MIGRATE"] = "0"
    settings = Settings.from_env(env)
    assert settings.zendesk_url == "value-of-ZENDESK_URL"
    assert settings.jira_webhook_secret == "value-of-JIRA_WEBHOOK_SECRET"
    assert settings.rules_path == "value-of-ESCALATE_RULES"
    assert settings.auto_migrate is False
    assert set(Settings.ENV_NAMES.values()) >= {
        "ZENDESK_URL",
        "ZENDESK_EMAIL",
        "ZENDESK_API_TOKEN",
        "ZENDESK_WEBHOOK_SECRET",
        "JIRA_URL",
        "JIRA_EMAIL",
        "JIRA_API_TOKEN",
        "JIRA_WEBHOOK_SECRET",
        "REDIS_URL",
        "DATABASE_URL",
        "ESCALATE_RULES",
    }


def test_empty_variables_count_as_unset():
    assert Settings.from_env({"REDIS_URL": "  ", "DATABASE_URL": ""}) == Settings()


def test_secrets_stay_out_of_repr_and_the_redacted_view():
    settings = Settings.from_env(
        {
            "ZENDESK_API_TOKEN": "zd-token",
            "ZENDESK_WEBHOOK_SECRET": "zd-secret",
            "JIRA_API_TOKEN": "j-token",
            "JIRA_WEBHOOK_SECRET": "j-secret",
            "REDIS_URL": "redis://:r-pass@cache:6379/0",
            "DATABASE_URL": "postgresql://app:db-pass@db/escalate",
        }
    )
    shown = repr(settings) + repr(settings.redacted())
    for secret in ("zd-token", "zd-secret", "j-token", "j-secret", "r-pass", "db-pass"):
        assert secret not in shown
    assert settings.redacted()["DATABASE_URL"] == "postgresql://app:***@db/escalate"
    assert settings.redacted()["ZENDESK_WEBHOOK_SECRET"] == "<set>"


def test_inline_and_redis_services(tmp_path, redis_url):
    inline = build_service(make_settings(tmp_path))
    assert isinstance(inline.queue, InlineQueue) and isinstance(inline.intake, InlineIntake)
    redis = build_service(make_settings(tmp_path, redis_url=redis_url))
    assert isinstance(redis.queue, RedisQueue) and isinstance(redis.intake, RedisIntake)
    assert redis.queue.name == "escalate"
    for service in (inline, redis):
        service.store.dispose()


def test_the_factory_migrates_and_registers_the_endpoints(app):
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    assert {"/healthz", "/readyz", "/metrics"} <= rules
    # The webhooks are mounted in front of Flask: unsigned posts reach them and are refused.
    client = app.test_client()
    for path in ("/webhooks/zendesk", "/webhooks/jira"):
        refused = client.post(path, data=b"{}", headers={"Content-Type": "application/json"})
        assert (refused.status_code, refused.get_json()["error"]) == (401, "missing signature")
    service_of(app).store.ping()
    assert service_of(app).store.latest_assessment(TicketRef.zendesk(1)) is None  # the schema is there


@pytest.mark.parametrize("path", ["/webhooks/zendesk", "/webhooks/jira"])
def test_webhooks_take_only_post(client, path):
    from worker.metrics import WEBHOOKS

    source = path.rsplit("/", 1)[-1]
    counted = {o: WEBHOOKS.labels(source, o)._value.get() for o in ("error", "unauthorized")}
    answer = client.get(path)
    assert (answer.status_code, answer.headers["Allow"]) == (405, "POST")
    assert client.post(path + "/below", data=b"{}").status_code == 404
    assert client.post(path, data=b"{}").status_code == 401
    # A GET is no delivery; the unsigned POST is one, refused.
    assert WEBHOOKS.labels(source, "error")._value.get() == counted["error"]
    assert WEBHOOKS.labels(source, "unauthorized")._value.get() == counted["unauthorized"] + 1


def test_health_and_readiness(client, app):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"]["database"] == "ok"


def test_readiness_fails_without_the_database(tmp_path):
    settings = make_settings(
        tmp_path, database_url="postgresql://nobody@127.0.0.1:1/none", auto_migrate=False
    )
    client = create_app(settings).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["database"].startswith("error")
    assert client.get("/healthz").status_code == 200  # alive, just not ready
