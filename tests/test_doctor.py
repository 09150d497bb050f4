"""`escalate doctor`: says what works and, in words, what does not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest_service import JIRA_SECRET, ZENDESK_SECRET, _spare_port
from tests.test_metrics import lexical_rules
from worker import doctor
from worker.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def good_env(sandbox, tmp_path: Path, redis_url: str | None = None, **overrides: str) -> dict[str, str]:
    env = {
        **sandbox.environment(),
        "ZENDESK_WEBHOOK_SECRET": ZENDESK_SECRET,
        "JIRA_WEBHOOK_SECRET": JIRA_SECRET * 2,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'doctor.sqlite3'}",
        "ESCALATE_RULES": lexical_rules(tmp_path),
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(overrides)
    return env


def check(env: dict[str, str], **kwargs) -> list[doctor.Finding]:
    return doctor.run(Settings.from_env(env), env, timeout=3, **kwargs)


def levels(findings: list[doctor.Finding], area: str) -> set[str]:
    return {f.level for f in findings if f.area == area}


def said(findings: list[doctor.Finding], area: str, level: str) -> str:
    return " | ".join(f.message for f in findings if f.area == area and f.level == level)


def test_a_working_installation_has_nothing_to_fix(sandbox_state, tmp_path, redis_url):
    env = good_env(sandbox_state, tmp_path, redis_url)
    from worker.store import Store

    store = Store.from_url(env["DATABASE_URL"])
    store.upgrade()
    store.dispose()
    findings = check(env)
    assert not [f for f in findings if f.level == "fail"], findings
    assert "signed in to" in said(findings, "zendesk", "ok")
    assert "(admin)" in said(findings, "zendesk", "ok") or "(agent)" in said(findings, "zendesk", "ok")
    assert "signed in to" in said(findings, "jira", "ok")
    assert "project ENG is there for engineering" in said(findings, "jira", "ok")
    assert "schema at the latest revision" in said(findings, "database", "ok")
    assert "answers (Redis" in said(findings, "redis", "ok")
    assert "the lexical matcher, as the rules ask" in said(findings, "matcher", "ok")
    # Nothing is running the queue in this test: it says so, and how to fix it.
    assert "no worker is listening" in said(findings, "queue", "warn")
    assert "escalate worker" in said(findings, "queue", "warn")
    assert "escalate followthrough cron" in said(findings, "queue", "warn")


def test_missing_configuration_is_named_variable_by_variable(tmp_path):
    findings = check({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}"})
    failures = said(findings, "configuration", "fail")
    for name in (
        "ZENDESK_WEBHOOK_SECRET",
        "JIRA_WEBHOOK_SECRET",
        "ZENDESK_URL",
        "ZENDESK_API_TOKEN",
        "JIRA_URL",
    ):
        assert name in failures
    assert "refuses every delivery" in failures
    assert "REDIS_URL is not set: jobs run inline" in said(findings, "configuration", "warn")
    assert "escalate db upgrade" in said(findings, "database", "warn")  # an empty database
    assert "ZENDESK_APP_PUBLIC_KEY" in said(findings, "sidebar", "warn")
    assert levels(findings, "zendesk") == {"warn"}  # not checked: nothing to check with


def test_refused_credentials_say_which_settings_to_check(sandbox_state, tmp_path):
    env = good_env(sandbox_state, tmp_path, ZENDESK_API_TOKEN="not-the-token", JIRA_API_TOKEN="not-the-token")
    findings = check(env)
    assert "refused the credentials (401)" in said(findings, "zendesk", "fail")
    assert "ZENDESK_EMAIL and ZENDESK_API_TOKEN" in said(findings, "zendesk", "fail")
    assert "refused the credentials (401)" in said(findings, "jira", "fail")
    assert "JIRA_EMAIL and JIRA_API_TOKEN" in said(findings, "jira", "fail")


def test_unreachable_services_are_named(sandbox_state, tmp_path):
    closed = f"http://127.0.0.1:{_spare_port()}"
    env = good_env(
        sandbox_state,
        tmp_path,
        f"redis://127.0.0.1:{_spare_port()}/0",
        ZENDESK_URL=closed,
        JIRA_URL=closed,
        DATABASE_URL=f"postgresql+psycopg://postgres:secret-pw-1234@127.0.0.1:{_spare_port()}/nothing",
    )
    findings = check(env)
    assert f"cannot reach Zendesk at {closed}" in said(findings, "zendesk", "fail")
    assert f"cannot reach Jira at {closed}" in said(findings, "jira", "fail")
    assert "cannot reach Redis at redis://127.0.0.1" in said(findings, "redis", "fail")
    assert "Webhooks answer 503" in said(findings, "redis", "fail")
    database = said(findings, "database", "fail")
    assert "cannot reach the database at postgresql+psycopg://postgres:***@127.0.0.1" in database
    assert "secret-pw-1234" not in " ".join(f.message for f in findings)


@pytest.mark.slow
def test_a_stopped_redis_is_reported_and_its_return_noticed(sandbox_state, tmp_path, own_redis):
    env = good_env(sandbox_state, tmp_path, own_redis.url)
    own_redis.stop()
    assert "cannot reach Redis" in said(check(env, network=False), "redis", "fail")
    own_redis.start()
    assert levels(check(env, network=False), "redis") == {"ok"}


def test_missing_jira_projects_and_issue_types_are_reported(sandbox_state, tmp_path):
    text = Path(lexical_rules(tmp_path)).read_text(encoding="utf-8")
    rules = tmp_path / "projects.yaml"
    text = text.replace("jira: {project: LEAD,", "jira: {project: NOPE,", 1)
    text = text.replace(
        "jira: {project: PROD, issue_type: Story", "jira: {project: PROD, issue_type: Epic Saga", 1
    )
    rules.write_text(text, encoding="utf-8")
    findings = check(good_env(sandbox_state, tmp_path, ESCALATE_RULES=str(rules)))
    failures = said(findings, "jira", "fail")
    assert "project NOPE (for leadership) does not exist" in failures
    assert "project PROD has no issue type 'Epic Saga' (for product)" in failures
    assert "project ENG is there" in said(findings, "jira", "ok")


def test_a_broken_rules_file_is_reported_with_its_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nthresholds: [\n", encoding="utf-8")
    findings = check(
        {"ESCALATE_RULES": str(bad), "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}"}, network=False
    )
    assert "does not load" in said(findings, "rules", "fail")
    assert "bad.yaml" in said(findings, "rules", "fail")


def test_the_command_prints_findings_and_exits_non_zero_on_a_failure(tmp_path):
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
        "ZENDESK_URL": "https://acme.zendesk.com",
        "ZENDESK_EMAIL": "bot@acme.test",
        "ZENDESK_API_TOKEN": "zendesk-token-that-must-not-print",
        "JIRA_WEBHOOK_SECRET": "jira-secret-that-must-not-print",
    }
    plain = subprocess.run(
        [sys.executable, "-m", "worker.cli", "doctor", "--offline"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert plain.returncode == 1, plain.stderr
    assert "FAIL  configuration" in plain.stdout and "ZENDESK_WEBHOOK_SECRET is not set" in plain.stdout
    assert "problem(s) to fix" in plain.stdout
    as_json = subprocess.run(
        [sys.executable, "-m", "worker.cli", "doctor", "--offline", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    rows = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert {"area", "level", "message"} <= set(rows[0])
    assert any(r["level"] == "fail" and r["area"] == "configuration" for r in rows)
    for output in (plain.stdout + plain.stderr, as_json.stdout + as_json.stderr):
        assert "must-not-print" not in output


def test_the_follow_through_scheduler_is_counted(tmp_path, redis_url):
    import time

    from redis import Redis
    from rq.cron_scheduler_registry import get_registry_key

    env = {"REDIS_URL": redis_url, "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}"}
    redis = Redis.from_url(redis_url)
    redis.zadd(get_registry_key(), {"cron-a": time.time()})
    assert "follow-through" not in said(check(env, network=False), "queue", "warn")
    redis.zadd(get_registry_key(), {"cron-b": time.time(), "long-dead": time.time() - 3600})
    assert "2 follow-through schedulers are running" in said(check(env, network=False), "queue", "warn")


def test_a_jsm_desk_is_checked_when_one_is_configured(sandbox_state, tmp_path):
    from connector.sandbox.jsm_state import ENVIRONMENT

    assert levels(check(good_env(sandbox_state, tmp_path)), "jsm") == set()  # Zendesk only: no JSM check

    findings = check(good_env(sandbox_state, tmp_path, **ENVIRONMENT))
    assert "service desk" in said(findings, "jsm", "ok")
    assert "JSM_L2_FIELD is unset" in said(findings, "jsm", "warn")

    missing = check(good_env(sandbox_state, tmp_path, **{**ENVIRONMENT, "JSM_SERVICE_DESK_ID": "999"}))
    assert "does not exist" in said(missing, "jsm", "fail")
    wrong = check(good_env(sandbox_state, tmp_path, **{**ENVIRONMENT, "JSM_PROJECT_KEY": "not a key"}))
    assert "JSM settings are unusable" in said(wrong, "jsm", "fail")


def _shipped_rules(tmp_path: Path) -> dict[str, str]:
    """The shipped rules (matcher: auto), nothing to reach over the network."""
    return {"DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}"}


def test_the_semantic_matcher_is_loaded_and_its_int8_model_checked_on_this_cpu(tmp_path):
    from rules import encoder_onnx, similarity

    if not similarity.semantic_available() or not encoder_onnx.available():
        pytest.skip("the semantic extra with onnxruntime is not installed")
    findings = check(_shipped_rules(tmp_path), network=False)
    line = said(findings, "matcher", "ok")
    assert "semantic:all-MiniLM-L6-v2/onnx-int8 loads" in line, findings
    assert "agrees with torch on this CPU (worst probe cosine 0.9" in line
    assert "-bit weights" in line


def test_a_missing_semantic_extra_is_a_warning_naming_what_is_lost(tmp_path, monkeypatch):
    from rules import evaluate

    # A None entry in sys.modules makes the package look uninstalled; the matcher cache must not remember
    # a semantic matcher from an earlier test.
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    evaluate._matcher.cache_clear()
    try:
        findings = check(_shipped_rules(tmp_path), network=False)
    finally:
        evaluate._matcher.cache_clear()
    assert "reworded reports of one problem are not grouped" in said(findings, "matcher", "warn")
    assert "escalate[semantic]" in said(findings, "matcher", "warn")


def test_a_semantic_matcher_that_cannot_load_fails_the_check(tmp_path, monkeypatch):
    from rules import evaluate

    rules = Path(lexical_rules(tmp_path))
    text = rules.read_text(encoding="utf-8")
    rules.write_text(text.replace("  matcher: lexical ", "  matcher: semantic ", 1), encoding="utf-8")
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    evaluate._matcher.cache_clear()
    try:
        findings = check({**_shipped_rules(tmp_path), "ESCALATE_RULES": str(rules)}, network=False)
    finally:
        evaluate._matcher.cache_clear()
    assert "the semantic matcher the rules ask for does not load" in said(findings, "matcher", "fail")
