"""`escalate demo [--desk zendesk|jsm]`: the whole product on its embedded defaults, end to end, on this
machine.

The bundled sandbox plays Zendesk, Jira and a Jira Service Management desk on local ports; the service
runs on its own port with jobs inline and a fresh SQLite file; each demo ticket reaches it as a signed
webhook over HTTP, the way the helpdesk would deliver it (a Zendesk trigger webhook, or a Jira webhook
for a JSM request); the table shows what the service decided and did.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from werkzeug.serving import make_server

from connector.http.signing import sign_hub, sign_zendesk
from connector.sandbox.jsm_state import BOT, REQUESTS, jsm_state_for
from connector.sandbox.jsm_state import ENVIRONMENT as JSM_ENVIRONMENT
from connector.sandbox.seed import API_USER_ID
from connector.sandbox.server import Sandbox, start
from rules.ruleset import Destination, Ruleset, ZendeskTarget
from worker.app import create_app
from worker.config import Settings
from worker.runtime import runtime_for
from worker.store import TicketRef

# The sandbox's tickets the demo walks through, in order: an outage, a security report, a churn threat,
# a how-to question, lost data, three customers with one CSV-export symptom, a stalled ticket, a feature
# request and an on-premises deployment.
DEMO_TICKETS = (101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111)
L2_GROUP = 2  # the sandbox's "Support L2" group
# The same eleven cases as requests on the sandbox's JSM desk (DESK-1 … DESK-11).
DEMO_REQUESTS = tuple(
    REQUESTS[name]
    for name in (
        "outage", "security", "churn", "howto", "data_loss", "csv_export_1", "csv_export_2",
        "csv_export_3", "stalled", "feature_request", "on_prem",
    )
)  # fmt: skip
# On the desk, senior support is a queue: the L2 hand-over sets this field (JSM_L2_FIELD, JSM_L2_VALUE).
JSM_L2 = {"JSM_L2_FIELD": "customfield_10070", "JSM_L2_VALUE": '{"value": "Tier 2"}'}
DESKS = ("zendesk", "jsm")


def demo_rules(base: Ruleset) -> Ruleset:
    """The shipped rules, with senior support pointed at the sandbox's L2 group."""
    destinations = dict(base.destinations)
    l2 = destinations[Destination.SUPPORT_L2]
    destinations[Destination.SUPPORT_L2] = l2.model_copy(
        update={"zendesk": ZendeskTarget(group_id=str(L2_GROUP))}
    )
    return base.model_copy(update={"destinations": destinations})


def signed_delivery(url: str, secret: str, ticket_id: int) -> requests.Response:
    body = json.dumps({"type": "escalate.ticket_changed", "version": 1, "ticket_id": str(ticket_id)}).encode()
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {
        "Content-Type": "application/json",
        "X-Zendesk-Webhook-Signature": sign_zendesk(secret, stamp, body),
        "X-Zendesk-Webhook-Signature-Timestamp": stamp,
        "X-Zendesk-Webhook-Invocation-Id": f"demo-{ticket_id}-{secrets.token_hex(4)}",
    }
    return requests.post(f"{url}/webhooks/zendesk", data=body, headers=headers, timeout=15)


def signed_jira_delivery(url: str, secret: str, key: str) -> requests.Response:
    """A Jira webhook saying the JSM request ``key`` was created, signed as Jira signs it."""
    payload = {"webhookEvent": "jira:issue_created", "issue": {"key": key, "fields": {}}}
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature": sign_hub(secret, body),
        "X-Atlassian-Webhook-Identifier": f"demo-{key}-{secrets.token_hex(4)}",
    }
    return requests.post(f"{url}/webhooks/jira", data=body, headers=headers, timeout=15)


def run_demo(database: Path, console: Console | None = None, desk: str = "zendesk") -> list[dict[str, Any]]:
    if desk not in DESKS:
        raise ValueError(f"desk must be one of {', '.join(DESKS)}")
    console = console or Console(width=max(Console().width, 140))
    # The three local servers' access logs would bury the table.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    database.parent.mkdir(parents=True, exist_ok=True)
    database.unlink(missing_ok=True)
    with start(host="127.0.0.1") as sandbox:
        env = sandbox.environment()
        if desk == "jsm":
            # The desk's knobs are read from the environment, as in a deployment (this process is the demo).
            os.environ.update({**JSM_ENVIRONMENT, **JSM_L2})
        settings = Settings(
            zendesk_url=env["ZENDESK_URL"],
            zendesk_email=env["ZENDESK_EMAIL"],
            zendesk_api_token=env["ZENDESK_API_TOKEN"],
            zendesk_webhook_secret=secrets.token_urlsafe(24),
            jira_webhook_secret=secrets.token_urlsafe(24),
            jsm_project_key=JSM_ENVIRONMENT["JSM_PROJECT_KEY"] if desk == "jsm" else None,
            jira_url=env["JIRA_URL"],
            jira_email=env["JIRA_EMAIL"],
            jira_api_token=env["JIRA_API_TOKEN"],
            database_url=f"sqlite:///{database}",
        )
        runtime = runtime_for(settings)
        runtime.rules = demo_rules(runtime.rules)
        app = create_app(settings)
        service = app.extensions["escalate"]
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_port}"
        helpdesk = f"JSM desk {JSM_ENVIRONMENT['JSM_PROJECT_KEY']}" if desk == "jsm" else "Zendesk"
        console.print(
            f"sandbox {helpdesk} and Jira at {sandbox.jira_url}"
            + (f", Zendesk at {sandbox.zendesk_url}" if desk == "zendesk" else "")
            + f"; service {url}; store {database}; jobs inline"
        )
        try:
            if desk == "jsm":
                _deliver_all(console, url, settings, service, DEMO_REQUESTS, _send_jira)
                rows = _jsm_results(sandbox, service)
            else:
                _deliver_all(console, url, settings, service, DEMO_TICKETS, _send_zendesk)
                rows = _results(sandbox, service, settings)
        finally:
            server.shutdown()
            service.queue.close()
    _print(console, rows, desk)
    return rows


def _send_zendesk(url: str, settings: Settings, ticket: Any) -> requests.Response:
    return signed_delivery(url, settings.zendesk_webhook_secret or "", int(ticket))


def _send_jira(url: str, settings: Settings, key: Any) -> requests.Response:
    return signed_jira_delivery(url, settings.jira_webhook_secret or "", str(key))


def _deliver_all(
    console: Console,
    url: str,
    settings: Settings,
    service: Any,
    tickets: tuple[Any, ...],
    send: Callable[[str, Settings, Any], requests.Response],
) -> None:
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("judging tickets", total=len(tickets))
        for ticket_id in tickets:
            answer = send(url, settings, ticket_id)
            if answer.status_code != 202:
                raise RuntimeError(
                    f"webhook for ticket {ticket_id} answered {answer.status_code}: {answer.text}"
                )
            service.queue.join(timeout=120)
            progress.advance(task)


def _results(sandbox: Sandbox, service: Any, settings: Settings) -> list[dict[str, Any]]:
    rows = []
    for ticket_id in DEMO_TICKETS:
        ref = TicketRef.of("zendesk", ticket_id)
        ticket = sandbox.zendesk_state.ticket(ticket_id) or {}
        rows.append(
            _row(
                ticket_id,
                ticket.get("subject", ""),
                service.store.latest_assessment(ref),
                service.store.escalations_for_ticket(ref),
                sum(
                    1
                    for n in sandbox.zendesk_state.internal_notes(ticket_id)
                    if n["author_id"] == API_USER_ID
                ),
            )
        )
    return rows


def _jsm_results(sandbox: Sandbox, service: Any) -> list[dict[str, Any]]:
    desk = jsm_state_for(sandbox.jira_state)
    rows = []
    for key in DEMO_REQUESTS:
        ref = TicketRef.of("jsm", key)
        request = desk.request(key)
        ours = [c for c in request["comments"] if c["author"] == BOT["accountId"] and not c["public"]]
        rows.append(
            _row(
                key,
                str(desk.issue(key).get("summary") or ""),
                service.store.latest_assessment(ref),
                service.store.escalations_for_ticket(ref),
                len(ours),
            )
        )
    return rows


def _row(ticket: Any, subject: str, assessment: Any, escalations: list[Any], notes: int) -> dict[str, Any]:
    decision = assessment.decision if assessment else {}
    return {
        "ticket": ticket,
        "subject": subject,
        "decision": (
            f"{decision.get('destination')} / {decision.get('severity')}"
            if decision.get("escalate")
            else "keep in support"
        ),
        "why": _why(decision),
        "done": "; ".join(f"{e.destination}: {e.jira_key or e.state.value}" for e in escalations) or "-",
        "notes": notes,
        "carried_out": sum(1 for e in escalations if e.state.value not in ("suggested", "dismissed")),
    }


def _why(decision: dict[str, Any]) -> str:
    """The triggers of an escalation; for a ticket kept in support, what holds it there."""
    triggers = [t["id"] for t in decision.get("triggers", [])]
    holds = [h["id"] for h in decision.get("hold_reasons", [])]
    shown = triggers if decision.get("escalate") else holds or triggers
    return ", ".join(shown) or "-"


def _print(console: Console, rows: list[dict[str, Any]], desk: str = "zendesk") -> None:
    table = Table(title="Escalate demo: what the service decided and did")
    for column in ("ticket", "subject", "decision", "why", "escalation", "notes"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            str(r["ticket"]), r["subject"][:48], r["decision"], r["why"], r["done"], str(r["notes"])
        )
    console.print(table)
    created = sum(r["carried_out"] for r in rows)
    console.print(
        f"{len(rows)} tickets judged; {created} escalation(s) carried out; the rest are suggestions "
        + (
            "an agent confirms by labelling the request escalate_create."
            if desk == "jsm"
            else "an agent confirms in the sidebar."
        )
    )
