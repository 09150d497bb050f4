"""Settings from the environment (DESIGN.md, "Configuration"), read once into a frozen value.

Secrets are kept out of ``repr`` so a logged or printed Settings never carries them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import ClassVar
from urllib.parse import urlsplit, urlunsplit

DEFAULT_DATABASE_URL = "sqlite:///var/escalate.sqlite3"
DEFAULT_QUEUE_NAME = "escalate"

_FALSE = {"0", "false", "no", "off"}


def _text(env: Mapping[str, str], name: str) -> str | None:
    # An empty variable means unset: `REDIS_URL=` in a .env file should select inline mode, not fail.
    value = env.get(name, "").strip()
    return value or None


@dataclass(frozen=True)
class Settings:
    zendesk_url: str | None = None
    zendesk_email: str | None = None
    zendesk_api_token: str | None = field(default=None, repr=False)
    zendesk_webhook_secret: str | None = field(default=None, repr=False)
    jira_url: str | None = None
    jira_email: str | None = None
    jira_api_token: str | None = field(default=None, repr=False)
    jira_webhook_secret: str | None = field(default=None, repr=False)
    # The Jira Service Management desk's project key: its requests' events on /webhooks/jira are
    # assessed like Zendesk tickets (the other JSM_* knobs are read by connector/jsm_config.py).
    jsm_project_key: str | None = None
    # Unset: jobs run inline in the web process (the embedded default).
    redis_url: str | None = field(default=None, repr=False)
    database_url: str = field(default=DEFAULT_DATABASE_URL, repr=False)
    # None: the shipped ruleset.
    rules_path: str | None = None
    # Additions to DESIGN's contract: the RQ queue name, and whether the app and the worker bring
    # the schema to the latest migration when they start.
    queue_name: str = DEFAULT_QUEUE_NAME
    auto_migrate: bool = True

    ENV_NAMES: ClassVar[dict[str, str]] = {
        "zendesk_url": "ZENDESK_URL",
        "zendesk_email": "ZENDESK_EMAIL",
        "zendesk_api_token": "ZENDESK_API_TOKEN",
        "zendesk_webhook_secret": "ZENDESK_WEBHOOK_SECRET",
        "jira_url": "JIRA_URL",
        "jira_email": "JIRA_EMAIL",
        "jira_api_token": "JIRA_API_TOKEN",
        "jira_webhook_secret": "JIRA_WEBHOOK_SECRET",
        "jsm_project_key": "JSM_PROJECT_KEY",
        "redis_url": "REDIS_URL",
        "database_url": "DATABASE_URL",
        "rules_path": "ESCALATE_RULES",
        "queue_name": "ESCALATE_QUEUE",
        "auto_migrate": "ESCALATE_AUTO_MIGRATE",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name, env_name in cls.ENV_NAMES.items():
            raw = _text(env, env_name)
            if raw is None:
                continue
            values[name] = raw.lower() not in _FALSE if name == "auto_migrate" else raw
        return cls(**values)  # type: ignore[arg-type]

    @property
    def inline(self) -> bool:
        """True when there is no Redis: the web process runs the jobs itself."""
        return self.redis_url is None

    def connector_environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` (the process environment) with these settings' connector values on top, for the
        connectors' own config parsers: the settings may be explicit (tests, the demo), while optional
        knobs such as JIRA_DEPLOYMENT still come from the environment."""
        chosen = {
            "ZENDESK_URL": self.zendesk_url,
            "ZENDESK_EMAIL": self.zendesk_email,
            "ZENDESK_API_TOKEN": self.zendesk_api_token,
            "JIRA_URL": self.jira_url,
            "JIRA_EMAIL": self.jira_email,
            "JIRA_API_TOKEN": self.jira_api_token,
            "JSM_PROJECT_KEY": self.jsm_project_key,
        }
        return {**base, **{k: v for k, v in chosen.items() if v}}

    def redacted(self) -> dict[str, object]:
        """Every setting, secrets shown only as set or unset: for `escalate config` and logs."""
        shown: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("redis_url", "database_url") and isinstance(value, str):
                value = _mask_url(value)
            elif not f.repr:
                value = "<set>" if value else None
            shown[self.ENV_NAMES[f.name]] = value
        return shown


def _mask_url(url: str) -> str:
    """The URL with its password replaced, so it can be shown: where we connect, not how."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}"))
