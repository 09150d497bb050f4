"""From a case to a decision: triggers, holds, destination, severity, impact and the package, with the
trace that explains each. Pure: no I/O beyond loading the ruleset and the similarity model once."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from rules.adapters.zendesk import case_from_bundle
from rules.case import Case
from rules.decision import Decision, HoldReason, Trigger
from rules.facts import Facts
from rules.holds import find_holds
from rules.impact import quantify
from rules.package import PackageInput, build_package
from rules.routing import route
from rules.ruleset import Destination, Ruleset, load_ruleset
from rules.severity import assess
from rules.similarity import SymptomMatcher, load_matcher
from rules.triggers import detect


@lru_cache(maxsize=1)
def default_ruleset() -> Ruleset:
    return load_ruleset()


def matcher_for(rules: Ruleset) -> SymptomMatcher:
    s = rules.similarity
    return _matcher(s.matcher, s.semantic_threshold, s.lexical_threshold)


@lru_cache(maxsize=8)
def _matcher(kind: str, semantic_threshold: float | None, lexical_threshold: float | None) -> SymptomMatcher:
    return load_matcher(kind, semantic_threshold=semantic_threshold, lexical_threshold=lexical_threshold)


def evaluate(case: Case, rules: Ruleset | None = None, matcher: SymptomMatcher | None = None) -> Decision:
    rules = rules or default_ruleset()
    facts = Facts(case, rules, matcher or matcher_for(rules))
    triggers = detect(facts)
    holds = find_holds(facts)
    routes = route(facts, triggers)
    hard = [t for t in triggers if t.hard]
    escalate = bool(routes) and (not holds or bool(hard))
    impact = quantify(facts)

    destination = routes[0].destination if escalate else None
    also_notify = tuple(dict.fromkeys(r.destination for r in routes[1:] if r.destination != destination))
    severity, severity_reasons = assess(facts, triggers) if escalate else (None, [])
    package = None
    if escalate and destination is not None and severity is not None:
        package = build_package(
            PackageInput(
                facts, destination, list(also_notify), severity, severity_reasons, triggers, holds, impact
            )
        )
    return Decision(
        ticket_id=case.ticket.id,
        escalate=escalate,
        destination=destination,
        also_notify=also_notify if escalate else (),
        severity=severity,
        triggers=tuple(triggers),
        hold_reasons=tuple(holds),
        routing=tuple(routes),
        severity_reasons=tuple(severity_reasons),
        impact=impact,
        package=package,
        missing=tuple(package["missing"]) if package else (),
        related_tickets=tuple(
            {
                "ticket_id": r.ticket.id,
                "organization_id": r.ticket.organization_id,
                "organization": facts.org_name(r.ticket.organization_id),
                "status": r.ticket.status,
                "similarity": round(r.score, 3),
            }
            for r in facts.related
        ),
        automatic=bool(escalate and destination and rules.is_automatic(destination, severity)),
        ruleset_version=rules.version,
        matcher=facts.matcher.name,
        evaluated_at=case.now.isoformat().replace("+00:00", "Z"),
        verdict=verdict(escalate, destination, severity, triggers, holds),
    )


def package_for(
    case: Case, destination: Destination, rules: Ruleset | None = None, matcher: SymptomMatcher | None = None
) -> dict[str, Any]:
    """A package for a destination an agent chose, whether or not the rules would escalate."""
    rules = rules or default_ruleset()
    facts = Facts(case, rules, matcher or matcher_for(rules))
    triggers = detect(facts)
    severity, reasons = assess(facts, triggers)
    others = [r.destination for r in route(facts, triggers) if r.destination != destination]
    return build_package(
        PackageInput(
            facts, destination, others, severity, reasons, triggers, find_holds(facts), quantify(facts)
        )
    )


def evaluate_bundle(
    bundle: Any,
    now: datetime | None = None,
    rules: Ruleset | None = None,
    matcher: SymptomMatcher | None = None,
) -> Decision:
    return evaluate(case_from_bundle(bundle, now=now), rules, matcher)


def verdict(
    escalate: bool,
    destination: Destination | None,
    severity: Any,
    triggers: list[Trigger],
    holds: list[HoldReason],
) -> str:
    fired = ", ".join(t.id for t in triggers)
    held = ", ".join(h.id for h in holds)
    if escalate and destination is not None:
        over = f"; overrides {held}" if holds else ""
        return f"Escalate to {destination.value} ({severity.value}): {fired}{over}"
    if holds:
        despite = f" despite {fired}" if fired else ""
        return f"Keep in support{despite}: {held}"
    return "Keep in support: no escalation trigger fired"
