"""The escalation package (POLICY.md §6): sections in order, what it lifts from the ticket, what it says
is missing, per-destination emphasis, and secrets that never leave the helpdesk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connector.render import FORMATS, render_html
from rules.adapters.zendesk import case_from_bundle
from rules.evaluate import evaluate_bundle, package_for
from rules.package_document import HEADINGS, package_document
from rules.ruleset import Destination

ROOT = Path(__file__).resolve().parents[1]


def load(path: str) -> dict:
    return json.loads((ROOT / path).read_text())


def test_sections_in_policy_order(lexical_matcher) -> None:
    package = evaluate_bundle(load("examples/outage.json"), matcher=lexical_matcher).package
    doc = package_document(package)
    assert doc.title.startswith("ESCALATION: ")
    assert tuple(s.heading for s in doc.sections) == HEADINGS
    markdown = FORMATS["markdown"](doc)
    positions = [markdown.index(f"## {h}") for h in HEADINGS]
    assert positions == sorted(positions)


def test_reproduction_and_actions_are_lifted_from_the_ticket(lexical_matcher) -> None:
    package = evaluate_bundle(load("examples/outage.json"), matcher=lexical_matcher).package
    repro = package["reproduction"]
    assert repro["steps"][0] == "Log in at https://app.example.com as any user"
    assert repro["expected"] == "the overview widgets load"
    assert repro["observed"].startswith("HTTP 500")
    assert ["OS", "Windows 11, macOS 15"] in repro["environment"]
    actions = package["actions_taken"]
    assert actions[0]["what"].startswith("I reproduced the 500 errors")  # the greeting is skipped
    assert actions[0]["outcome"].startswith("customer replied: We need this fixed today")
    assert actions[1]["public"] is False and actions[1]["outcome"] == "Needs engineering."
    assert package["request"]["deadline"] == "2026-11-20T15:30:00Z"  # the SLA breach beats 4 hours
    assert package["communication"]["escalation_risk"].startswith("high")


def test_missing_names_the_gaps(lexical_matcher) -> None:
    decision = evaluate_bundle(load("tests/fixtures/policy/severity__medium.json"), matcher=lexical_matcher)
    for gap in ("no reproduction steps", "no expected outcome", "no environment", "no SLA data",
                "no actions recorded from support", "no public reply to the customer yet"):
        assert gap in decision.missing
    assert "no reproduction steps" not in evaluate_bundle(load("examples/outage.json"),
                                                          matcher=lexical_matcher).missing


@pytest.mark.parametrize(
    ("destination", "labels"),
    [
        (Destination.SECURITY, ["Observations", "Affected parties and systems", "Containment already taken",
                                "Urgency"]),
        (Destination.PRODUCT, ["Use case", "Request frequency", "Requested by", "Competitive context"]),
        (Destination.LEADERSHIP, ["Business context", "What is at stake", "Decision needed"]),
        (Destination.SUPPORT_L2, ["Issue summary", "Troubleshooting performed", "Customer context"]),
    ],
)
def test_each_destination_gets_what_it_needs_most(lexical_matcher, destination, labels) -> None:
    case = case_from_bundle(load("examples/security_report.json"))
    package = package_for(case, destination, matcher=lexical_matcher)
    assert [label for label, _ in package["business_impact"]["focus"]] == labels
    assert package["routed_to"]["destination"] == destination.value


def test_security_package_records_containment(lexical_matcher) -> None:
    package = evaluate_bundle(load("examples/security_report.json"), matcher=lexical_matcher).package
    focus = dict(package["business_impact"]["focus"])
    assert "Revoked the customer's API token" in focus["Containment already taken"]
    assert "no containment recorded" not in package["missing"]


SECRETS = ["hunter2", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "4111 1111 1111 1111"]


def test_secrets_never_leave_the_helpdesk(lexical_matcher) -> None:
    bundle = load("examples/outage.json")
    bundle["ticket"]["subject"] = "Checkout broken for card 4111 1111 1111 1111"
    bundle["ticket"]["description"] = (
        "Login fails with password: hunter2 and our key sk_live_4eC39HqLyjWDarjtT1zdp7dc is rejected.\n\n"
        "Steps to reproduce:\n1. Sign in with password: hunter2\n2. Pay with 4111 1111 1111 1111\n"
    )
    bundle["comments"][0]["body"] = bundle["ticket"]["description"]
    decision = evaluate_bundle(bundle, matcher=lexical_matcher)
    doc = package_document(decision.package)
    outputs = [json.dumps(decision.package), render_html(doc), *(render(doc) for render in FORMATS.values())]
    for text in outputs:
        for secret in SECRETS:
            assert secret not in text
    assert {"password", "card_number"} <= set(decision.package["redacted"])
    assert "[REDACTED" in decision.package["reproduction"]["steps"][0]
