"""The engine's edges: SLA boundaries, tolerant input, what is not security, and odd bundles."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules.adapters.zendesk import case_from_bundle
from rules.deadline import hard_deadline
from rules.evaluate import default_ruleset, evaluate, evaluate_bundle
from rules.facts import Facts, SlaPosition
from rules.ruleset import Severity

POLICY = Path(__file__).parent / "fixtures" / "policy"
NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


def load(name: str) -> dict:
    return json.loads((POLICY / f"{name}.json").read_text())


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def sla_position(lexical_matcher, breach_at: datetime, stage: str = "active") -> SlaPosition:
    bundle = load("severity__medium")
    bundle["ticket"]["slas"] = {
        "policy_metrics": [{"breach_at": _stamp(breach_at), "stage": stage, "metric": "next_reply_time"}]
    }
    return Facts(case_from_bundle(bundle), default_ruleset(), lexical_matcher).sla_position


def test_sla_position_at_the_boundaries(lexical_matcher) -> None:
    assert sla_position(lexical_matcher, NOW - timedelta(seconds=1)) is SlaPosition.BREACHED
    assert sla_position(lexical_matcher, NOW) is SlaPosition.AT_RISK
    assert sla_position(lexical_matcher, NOW + timedelta(hours=2)) is SlaPosition.AT_RISK
    assert sla_position(lexical_matcher, NOW + timedelta(hours=2, seconds=1)) is SlaPosition.COMPLIANT
    # Only active metrics count: a paused metric long past its breach time is not a breach.
    assert sla_position(lexical_matcher, NOW - timedelta(hours=5), stage="paused") is SlaPosition.COMPLIANT


def test_no_sla_data_is_unknown_not_compliant(lexical_matcher) -> None:
    decision = evaluate_bundle(load("severity__medium"), matcher=lexical_matcher).to_dict()
    assert decision["impact"]["contractual"]["sla_position"] == "unknown"
    assert "no SLA data" in decision["missing"]


def test_forgotten_password_is_not_security(matcher) -> None:
    for text in (
        "I forgot my password",
        "Please reset my 2FA, I lost my phone",
        "How do I set up SSO with Okta?",
        "The password reset email never arrives",
    ):
        bundle = load("severity__medium")
        bundle["ticket"].update(subject=text, description=text, tags=[])
        bundle["comments"] = []
        fired = [t["family"] for t in evaluate_bundle(bundle, matcher=matcher).to_dict()["triggers"]]
        assert "security" not in fired, text


def test_negated_data_loss_does_not_fire(lexical_matcher) -> None:
    bundle = load("severity__medium")
    bundle["ticket"]["description"] = "The sync was slow but there was no data loss."
    bundle["comments"] = []
    fired = [t["id"] for t in evaluate_bundle(bundle, matcher=lexical_matcher).to_dict()["triggers"]]
    assert "data_loss" not in fired


def test_event_webhook_shapes_are_tolerated(lexical_matcher) -> None:
    """String ids and upper-case statuses, as Zendesk's event webhooks send them, judge the same."""
    plain = load("trigger__outage")
    shouty = copy.deepcopy(plain)
    t = shouty["ticket"]
    t.update(
        id=str(t["id"]),
        status="OPEN",
        priority="URGENT",
        type="INCIDENT",
        organization_id=str(t["organization_id"]),
        requester_id=str(t["requester_id"]),
    )
    for org in shouty["organizations"]:
        org["id"] = str(org["id"])
    a = evaluate_bundle(plain, matcher=lexical_matcher).to_dict()
    b = evaluate_bundle(shouty, matcher=lexical_matcher).to_dict()
    assert (a["escalate"], a["destination"], a["severity"]) == (
        b["escalate"],
        b["destination"],
        b["severity"],
    )
    assert a["impact"]["revenue"] == b["impact"]["revenue"]


def test_a_bare_ticket_is_judged_with_unknowns(lexical_matcher) -> None:
    decision = evaluate_bundle(
        {"ticket": {"id": 7, "subject": "Production is down"}}, now=NOW, matcher=lexical_matcher
    ).to_dict()
    assert decision["escalate"] is True
    assert decision["destination"] == "engineering"
    assert decision["impact"]["revenue"]["arr_exposed"] == "unknown"
    assert decision["impact"]["duration"]["hours_open"] == "unknown"
    assert "no organization: revenue and contract unknown" in decision["missing"]


def test_hard_deadlines() -> None:
    rules = default_ruleset().deadlines
    friday = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)  # a Friday
    assert hard_deadline(Severity.CRITICAL, friday, rules)[0] == friday + timedelta(hours=4)
    assert hard_deadline(Severity.HIGH, friday, rules)[0] == datetime(2026, 11, 23, 17, 0, tzinfo=UTC)
    assert hard_deadline(Severity.MEDIUM, friday, rules)[0] == datetime(2026, 11, 27, 17, 0, tzinfo=UTC)
    soon = friday + timedelta(hours=1)
    assert hard_deadline(Severity.HIGH, friday, rules, sla_breach_at=soon) == (
        soon,
        "the SLA breach comes sooner",
    )


def test_decision_explains_itself(matcher) -> None:
    decision = evaluate_bundle(load("trigger__repeated_reports"), matcher=matcher).to_dict()
    trigger = decision["triggers"][0]
    assert trigger["family"] == "recurring_pattern"
    assert set(trigger["evidence"]["tickets"]) == {"321", "322"}
    assert decision["verdict"].startswith("Escalate to engineering (medium): repeated_reports")
    assert decision["matcher"].startswith("semantic")
    assert {r["ticket_id"] for r in decision["related_tickets"]} == {"321", "322"}


def test_two_high_value_accounts_roll_up_revenue(matcher) -> None:
    decision = evaluate_bundle(load("severity__critical_two_high_value"), matcher=matcher).to_dict()
    assert decision["impact"]["revenue"]["arr_exposed"] == 420000 + 150000
    assert decision["impact"]["breadth"]["organizations"] == 2
    assert any("2 high-value accounts" in r["summary"] for r in decision["severity_reasons"])


def test_security_escalations_are_automatic_by_default(lexical_matcher) -> None:
    assert evaluate_bundle(load("trigger__security"), matcher=lexical_matcher).automatic is True
    assert evaluate_bundle(load("severity__medium"), matcher=lexical_matcher).automatic is False


# --- odd input never raises -------------------------------------------------------------------------
_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=40))
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
_ticket_keys = [
    "id",
    "subject",
    "description",
    "status",
    "priority",
    "type",
    "tags",
    "organization_id",
    "requester_id",
    "created_at",
    "custom_fields",
    "slas",
    "url",
]


@st.composite
def odd_bundles(draw):
    base = load(draw(st.sampled_from(["trigger__repeated_reports", "dest__security_wins", "hold__coaching"])))
    ticket = base["ticket"]
    for key in draw(st.lists(st.sampled_from(_ticket_keys), max_size=5, unique=True)):
        if key != "id":
            ticket[key] = draw(_json)
    for section in draw(
        st.lists(
            st.sampled_from(["comments", "users", "organizations", "history", "audits"]),
            max_size=3,
            unique=True,
        )
    ):
        base[section] = draw(st.one_of(_json, st.lists(_json, max_size=3)))
    if draw(st.booleans()):
        ticket["id"] = draw(
            st.one_of(st.integers(min_value=1), st.text(alphabet="0123456789", min_size=1, max_size=6))
        )
    return base


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(odd_bundles())
def test_odd_bundles_never_raise(lexical_matcher, bundle) -> None:
    decision = evaluate(case_from_bundle(bundle, now=NOW), matcher=lexical_matcher).to_dict()
    json.dumps(decision)  # the decision is always serialisable
    assert decision["escalate"] in (True, False)


def test_depth_of_impact(lexical_matcher) -> None:
    def level(name: str) -> str:
        return evaluate_bundle(load(name), matcher=lexical_matcher).to_dict()["impact"]["depth"]["level"]

    assert level("trigger__outage") == "blocked"
    assert level("severity__high_blocked") == "blocked"  # "We cannot approve any invoice"
    assert level("trigger__repeated_reports") == "degraded"  # the export fails with a timeout
    assert level("severity__medium") == "inconvenienced"  # a tooltip covers a button
