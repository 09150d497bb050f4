"""POLICY.md §5: the six dimensions of business impact. A dimension with no data says "unknown"."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from rules.facts import Facts

UNKNOWN = "unknown"


def _iso(moment: datetime | None) -> str:
    return moment.isoformat().replace("+00:00", "Z") if moment else UNKNOWN


def breadth(f: Facts) -> dict[str, Any]:
    org_ids = f.affected_org_ids()
    tickets = [f.ticket.id, *(r.ticket.id for r in f.related)]
    half = timedelta(days=f.rules.thresholds.lookback_days / 2)
    dated = [r.ticket.created_at for r in f.related if r.ticket.created_at]
    if f.ticket.created_at:
        dated.append(f.ticket.created_at)
    recent = sum(1 for d in dated if d >= f.now - half)
    earlier = len(dated) - recent
    growing: bool | str = UNKNOWN if len(dated) < 2 else recent > earlier
    return {
        "organizations": len(org_ids),
        "organization_names": [f.org_name(o) for o in org_ids],
        "tickets": len(tickets),
        "ticket_ids": tickets,
        "reporters": len(f.reporters(f.related)),
        "growing": growing,
        "recent_half_window": recent,
        "earlier_half_window": earlier,
    }


def depth(f: Facts) -> dict[str, Any]:
    """Blocked (cannot work), degraded (works badly, or with a workaround) or inconvenienced."""
    p = f.rules.phrases
    blocked = f.find(p.outage) or f.find(p.blocked, f.customer_text)
    if blocked:
        return {"level": "blocked", "evidence": [h.text for h in blocked[:3]]}
    # Something failing without a word that the customer cannot work is at least working badly.
    degraded = f.find(p.degraded, f.customer_text) or f.find(p.defect, f.customer_text)
    if degraded:
        return {"level": "degraded", "evidence": [h.text for h in degraded[:3]]}
    if f.customer_text.strip():
        return {"level": "inconvenienced", "evidence": []}
    return {"level": UNKNOWN, "evidence": []}


def duration(f: Facts) -> dict[str, Any]:
    starts = [t.created_at for t in [f.ticket, *(r.ticket for r in f.related)] if t.created_at]
    first = min(starts) if starts else None
    own = f.ticket.created_at
    breach = f.active_breaches[0] if f.active_breaches else None
    return {
        "first_reported_at": _iso(first),
        "hours_open": round((f.now - own).total_seconds() / 3600, 1) if own else UNKNOWN,
        "hours_since_first_report": round((f.now - first).total_seconds() / 3600, 1) if first else UNKNOWN,
        "critical_at": _iso(breach),
    }


def revenue(f: Facts) -> dict[str, Any]:
    arr_total = pipeline_total = 0.0
    known_arr = known_pipeline = 0
    unknown_orgs = []
    for oid in f.affected_org_ids():
        org = f.case.organizations.get(oid)
        arr, pipeline = f.arr(org), f.pipeline_arr(org)
        if arr is None:
            unknown_orgs.append(f.org_name(oid))
        else:
            arr_total += arr
            known_arr += 1
        if pipeline is not None:
            pipeline_total += pipeline
            known_pipeline += 1
    own = f.organization
    return {
        "currency": f.rules.fields.currency,
        "arr_exposed": arr_total if known_arr else UNKNOWN,
        "pipeline_at_risk": pipeline_total if known_pipeline else UNKNOWN,
        "organizations_without_arr": unknown_orgs,
        "renewal_date": f.renewal_date(own) or UNKNOWN,
    }


def reputation(f: Facts) -> dict[str, Any]:
    signals = [h.text for h in f.find(f.rules.phrases.public_exposure, f.customer_text)]
    refs = [
        f.org_name(oid)
        for oid in f.affected_org_ids()
        if f.has_tag(f.case.organizations.get(oid), f.rules.tags.reference_account)
    ]
    known = bool(f.case.organizations)
    return {
        "public_exposure_signals": signals,
        "reference_accounts": refs if known else UNKNOWN,
    }


def contractual(f: Facts) -> dict[str, Any]:
    return {
        "sla_position": f.sla_position.value,
        "sla_tier": f.sla_tier(f.organization) or UNKNOWN,
        "breach_at": _iso(f.active_breaches[0] if f.active_breaches else None),
    }


def quantify(f: Facts) -> dict[str, Any]:
    return {
        "breadth": breadth(f),
        "depth": depth(f),
        "duration": duration(f),
        "revenue": revenue(f),
        "reputation": reputation(f),
        "contractual": contractual(f),
    }
