"""`escalate doctor`: is this installation able to work, and if not, what exactly is wrong, in words.

Each check returns findings: an area (configuration, rules, matcher, database, redis, queue, zendesk,
jira, jsm, sidebar, metrics), a level (``ok``, ``warn``: works but watch it, ``fail``: something will not
work) and a sentence an operator can act on. Nothing here changes anything: the only calls out are reads
(who am I, does this project exist, PING, SELECT 1), and the matcher's check builds the int8 model's cache
file if this machine has none, as a worker's first job would. Secrets are never printed; URLs are shown
with the password masked.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from worker.config import Settings

OK, WARN, FAIL = "ok", "warn", "fail"
WEAK_SECRET_LENGTH = 16


@dataclass(frozen=True)
class Finding:
    area: str
    level: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


Check = Callable[["Doctor"], list[Finding]]


def ok(area: str, message: str) -> Finding:
    return Finding(area, OK, message)


def warn(area: str, message: str) -> Finding:
    return Finding(area, WARN, message)


def fail(area: str, message: str) -> Finding:
    return Finding(area, FAIL, message)


@dataclass
class Doctor:
    settings: Settings
    environ: Mapping[str, str]
    network: bool = True
    timeout: float = 5.0

    def run(self) -> list[Finding]:
        findings: list[Finding] = []
        checks: list[Check] = [
            check_configuration,
            check_rules,
            check_matcher,
            check_database,
            check_redis,
            check_metrics,
        ]
        if self.network:
            checks += [check_zendesk, check_jira, check_jsm]
        for check in checks:
            try:
                findings += check(self)
            except Exception as exc:  # a check that breaks says so and lets the others run
                findings.append(
                    Finding(check.__name__.removeprefix("check_"), FAIL, f"check crashed: {_why(exc)}")
                )
        return findings

    def env(self) -> dict[str, str]:
        """The environment with the settings' values on top, for the connectors' own config parsers."""
        return self.settings.connector_environment(self.environ)


def _shown(settings: Settings, name: str) -> str:
    """A URL setting as it may be shown: the password masked (Settings.redacted)."""
    return str(settings.redacted()[name])


def _why(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


# -- configuration ------------------------------------------------------------------------------


def check_configuration(doc: Doctor) -> list[Finding]:
    s, out = doc.settings, []
    for name, value, endpoint in (
        ("ZENDESK_WEBHOOK_SECRET", s.zendesk_webhook_secret, "/webhooks/zendesk"),
        ("JIRA_WEBHOOK_SECRET", s.jira_webhook_secret, "/webhooks/jira"),
    ):
        if not value:
            out.append(
                fail(
                    "configuration",
                    f"{name} is not set: {endpoint} refuses every delivery "
                    "(401). Copy the signing secret from the webhook's page.",
                )
            )
        elif len(value) < 6:
            out.append(
                fail(
                    "configuration",
                    f"{name} is too short ({len(value)} characters) to be "
                    "kept out of the logs; use a long random value.",
                )
            )
        elif len(value) < WEAK_SECRET_LENGTH:
            out.append(
                warn(
                    "configuration",
                    f"{name} is short ({len(value)} characters); {WEAK_SECRET_LENGTH} or more is safer.",
                )
            )
        else:
            out.append(ok("configuration", f"{name} is set."))
    from connector.jira_client import ConfigError as JiraConfigError
    from connector.jira_client import JiraConfig
    from connector.zendesk_client import ConfigError as ZendeskConfigError
    from connector.zendesk_client import ZendeskConfig

    for service, parse, error in (
        ("Zendesk", ZendeskConfig.from_env, ZendeskConfigError),
        ("Jira", JiraConfig.from_env, JiraConfigError),
    ):
        try:
            parse(doc.env())
            out.append(ok("configuration", f"{service} connection settings are complete."))
        except error as exc:
            out.append(
                fail(
                    "configuration",
                    f"{service}: {exc}. The worker cannot "
                    + ("read tickets or write notes." if service == "Zendesk" else "create issues."),
                )
            )
    if s.redis_url is None:
        out.append(
            warn(
                "configuration",
                "REDIS_URL is not set: jobs run inline in the web process. "
                "Fine for one machine; work in flight is lost on restart. Set REDIS_URL and run "
                "`escalate worker` to scale.",
            )
        )
    else:
        out.append(
            ok("configuration", f"jobs go to Redis at {_shown(s, 'REDIS_URL')}, queue '{s.queue_name}'.")
        )
    if s.database_url.startswith("sqlite"):
        level = WARN if s.redis_url else OK
        out.append(
            Finding(
                "configuration",
                level,
                f"database is SQLite ({_shown(s, 'DATABASE_URL')})"
                + (
                    ": with separate workers use PostgreSQL (DATABASE_URL=postgresql+psycopg://…); "
                    "SQLite cannot be shared between machines."
                    if level == WARN
                    else ": fine for one machine; use PostgreSQL to grow past it."
                ),
            )
        )
    from connector.http.sidebar_auth import SidebarAuthConfig

    problems = SidebarAuthConfig.from_env(doc.env()).problems()
    if problems:
        out.append(
            warn(
                "sidebar",
                "the sidebar app refuses every agent until these are set: " + ", ".join(problems) + ".",
            )
        )
    else:
        out.append(ok("sidebar", "sidebar app verification is configured."))
    return out


def check_rules(doc: Doctor) -> list[Finding]:
    from rules.ruleset import Destination, RulesError, load_ruleset

    try:
        rules = load_ruleset(doc.settings.rules_path)
    except RulesError as exc:
        return [fail("rules", f"the rules file does not load: {exc}")]
    source = doc.settings.rules_path or "the shipped ruleset"
    out = [ok("rules", f"{source} loads (version {rules.version}, matcher {rules.similarity.matcher}).")]
    l2 = rules.destinations.get(Destination.SUPPORT_L2)
    if l2 is not None and l2.zendesk is not None and not l2.zendesk.group_id:
        out.append(
            warn(
                "rules",
                "support_l2 has no Zendesk group (destinations.support_l2.zendesk."
                "group_id): hand-offs to senior support will fail until it names one.",
            )
        )
    return out


# -- our own services ---------------------------------------------------------------------------


def check_matcher(doc: Doctor) -> list[Finding]:
    """The symptom matcher the rules ask for, loaded as a worker loads it (the first load on a machine
    builds the int8 model: seconds). Only the semantic one groups reworded reports of one problem, and
    its int8 arithmetic must agree with torch on this CPU."""
    from rules.evaluate import matcher_for
    from rules.ruleset import RulesError, load_ruleset
    from rules.similarity import SemanticMatcher, SemanticUnavailable

    try:
        rules = load_ruleset(doc.settings.rules_path)
    except RulesError:
        return []  # check_rules says why
    try:
        matcher = matcher_for(rules)
        # Loads the model: its export may fail here too.
        loaded = matcher.describe() if isinstance(matcher, SemanticMatcher) else None
    except SemanticUnavailable as exc:
        return [fail("matcher", f"the semantic matcher the rules ask for does not load: {_why(exc)}")]
    if loaded is not None:
        return [ok("matcher", f"{matcher.name} loads: {loaded}.")]
    if rules.similarity.matcher == "lexical":
        return [ok("matcher", "the lexical matcher, as the rules ask (similarity.matcher: lexical).")]
    return [
        warn(
            "matcher",
            "the lexical matcher stands in for the semantic one, whose packages are not installed (pip "
            "install 'escalate[semantic]'): reworded reports of one problem are not grouped.",
        )
    ]


def check_database(doc: Doctor) -> list[Finding]:
    from worker.store import Store, migrate

    where = _shown(doc.settings, "DATABASE_URL")
    store = Store.from_url(doc.settings.database_url)
    try:
        try:
            store.ping()
        except Exception as exc:
            return [fail("database", f"cannot reach the database at {where}: {_first_line(exc)}")]
        current, head = migrate.current_revision(store.engine), migrate.head_revision()
    finally:
        store.dispose()
    if current == head:
        return [ok("database", f"{where} answers; schema at the latest revision ({head}).")]
    later = " (the app and the worker will migrate it when they start)" if doc.settings.auto_migrate else ""
    return [
        warn(
            "database",
            f"{where} answers but its schema is at {current or 'nothing (empty)'}, "
            f"the latest is {head}: run `escalate db upgrade`{later}.",
        )
    ]


def check_redis(doc: Doctor) -> list[Finding]:
    if doc.settings.redis_url is None:
        return []
    from redis import Redis

    where = _shown(doc.settings, "REDIS_URL")
    client = Redis.from_url(
        doc.settings.redis_url, socket_connect_timeout=doc.timeout, socket_timeout=doc.timeout
    )
    try:
        try:
            info = client.info("server")
        except Exception as exc:
            return [
                fail(
                    "redis",
                    f"cannot reach Redis at {where}: {_first_line(exc)}. Webhooks answer "
                    "503 (Zendesk and Jira retry) and no job runs until it is back.",
                )
            ]
        out = [ok("redis", f"{where} answers (Redis {info.get('redis_version', '?')}).")]
        try:
            policy = client.config_get("maxmemory-policy").get("maxmemory-policy")
        except Exception:
            policy = None  # CONFIG is often disabled on managed Redis
        if policy and policy != "noeviction":
            out.append(
                warn(
                    "redis",
                    f"maxmemory-policy is {policy}: Redis may evict queued jobs under "
                    "memory pressure; set it to noeviction.",
                )
            )
        return out + _queue_findings(client, doc.settings.queue_name)
    finally:
        client.close()


def _queue_findings(client: Any, name: str) -> list[Finding]:
    from rq import Queue, Worker

    from worker.metrics import oldest_job_age, queue_counts

    queue = Queue(name, connection=client)
    counts, age, workers = queue_counts(queue), oldest_job_age(queue), Worker.count(queue=queue)
    summary = (
        f"queue '{name}': {counts['queued']} waiting (oldest {age:.0f}s), {counts['started']} running, "
        f"{counts['scheduled']} scheduled, {counts['failed']} failed; {workers} worker(s) listening."
    )
    out = [ok("queue", summary)]
    if workers == 0:
        out.append(
            warn(
                "queue",
                f"no worker is listening on '{name}': jobs wait until one runs "
                "(`escalate worker`, or the escalate-worker service).",
            )
        )
    if counts["failed"]:
        out.append(
            warn(
                "queue",
                f"{counts['failed']} failed job(s): `escalate jobs failed` shows why, "
                "`escalate jobs requeue --all` retries them once the cause is fixed.",
            )
        )
    schedulers = _cron_schedulers(client)
    if schedulers == 0:
        out.append(
            warn(
                "queue",
                "no follow-through scheduler is running: stalled escalations and overdue customer "
                "updates are not chased (run `escalate followthrough cron` on one machine).",
            )
        )
    elif schedulers and schedulers > 1:
        out.append(
            warn(
                "queue",
                f"{schedulers} follow-through schedulers are running: one is enough (each check runs twice).",
            )
        )
    if age > 600:
        out.append(
            warn(
                "queue",
                f"the oldest job has waited {age / 60:.0f} minutes: add workers or "
                "check that they are not all stuck on one service.",
            )
        )
    return out


def _cron_schedulers(client: Any) -> int | None:
    """Live RQ cron schedulers (heartbeat within RQ's TTL), read without cleaning anything up."""
    try:
        import time

        from rq.cron_scheduler_registry import get_registry_key
        from rq.defaults import DEFAULT_CRON_SCHEDULER_TTL
    except ImportError:
        return None
    return int(client.zcount(get_registry_key(), time.time() - DEFAULT_CRON_SCHEDULER_TTL, "+inf"))


def check_metrics(doc: Doctor) -> list[Finding]:
    path = doc.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        if doc.settings.redis_url is not None:
            return [
                warn(
                    "metrics",
                    "PROMETHEUS_MULTIPROC_DIR is not set: gunicorn's processes and the "
                    "worker's job processes each keep their own numbers, so /metrics "
                    "shows a fraction. Set it to a local, writable directory.",
                )
            ]
        return [ok("metrics", "metrics are kept in-process (inline mode, one process).")]
    if not os.path.isdir(path) or not os.access(path, os.W_OK):
        return [
            fail(
                "metrics",
                f"PROMETHEUS_MULTIPROC_DIR={path} is not a writable directory: every "
                "process that counts something will fail to.",
            )
        ]
    return [ok("metrics", f"multi-process metrics in {path}.")]


# -- Zendesk and Jira ---------------------------------------------------------------------------


def check_zendesk(doc: Doctor) -> list[Finding]:
    from connector import errors
    from connector.zendesk_client import ConfigError, ZendeskConfig
    from connector.zendesk_connector import ZendeskConnector

    try:
        config = dataclasses.replace(ZendeskConfig.from_env(doc.env()), timeout=doc.timeout)
    except ConfigError:
        return [warn("zendesk", "not checked: the Zendesk settings are incomplete (see configuration).")]
    try:
        me = ZendeskConnector(config).check_auth()
    except errors.AuthError as exc:
        return [
            fail(
                "zendesk",
                f"{config.base_url} refused the credentials ({exc.status}): check "
                "ZENDESK_EMAIL and ZENDESK_API_TOKEN, and that token access is enabled in Admin Center "
                "→ Apps and integrations → Zendesk API.",
            )
        ]
    except errors.NotFoundError:
        return [
            fail(
                "zendesk",
                f"{config.base_url} has no Zendesk API (404 on /api/v2/users/me): "
                "ZENDESK_URL must be the desk's root, e.g. https://acme.zendesk.com.",
            )
        ]
    except errors.ConnectorError as exc:
        return [fail("zendesk", f"cannot reach Zendesk at {config.base_url}: {exc.message}.")]
    role, name = me.get("role"), me.get("name") or me.get("email") or "?"
    if role not in ("agent", "admin"):
        return [
            fail(
                "zendesk",
                f"signed in to {config.base_url} as {name}, whose role is {role}: "
                "internal notes and tags need an agent or admin.",
            )
        ]
    return [ok("zendesk", f"signed in to {config.base_url} as {name} ({role}).")]


def check_jira(doc: Doctor) -> list[Finding]:
    from connector import errors
    from connector.jira_client import ConfigError, JiraConfig, jira_errors
    from connector.jira_connector import JiraConnector
    from rules.ruleset import RulesError, load_ruleset

    try:
        config = dataclasses.replace(JiraConfig.from_env(doc.env()), timeout=doc.timeout)
    except ConfigError:
        return [warn("jira", "not checked: the Jira settings are incomplete (see configuration).")]
    jira = JiraConnector(config)
    try:
        me = jira.check_auth()
        deployment = jira.deployment.value
    except errors.AuthError as exc:
        return [
            fail(
                "jira",
                f"{config.server_url} refused the credentials ({exc.status}): check "
                "JIRA_EMAIL and JIRA_API_TOKEN (Cloud: an API token of that account; Data Center: a "
                "personal access token, with JIRA_EMAIL unset).",
            )
        ]
    except errors.ConnectorError as exc:
        return [fail("jira", f"cannot reach Jira at {config.server_url}: {exc.message}.")]
    name = me.get("displayName") or me.get("emailAddress") or "?"
    out = [ok("jira", f"signed in to {config.server_url} as {name} ({deployment}).")]
    try:
        rules = load_ruleset(doc.settings.rules_path)
    except RulesError:
        return out  # reported by check_rules
    for destination, target in sorted(rules.destinations.items()):
        if target.jira is None:
            continue
        key = target.jira.project
        try:
            with jira_errors():
                project = jira.client.project(key).raw
        except errors.NotFoundError:
            out.append(
                fail(
                    "jira",
                    f"project {key} (for {destination.value}) does not exist or "
                    f"{name} cannot see it: escalations there will fail.",
                )
            )
            continue
        except errors.ConnectorError as exc:
            out.append(fail("jira", f"project {key} (for {destination.value}): {exc.message}."))
            continue
        types = [t.get("name") for t in project.get("issueTypes") or project.get("issuetypes") or []]
        if types and target.jira.issue_type not in types:
            out.append(
                fail(
                    "jira",
                    f"project {key} has no issue type '{target.jira.issue_type}' "
                    f"(for {destination.value}); it has: {', '.join(map(str, types))}.",
                )
            )
        else:
            out.append(ok("jira", f"project {key} is there for {destination.value}."))
    return out


def check_jsm(doc: Doctor) -> list[Finding]:
    """The Jira Service Management desk, when one is configured (``JSM_PROJECT_KEY``): its settings, that
    the account sees the desk as an agent, and the L2 hand-over's field."""
    from connector import errors
    from connector.jsm_connector import JsmConnector

    env = doc.env()
    if not env.get("JSM_PROJECT_KEY"):
        return []  # Zendesk is the helpdesk
    try:
        jsm = JsmConnector.from_env(env)
    except errors.ConfigError as exc:
        return [fail("jsm", f"the JSM settings are unusable: {exc}.")]
    desk = jsm.config.service_desk_id or jsm.config.project_key
    try:
        found = jsm.check_auth()
    except errors.AuthError as exc:
        why = f"the account may not read service desk {desk} ({exc.status}): make it an agent on the desk."
        return [fail("jsm", why)]
    except errors.NotFoundError:
        return [fail("jsm", f"service desk {desk} does not exist or the account cannot see it.")]
    except errors.ConnectorError as exc:
        return [fail("jsm", f"cannot reach service desk {desk}: {exc.message}.")]
    out = [ok("jsm", f"service desk {found.get('projectName') or desk} ({jsm.config.project_key}) answers.")]
    if jsm.config.l2_field is None:
        out.append(warn("jsm", "JSM_L2_FIELD is unset: hand-overs to senior support will fail."))
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


def run(
    settings: Settings | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    network: bool = True,
    timeout: float = 5.0,
) -> list[Finding]:
    env = dict(os.environ if environ is None else environ)
    return Doctor(settings or Settings.from_env(env), env, network=network, timeout=timeout).run()
