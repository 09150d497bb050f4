"""`escalate demo`: the whole product on its embedded defaults, end to end, on this machine.

The bundled sandbox plays Zendesk and Jira on local ports; the service runs on its own port with jobs
inline and a fresh SQLite file; each demo ticket reaches it as a signed Zendesk webhook over HTTP, the
way Zendesk would deliver it; the table shows what the service decided and did.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from werkzeug.serving import make_server

from connector.http.signing import sign_zendesk
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


def run_demo(database: Path, console: Console | None = None) -> list[dict[str, Any]]:
    console = console or Console(width=max(Console().width, 140))
    # The three local servers' access logs would bury the table.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    database.parent.mkdir(parents=True, exist_ok=True)
    database.unlink(missing_ok=True)
    with start(host="127.0.0.1") as sandbox:
        env = sandbox.environment()
        settings = Settings(
            zendesk_url=env["ZENDESK_URL"],
            zendesk_email=env["ZENDESK_EMAIL"],
            zendesk_api_token=env["ZENDESK_API_TOKEN"],
            zendesk_webhook_secret=secrets.token_urlsafe(24),
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
        console.print(
            f"sandbox Zendesk {sandbox.zendesk_url}, Jira {sandbox.jira_url}; service {url}; "
            f"store {database}; jobs inline"
        )
        try:
            _deliver_all(console, url, settings, service)
            rows = _results(sandbox, service, settings)
        finally:
            server.shutdown()
            service.queue.close()
    _print(console, rows)
    return rows


def _deliver_all(console: Console, url: str, settings: Settings, service: Any) -> None:
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("judging tickets", total=len(DEMO_TICKETS))
        for ticket_id in DEMO_TICKETS:
            answer = signed_delivery(url, settings.zendesk_webhook_secret or "", ticket_id)
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
        assessment = service.store.latest_assessment(ref)
        decision = assessment.decision if assessment else {}
        escalations = service.store.escalations_for_ticket(ref)
        ticket = sandbox.zendesk_state.ticket(ticket_id) or {}
        rows.append(
            {
                "ticket": ticket_id,
                "subject": ticket.get("subject", ""),
                "decision": (
                    f"{decision.get('destination')} / {decision.get('severity')}"
                    if decision.get("escalate")
                    else "keep in support"
                ),
                "why": ", ".join(t["id"] for t in decision.get("triggers", []))
                or ", ".join(h["id"] for h in decision.get("hold_reasons", []))
                or "-",
                "done": "; ".join(f"{e.destination}: {e.jira_key or e.state.value}" for e in escalations)
                or "-",
                "notes": len(sandbox.zendesk_state.internal_notes(ticket_id)),
                "carried_out": sum(1 for e in escalations if e.state.value not in ("suggested", "dismissed")),
            }
        )
    return rows


def _print(console: Console, rows: list[dict[str, Any]]) -> None:
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
        "an agent confirms in the sidebar."
    )
