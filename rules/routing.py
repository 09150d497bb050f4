"""POLICY.md §3: where an escalation goes. The first destination that holds is primary; the rest are
notified."""

from __future__ import annotations

from rules.decision import Evidence, RouteReason, Trigger
from rules.facts import Facts
from rules.ruleset import Destination, Family

# A tuple, not a set: the order of the reasons a decision gives must not change from process to process.
ENGINEERING_FAMILIES = (Family.TECHNICAL_BARRIER, Family.DIAGNOSTIC_CEILING, Family.WIDESPREAD_HARM)


def _ids(triggers: list[Trigger]) -> str:
    return ", ".join(t.id for t in triggers)


def capability_gap(f: Facts) -> Evidence | None:
    """A feature request from enough organizations, or from one high-value account."""
    hits = f.find(f.rules.phrases.feature_request, f.customer_text)
    tagged = f.ticket.tags & {t.lower() for t in f.rules.tags.feature_request}
    if not hits and not tagged:
        return None
    phrases = tuple(h.text for h in hits) or tuple(sorted(tagged))
    reporters = f.reporters(f.related)
    if len(reporters) >= f.rules.thresholds.product_request_organizations:
        return Evidence(
            f"feature request from {len(reporters)} organizations within "
            f"{f.rules.thresholds.lookback_days:g} days",
            phrases=phrases,
            tickets=tuple(r.ticket.id for r in f.related),
            values={"organizations": len(reporters)},
        )
    if f.is_high_value:
        arr = f.arr(f.organization)
        return Evidence(
            f"feature request from an account with ARR {f.rules.fields.currency} {arr:,.0f}",
            phrases=phrases,
            values={"arr": arr},
        )
    return None


def route(f: Facts, triggers: list[Trigger]) -> list[RouteReason]:
    """Every destination that holds, in precedence order, each with why."""
    by_family: dict[Family, list[Trigger]] = {}
    for t in triggers:
        by_family.setdefault(t.family, []).append(t)
    reasons: list[RouteReason] = []

    if Family.SECURITY in by_family:
        reasons.append(
            RouteReason(
                Destination.SECURITY,
                Evidence(f"security trigger ({_ids(by_family[Family.SECURITY])}): skips tier progression"),
            )
        )

    technical = [t for fam in ENGINEERING_FAMILIES for t in by_family.get(fam, [])]
    recurring_defect = f.is_defect and Family.RECURRING_PATTERN in by_family
    if technical or recurring_defect:
        cause = technical + (by_family[Family.RECURRING_PATTERN] if recurring_defect else [])
        reasons.append(RouteReason(Destination.ENGINEERING, Evidence(f"needs engineering ({_ids(cause)})")))

    if Family.BUSINESS_STAKES in by_family:
        reasons.append(
            RouteReason(
                Destination.LEADERSHIP,
                Evidence(f"business stakes ({_ids(by_family[Family.BUSINESS_STAKES])})"),
            )
        )

    gap = capability_gap(f)
    if gap is not None:
        reasons.append(RouteReason(Destination.PRODUCT, gap))

    stalled = by_family.get(Family.STALLED_PROGRESS, [])
    if stalled and not f.confirmed_defect_reason:
        reasons.append(
            RouteReason(
                Destination.SUPPORT_L2,
                Evidence(
                    f"progress stalled with no confirmed defect ({_ids(stalled)}): "
                    "deeper investigation needed"
                ),
            )
        )

    if triggers and not reasons:
        # Something fired that no specialist owns (a rising priority on a question, say): senior support
        # looks deeper rather than the signal being dropped.
        reasons.append(
            RouteReason(
                Destination.SUPPORT_L2,
                Evidence(
                    f"signals with no specialist owner ({_ids(triggers)}): senior support to investigate"
                ),
            )
        )
    return reasons
