"""What a job needs besides its event, built once per process: the ruleset, the symptom matcher and the
connectors (Zendesk, Jira, and the JSM desk when configured). Secrets come from the settings (the
environment), never from files; a connector whose settings are missing (for JSM, ``JSM_PROJECT_KEY``)
raises the connectors' ``ConfigError`` when first used."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from functools import cached_property

from connector.jira_client import JiraConfig
from connector.jira_connector import JiraConnector
from connector.jsm_config import JsmConfig
from connector.jsm_connector import JsmConnector
from connector.zendesk_client import ZendeskConfig
from connector.zendesk_connector import ZendeskConnector
from rules.evaluate import matcher_for
from rules.ruleset import Ruleset, load_ruleset
from rules.similarity import SymptomMatcher
from worker.config import Settings
from worker.desk import Desk, desk_for


@dataclass
class Runtime:
    settings: Settings

    @cached_property
    def rules(self) -> Ruleset:
        return load_ruleset(self.settings.rules_path)

    @cached_property
    def matcher(self) -> SymptomMatcher:
        return matcher_for(self.rules)

    @cached_property
    def zendesk(self) -> ZendeskConnector:
        return ZendeskConnector(ZendeskConfig.from_env(self._environment()))

    @cached_property
    def jira(self) -> JiraConnector:
        return JiraConnector(JiraConfig.from_env(self._environment()))

    @cached_property
    def jsm(self) -> JsmConnector:
        """The Jira Service Management desk (``JSM_*`` settings), on the same Jira site and client."""
        return JsmConnector(JsmConfig.from_env(self._environment()), self.jira)

    def desk(self, source: str) -> Desk:
        """Where a ticket of ``source`` (``zendesk`` or ``jsm``) lives."""
        return desk_for(self, source)

    def _environment(self) -> dict[str, str]:
        return self.settings.connector_environment(os.environ)


_runtimes: dict[int, Runtime] = {}
_lock = threading.Lock()


def runtime_for(settings: Settings) -> Runtime:
    """One runtime per settings object: the model and the HTTP sessions are reused across jobs."""
    with _lock:
        runtime = _runtimes.get(id(settings))
        if runtime is None or runtime.settings is not settings:
            runtime = _runtimes[id(settings)] = Runtime(settings)
        return runtime
