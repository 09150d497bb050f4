"""The seven trigger families of POLICY.md §2: one detector per trigger id, each returning its evidence."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from rules.decision import Evidence, Trigger
from rules.facts import Facts, SlaPosition
from rules.phrases import PhraseHit
from rules.ruleset import TRIGGERS

PRIORITY_RANK = {"low": 0, "normal": 1, "high": 2, "urgent": 3}

Detector = Callable[[Facts], Evidence | None]


def _hits_evidence(what: str, hits: list[PhraseHit], **values: object) -> Evidence:
    quoted = ", ".join(f"“{h.text}”" for h in hits[:5])
    return Evidence(f"{what}: {quoted}", phrases=tuple(h.text for h in hits), values=dict(values))


def _money(amount: float | None, currency: str) -> str:
    return "unknown" if amount is None else f"{currency} {amount:,.0f}"


# --- technical_barrier ------------------------------------------------------------------------------
def confirmed_defect(f: Facts) -> Evidence | None:
    reason = f.confirmed_defect_reason
    return Evidence(f"defect confirmed ({reason})", values={"source": reason}) if reason else None


def data_loss(f: Facts) -> Evidence | None:
    hits = f.find(f.rules.phrases.data_loss)
    return _hits_evidence("data loss or corruption reported", hits) if hits else None


# --- diagnostic_ceiling -----------------------------------------------------------------------------
def custom_deployment(f: Facts) -> Evidence | None:
    org = f.organization
    tags = sorted(org.tags & {t.lower() for t in f.rules.tags.custom_deployment}) if org else []
    if tags and f.ticket.type in ("problem", "incident"):
        return Evidence(
            f"{f.org_name(org.id)} runs a {tags[0].replace('_', ' ')} and this is a {f.ticket.type}",
            values={"organization_tags": tags, "ticket_type": f.ticket.type},
        )
    return None


def needs_deep_access(f: Facts) -> Evidence | None:
    hits = f.find(f.rules.phrases.deep_access)
    return _hits_evidence("needs access support does not have", hits) if hits else None


# --- widespread_harm --------------------------------------------------------------------------------
def multi_org_same_symptom(f: Facts) -> Evidence | None:
    hours = f.rules.thresholds.widespread_hours
    recent = f.within_hours(f.related, hours)
    reporters = f.reporters(recent)
    if len(reporters) < f.rules.thresholds.widespread_organizations:
        return None
    return Evidence(
        f"{len(reporters)} organizations report the same symptom within {hours:g} h",
        tickets=tuple(r.ticket.id for r in recent),
        values={"organizations": len(reporters), "window_hours": hours},
    )


def outage(f: Facts) -> Evidence | None:
    hits = f.find(f.rules.phrases.outage)
    if hits:
        return _hits_evidence("outage reported", hits)
    if f.ticket.priority == "urgent" and f.ticket.type == "incident":
        return Evidence("urgent incident", values={"priority": "urgent", "type": "incident"})
    return None


# --- security ---------------------------------------------------------------------------------------
def security_threat(f: Facts) -> Evidence | None:
    hits = f.find(f.rules.phrases.security)
    if not hits:
        return None
    active = f.find(f.rules.phrases.security_active)
    evidence = _hits_evidence("security threat reported", hits, active_incident=bool(active))
    return evidence


# --- business_stakes --------------------------------------------------------------------------------
def churn_risk(f: Facts) -> Evidence | None:
    hits = f.find(f.rules.phrases.churn, f.customer_text)
    if not hits or not f.is_high_value:
        return None
    arr = f.arr(f.organization)
    return _hits_evidence(
        f"churn signal from an account with ARR {_money(arr, f.rules.fields.currency)}", hits, arr=arr
    )


def sla_risk_strategic(f: Facts) -> Evidence | None:
    if f.sla_position not in (SlaPosition.AT_RISK, SlaPosition.BREACHED):
        return None
    org = f.organization
    arr = f.arr(org)
    strategic = f.has_tag(org, f.rules.tags.strategic)
    big = arr is not None and arr >= f.rules.thresholds.strategic_arr
    if not (strategic or big):
        return None
    why = "a strategic account" if strategic else f"ARR {_money(arr, f.rules.fields.currency)}"
    return Evidence(
        f"SLA {f.sla_position.value.replace('_', ' ')} on {why}",
        values={"sla_position": f.sla_position.value, "strategic": strategic, "arr": arr},
    )


def leadership_requested(f: Facts) -> Evidence | None:
    hits = f.find(f.rules.phrases.leadership_request, f.customer_text)
    return _hits_evidence("the customer asks for leadership", hits) if hits else None


def legal_threat(f: Facts) -> Evidence | None:
    hits = f.find(f.rules.phrases.legal, f.customer_text)
    return _hits_evidence("legal threat", hits) if hits else None


def public_exposure(f: Facts) -> Evidence | None:
    hits = f.find(f.rules.phrases.public_exposure, f.customer_text)
    return _hits_evidence("public-exposure threat", hits) if hits else None


# --- stalled_progress -------------------------------------------------------------------------------
def sla_breached(f: Facts) -> Evidence | None:
    if f.sla_position is not SlaPosition.BREACHED:
        return None
    breach = f.active_breaches[0]
    hours = (f.now - breach).total_seconds() / 3600
    return Evidence(
        f"SLA breached {hours:.1f} h ago", values={"breach_at": breach.isoformat(), "hours_over": hours}
    )


def open_too_long(f: Facts) -> Evidence | None:
    created = f.ticket.created_at
    days = f.rules.thresholds.open_too_long_days
    if f.ticket.is_solved or created is None or f.now - created < timedelta(days=days):
        return None
    age = (f.now - created).total_seconds() / 86400
    return Evidence(f"unsolved for {age:.1f} days (limit {days:g})", values={"days_open": round(age, 1)})


def troubleshooting_stalled(f: Facts) -> Evidence | None:
    replies = len(f.public_agent_replies)
    limit = f.rules.thresholds.max_agent_replies
    if f.ticket.is_solved or replies < limit:
        return None
    return Evidence(f"{replies} public agent replies without a solve", values={"agent_replies": replies})


# --- recurring_pattern ------------------------------------------------------------------------------
def repeated_reports(f: Facts) -> Evidence | None:
    reporters = f.reporters(f.related)
    needed = f.rules.thresholds.recurring_reports
    if len(reporters) < needed:
        return None
    days = f.rules.thresholds.lookback_days
    return Evidence(
        f"{len(reporters)} independent reports of the same symptom within {days:g} days",
        tickets=tuple(r.ticket.id for r in f.related),
        values={"reporters": len(reporters), "scores": {r.ticket.id: round(r.score, 3) for r in f.related}},
    )


def resurfaced(f: Facts) -> Evidence | None:
    fixed = {t.lower() for t in f.rules.tags.fixed}
    earlier = [r for r in f.related_all_time if r.ticket.is_solved and r.ticket.tags & fixed]
    if not earlier:
        return None
    return Evidence(
        f"same symptom as ticket {earlier[0].ticket.id}, solved as fixed",
        tickets=tuple(r.ticket.id for r in earlier),
        values={"scores": {r.ticket.id: round(r.score, 3) for r in earlier}},
    )


def severity_rising(f: Facts) -> Evidence | None:
    raised = [
        c
        for c in f.ticket.changes
        if c.field == "priority"
        and PRIORITY_RANK.get(c.value or "", -1) > PRIORITY_RANK.get(c.previous or "", 99)
    ]
    if not raised:
        return None
    last = raised[-1]
    return Evidence(
        f"priority raised from {last.previous} to {last.value}",
        values={"from": last.previous, "to": last.value, "at": last.at.isoformat() if last.at else None},
    )


DETECTORS: dict[str, Detector] = {
    "confirmed_defect": confirmed_defect,
    "data_loss": data_loss,
    "custom_deployment": custom_deployment,
    "needs_deep_access": needs_deep_access,
    "multi_org_same_symptom": multi_org_same_symptom,
    "outage": outage,
    "security_threat": security_threat,
    "churn_risk": churn_risk,
    "sla_risk_strategic": sla_risk_strategic,
    "leadership_requested": leadership_requested,
    "legal_threat": legal_threat,
    "public_exposure": public_exposure,
    "sla_breached": sla_breached,
    "open_too_long": open_too_long,
    "troubleshooting_stalled": troubleshooting_stalled,
    "repeated_reports": repeated_reports,
    "resurfaced": resurfaced,
    "severity_rising": severity_rising,
}
assert DETECTORS.keys() == TRIGGERS.keys(), "every trigger in the vocabulary needs a detector"


def detect(f: Facts) -> list[Trigger]:
    fired = []
    for trigger_id, detector in DETECTORS.items():
        if not f.rules.enabled(trigger_id):
            continue
        evidence = detector(f)
        if evidence is not None:
            family, hard = TRIGGERS[trigger_id]
            fired.append(Trigger(family=family, id=trigger_id, hard=hard, evidence=evidence))
    return fired
