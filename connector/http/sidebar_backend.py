"""What the sidebar needs from the service, as a Protocol: the blueprint never imports `worker`.

The app factory puts an object with these three methods at ``app.extensions["escalate"].sidebar``
(the same service object the webhook endpoints find their intake on). Dicts, not classes, cross the
boundary so that the JSON API can return them as they are.

A view::

    {"decision": {...the Decision JSON as `escalate evaluate` prints it...},
     "escalations": [{"id", "destination", "state", "severity", "jira_key", "jira_url",
                      "jira_status", "state_changed_at", "updated_at",
                      optional: "rollup", "rollup_summary", "stalled_since", "missed_check_ins"}, ...]}
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from flask import current_app

from connector.http.webhook_common import EXTENSION_KEY

View = dict[str, Any]
EscalationDict = dict[str, Any]


@runtime_checkable
class SidebarBackend(Protocol):
    def view(self, ticket_id: str) -> View | None:
        """The stored assessment (evaluated now if there is none) and the ticket's escalations;
        None when the ticket does not exist."""
        ...

    def create_issue(self, ticket_id: str, destination: str, actor: str) -> EscalationDict:
        """The linked issue for this destination, created once: a second call returns the same one."""
        ...

    def dismiss(self, ticket_id: str, destination: str, reason: str, actor: str) -> EscalationDict:
        """Record that the agent declined the suggestion, and why (kept for tuning the rules)."""
        ...


class BackendMissing(RuntimeError):
    """The app was built without a sidebar backend: a deployment error, answered with 503."""


def backend() -> SidebarBackend:
    service = current_app.extensions.get(EXTENSION_KEY)
    found = getattr(service, "sidebar", None)
    if found is None:
        raise BackendMissing("no sidebar backend on the service (app.extensions['escalate'].sidebar)")
    return found
