"""Configuration, construction and error translation for the ``jira`` client.

The client's ``ResilientSession`` retries 429, 503 and connection errors for every method, POST
included, sleeping in-process between tries (DESIGN.md): a create could be sent twice and a worker
thread parked for minutes. ``max_retries=0`` makes its loop run exactly once — ``__recoverable``, the
only place it sleeps, is reached only while a retry is still allowed — and its ``timeout`` argument is
passed to every request it sends. Its errors (``JIRAError`` with the response attached) and the
transport's (``requests`` exceptions) are translated to ``connector.errors`` here.

``JIRA(...)`` calls ``GET /rest/api/2/serverInfo`` when constructed (it needs ``versionNumbers``; its
``deploymentType`` tells Cloud from Server/Data Center). With ``JIRA_DEPLOYMENT`` set to ``cloud`` or
``server`` that call is skipped and the deployment type is set from configuration instead.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

from jira import JIRA, JIRAError

from connector import errors
from connector.errors import ConfigError
from connector.http_client import (
    DEFAULT_TIMEOUT,
    error_for_response,
    mount_no_retry_adapters,
    translated,
    url_path,
    without_environment_lookups,
)
from connector.metrics import count_response  # issue 7

log = logging.getLogger(__name__)

SERVICE = "jira"


class Deployment(StrEnum):
    CLOUD = "cloud"  # REST v3, descriptions and comments in ADF
    SERVER = "server"  # Server and Data Center: REST v2, wiki markup


_DEPLOYMENT_NAMES = {
    "cloud": Deployment.CLOUD,
    "server": Deployment.SERVER,
    "datacenter": Deployment.SERVER,
    "data_center": Deployment.SERVER,
    "dc": Deployment.SERVER,
}


@dataclass(frozen=True)
class JiraConfig:
    url: str
    email: str
    api_token: str = field(repr=False)
    # None: ask serverInfo.deploymentType ("Cloud" → cloud, anything else → server).
    deployment: Deployment | None = None
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError("JIRA_URL must look like https://acme.atlassian.net")
        if not self.api_token:
            raise ConfigError("JIRA_API_TOKEN is required")
        if self.timeout <= 0:
            raise ConfigError("the Jira timeout must be positive")

    @property
    def server_url(self) -> str:
        return self.url.rstrip("/")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> JiraConfig:
        env = os.environ if environ is None else environ
        missing = [n for n in ("JIRA_URL", "JIRA_API_TOKEN") if not env.get(n)]
        if missing:
            raise ConfigError(f"missing environment variables: {', '.join(missing)}")
        return cls(
            url=env["JIRA_URL"],
            email=env.get("JIRA_EMAIL", ""),
            api_token=env["JIRA_API_TOKEN"],
            deployment=parse_deployment(env.get("JIRA_DEPLOYMENT")),
            timeout=_number(env.get("JIRA_TIMEOUT"), "JIRA_TIMEOUT") or DEFAULT_TIMEOUT,
        )


def parse_deployment(value: str | None) -> Deployment | None:
    if value is None or value.strip().lower() in ("", "auto"):
        return None
    try:
        return _DEPLOYMENT_NAMES[value.strip().lower()]
    except KeyError:
        raise ConfigError("JIRA_DEPLOYMENT must be auto, cloud, server or datacenter") from None


def _number(value: str | None, name: str) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number") from None


def build_jira(config: JiraConfig) -> JIRA:
    """A client that makes one attempt per call, each with a timeout. Calls serverInfo unless the
    deployment is configured; raise typed errors through ``jira_errors``."""
    # Cloud authenticates with email + API token (Basic); Data Center with a personal access token
    # (Bearer) when no email is configured.
    auth: dict[str, object] = (
        {"basic_auth": (config.email, config.api_token)} if config.email else {"token_auth": config.api_token}
    )
    client = JIRA(
        server=config.server_url,
        options={"check_update": False},
        max_retries=0,
        timeout=config.timeout,
        get_server_info=config.deployment is None,
        **auth,  # type: ignore[arg-type]
    )
    client._session.hooks["response"].append(count_response(SERVICE))  # issue 7: calls by status
    # requests' own adapters keep 10 connections a host; ours one per job thread (one attempt each, as
    # the client's own retry loop is off: max_retries=0 above).
    mount_no_retry_adapters(client._session)
    without_environment_lookups(client._session)
    if config.deployment is not None:
        # The client reads this attribute to choose Cloud-only endpoints (e.g. search/jql).
        client.deploymentType = "Cloud" if config.deployment is Deployment.CLOUD else "Server"
    return client


def deployment_of(client: JIRA) -> Deployment:
    return Deployment.CLOUD if client.deploymentType == "Cloud" else Deployment.SERVER


@contextmanager
def jira_errors() -> Iterator[None]:
    """Typed errors out of a block using the jira client."""
    with translated(SERVICE):
        try:
            yield
        except JIRAError as exc:
            raise from_jira_error(exc) from exc


def from_jira_error(exc: JIRAError) -> errors.ConnectorError:
    response = getattr(exc, "response", None)
    if response is not None and getattr(response, "status_code", None):
        return error_for_response(SERVICE, response)
    status = getattr(exc, "status_code", None)
    where = url_path(getattr(exc, "url", None))
    if isinstance(status, int) and status >= 400:
        return errors.from_status(SERVICE, status, method="?", path=where)
    # e.g. a 2xx answer without the expected JSON ("key" missing after a create)
    return errors.PermanentError(SERVICE, f"unexpected answer from {where}", status=status)
