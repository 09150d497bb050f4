"""Configuration and construction of the zenpy client the Zendesk connector drives.

Three things zenpy does by default that a worker must not have, and how each is switched off here:

* **429 sleeps** — ``BaseApi._call_api`` loops ``sleep(1)`` for as long as ``Retry-After`` says. Our
  session carries a response hook (``connector.http_client.raise_for_error_hook``) that raises
  ``RateLimited`` inside ``Session.send``, before zenpy's loop can look at the status. zenpy's
  ``ratelimit_budget`` was considered and rejected: it still enters the loop, and the exception it
  raises carries no retry-after for the worker.
* **transparent retries** — on a session it creates itself zenpy mounts ``Retry(total=3)``; we pass our
  own session, mounted with ``max_retries=0``.
* **object cache** — zenpy caches users, organizations and tickets by id; a worker must read the
  ticket as it is now, so the cache is disabled.

URLs: zenpy builds ``https://{subdomain}.{domain}/api/v2/...`` (``BaseApi._build_url``). Instead of the
process-global ``ZENPY_FORCE_SCHEME``/``ZENPY_FORCE_NETLOC`` environment variables (DESIGN.md) we split
the configured host at its first dot — ``acme.zendesk.com`` is subdomain ``acme`` + domain
``zendesk.com`` and ``127.0.0.1:8101`` is ``127`` + ``0.0.1:8101`` — and set the scheme on this client's
API objects only, so two connectors in one process may point at different desks. If those environment
variables are set anyway, zenpy obeys them over everything here; we log a warning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from zenpy import Zenpy
from zenpy.lib.api import BaseApi

from connector.errors import ConfigError
from connector.http_client import DEFAULT_TIMEOUT, no_retry_session, raise_for_error_hook
from connector.metrics import count_response  # issue 7

log = logging.getLogger(__name__)

SERVICE = "zendesk"
DEFAULT_DIRECTORY_TTL = 120.0


@dataclass(frozen=True)
class ZendeskConfig:
    url: str
    email: str
    api_token: str = field(repr=False)
    timeout: float = DEFAULT_TIMEOUT
    # Custom ticket field that holds the linked Jira issue key; None: tags and a note only.
    jira_link_field_id: int | None = None
    # Tag marking an escalated ticket; the default ruleset counts it as an escalation tag.
    escalation_tag: str = "jira_escalated"
    # Seconds users and organizations are reused across cases (ZENDESK_DIRECTORY_TTL; 0: always read).
    directory_ttl: float = DEFAULT_DIRECTORY_TTL

    def __post_init__(self) -> None:
        if not self.email or not self.api_token:
            raise ConfigError("ZENDESK_EMAIL and ZENDESK_API_TOKEN are required")
        if self.timeout <= 0:
            raise ConfigError("the Zendesk timeout must be positive")
        if self.directory_ttl < 0:
            raise ConfigError("ZENDESK_DIRECTORY_TTL must be 0 or more seconds")
        split_host(self.url)  # fails early on a URL zenpy could not be pointed at

    @property
    def base_url(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ZendeskConfig:
        env = os.environ if environ is None else environ
        missing = [n for n in ("ZENDESK_URL", "ZENDESK_EMAIL", "ZENDESK_API_TOKEN") if not env.get(n)]
        if missing:
            raise ConfigError(f"missing environment variables: {', '.join(missing)}")
        field_id = env.get("ZENDESK_JIRA_FIELD_ID") or None
        timeout = env.get("ZENDESK_TIMEOUT") or None
        ttl = env.get("ZENDESK_DIRECTORY_TTL") or None
        try:
            return cls(
                url=env["ZENDESK_URL"],
                email=env["ZENDESK_EMAIL"],
                api_token=env["ZENDESK_API_TOKEN"],
                timeout=float(timeout) if timeout else DEFAULT_TIMEOUT,
                jira_link_field_id=int(field_id) if field_id else None,
                directory_ttl=float(ttl) if ttl else DEFAULT_DIRECTORY_TTL,
            )
        except ValueError as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(
                "ZENDESK_TIMEOUT, ZENDESK_JIRA_FIELD_ID and ZENDESK_DIRECTORY_TTL must be numbers"
            ) from None


def split_host(url: str) -> tuple[str, str, str]:
    """(scheme, subdomain, domain) for zenpy from a desk URL such as ``https://acme.zendesk.com``."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError("ZENDESK_URL must look like https://acme.zendesk.com or http://127.0.0.1:PORT")
    if parts.path not in ("", "/") or parts.query or parts.username or parts.password:
        raise ConfigError("ZENDESK_URL must be the desk's root URL, without path, query or credentials")
    host = parts.netloc
    if "." not in (parts.hostname or ""):
        # zenpy needs a subdomain; "localhost" has none to split off.
        raise ConfigError("ZENDESK_URL needs a dotted host name: use 127.0.0.1 rather than localhost")
    subdomain, domain = host.split(".", 1)
    return parts.scheme, subdomain, domain


def build_zenpy(config: ZendeskConfig) -> Zenpy:
    scheme, subdomain, domain = split_host(config.url)
    for name in ("ZENPY_FORCE_SCHEME", "ZENPY_FORCE_NETLOC"):
        if os.environ.get(name):
            log.warning("%s is set: zenpy will use it instead of ZENDESK_URL", name)
    session = no_retry_session()
    session.hooks["response"].append(count_response(SERVICE))  # issue 7: calls by status (before raising)
    session.hooks["response"].append(raise_for_error_hook(SERVICE))
    client = Zenpy(
        subdomain=subdomain,
        domain=domain,
        email=config.email,
        token=config.api_token,
        session=session,
        timeout=config.timeout,
        disable_cache=True,
    )
    for api in _apis(client):
        api.protocol = scheme
    return client


def _apis(client: Zenpy) -> Iterator[BaseApi]:
    """Every API object hanging off the client, including nested ones (help_center.articles, ...)."""
    seen: set[int] = set()
    stack: list[object] = list(vars(client).values())
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseApi) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        stack.extend(v for v in vars(item).values() if isinstance(v, BaseApi))
