"""A case fetched from the sandbox through the real zenpy client judges the same as the bundle file that
holds the same facts: the connector assembles what the rules expect, in Zendesk's shapes."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from rules.adapters.coerce import timestamp
from rules.adapters.zendesk import case_from_bundle
from rules.evaluate import evaluate

ROOT = Path(__file__).resolve().parents[1]


def load_into_sandbox(state, bundle: dict) -> int:
    """Make the sandbox hold exactly a bundle's organizations, users, ticket, comments, audits and history
    (its seeded tickets would otherwise be history too)."""
    for table in (state.tickets, state.comments, state.audits):
        table.clear()
    for org in bundle.get("organizations", []):
        state.organizations[org["id"]] = copy.deepcopy(org)
    for user in bundle.get("users", []):
        state.users[user["id"]] = copy.deepcopy(user)
    ticket = copy.deepcopy(bundle["ticket"])
    for t in [ticket, *copy.deepcopy(bundle.get("history", []))]:
        state.tickets[t["id"]] = t
        state.comments.setdefault(t["id"], [])
        state.audits.setdefault(t["id"], [])
    state.comments[ticket["id"]] = copy.deepcopy(bundle.get("comments", []))
    state.audits[ticket["id"]] = copy.deepcopy(bundle.get("audits", []))
    return ticket["id"]


def essentials(decision: dict) -> dict:
    """Everything but links and times that name where the ticket lives."""
    return {
        "escalate": decision["escalate"],
        "destination": decision["destination"],
        "also_notify": decision["also_notify"],
        "severity": decision["severity"],
        "triggers": [(t["id"], t["evidence"]["summary"]) for t in decision["triggers"]],
        "holds": [h["id"] for h in decision["hold_reasons"]],
        "impact": decision["impact"],
        "missing": decision["missing"],
        "related": [r["ticket_id"] for r in decision["related_tickets"]],
        "summary": (decision["package"] or {}).get("summary"),
    }


@pytest.mark.parametrize("example", ["outage", "security_report", "churn_threat", "howto_question"])
def test_fetched_bundle_judges_like_the_file(example, zendesk, sandbox_state, lexical_matcher) -> None:
    bundle = json.loads((ROOT / "examples" / f"{example}.json").read_text())
    now = timestamp(bundle["now"])
    ticket_id = load_into_sandbox(sandbox_state.zendesk_state, bundle)

    fetched = zendesk.fetch_bundle(ticket_id, now=now)

    from_file = evaluate(case_from_bundle(bundle, now=now), matcher=lexical_matcher).to_dict()
    from_sandbox = evaluate(case_from_bundle(fetched, now=now), matcher=lexical_matcher).to_dict()
    assert essentials(from_sandbox) == essentials(from_file)
