"""Fixtures for the connectors and the sandbox (a pytest plugin: ``pytest_plugins`` in conftest.py).

``sandbox`` starts the local Zendesk and Jira once per session on free ports; ``sandbox_state`` resets
them (seed data, no faults, empty logs) before each test that uses it; ``zendesk`` and ``jira`` are the
real connectors — real zenpy and jira clients over HTTP — pointed at them. ``jira`` talks to a Cloud
Jira (ADF, REST v3), ``jira_server`` to a Server/Data Center one (wiki, REST v2).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest

from connector.jira_client import JiraConfig
from connector.jira_connector import JiraConnector
from connector.sandbox import server
from connector.sandbox.seed import JIRA_ISSUE_FIELD
from connector.zendesk_client import ZendeskConfig
from connector.zendesk_connector import ZendeskConnector


@pytest.fixture(scope="session")
def sandbox() -> Iterator[server.Sandbox]:
    werkzeug_log = logging.getLogger("werkzeug")
    level = werkzeug_log.level
    werkzeug_log.setLevel(logging.WARNING)  # one access-log line per request drowns real failures
    running = server.start()
    try:
        yield running
    finally:
        running.stop()
        werkzeug_log.setLevel(level)


@pytest.fixture
def sandbox_state(sandbox: server.Sandbox) -> server.Sandbox:
    """The sandbox, freshly seeded: what one test writes, the next does not see."""
    sandbox.reset()
    return sandbox


def _zendesk_config(sandbox: server.Sandbox, **overrides) -> ZendeskConfig:
    env = sandbox.environment()
    settings = dict(
        url=env["ZENDESK_URL"],
        email=env["ZENDESK_EMAIL"],
        api_token=env["ZENDESK_API_TOKEN"],
        jira_link_field_id=JIRA_ISSUE_FIELD,
        timeout=5.0,
    )
    settings.update(overrides)
    return ZendeskConfig(**settings)


def _jira_config(sandbox: server.Sandbox, **overrides) -> JiraConfig:
    env = sandbox.environment()
    settings = dict(
        url=env["JIRA_URL"], email=env["JIRA_EMAIL"], api_token=env["JIRA_API_TOKEN"], timeout=5.0
    )
    settings.update(overrides)
    return JiraConfig(**settings)


@pytest.fixture
def make_zendesk(sandbox_state: server.Sandbox) -> Callable[..., ZendeskConnector]:
    """A Zendesk connector on the sandbox; keyword arguments override its ``ZendeskConfig``."""
    return lambda **overrides: ZendeskConnector(_zendesk_config(sandbox_state, **overrides))


@pytest.fixture
def make_jira(sandbox_state: server.Sandbox) -> Callable[..., JiraConnector]:
    """A Jira connector on the sandbox; keyword arguments override its ``JiraConfig``."""
    return lambda **overrides: JiraConnector(_jira_config(sandbox_state, **overrides))


@pytest.fixture
def zendesk(make_zendesk) -> ZendeskConnector:
    return make_zendesk()


@pytest.fixture
def jira(make_jira) -> JiraConnector:
    """Deployment detected from serverInfo, which the sandbox answers with "Cloud"."""
    return make_jira()


@pytest.fixture
def jira_server(sandbox_state: server.Sandbox, make_jira) -> JiraConnector:
    sandbox_state.jira_state.configure(deployment_type="Server")
    return make_jira()
