"""POLICY.md §4: how severe an escalation is, with the reasons."""

from __future__ import annotations

from rules.decision import Evidence, Trigger
from rules.facts import Facts, SlaPosition
from rules.ruleset import Severity


def high_value_orgs_sharing(f: Facts) -> list[str]:
    """Organizations with ARR at or over the high-value line that report this symptom."""
    line = f.rules.thresholds.high_value_arr
    return [
        oid
        for oid in f.affected_org_ids()
        if (arr := f.arr(f.case.organizations.get(oid))) is not None and arr >= line
    ]


def _critical(f: Facts, fired: dict[str, Trigger]) -> list[Evidence]:
    reasons = [fired[t].evidence for t in ("outage", "data_loss") if t in fired]
    sec = fired.get("security_threat")
    if sec and sec.evidence.values.get("active_incident"):
        reasons.append(Evidence("active security incident", phrases=sec.evidence.phrases))
    big = high_value_orgs_sharing(f)
    if len(big) >= f.rules.thresholds.critical_high_value_organizations:
        names = ", ".join(f.org_name(o) for o in big)
        reasons.append(
            Evidence(
                f"{len(big)} high-value accounts share the symptom: {names}", values={"organizations": big}
            )
        )
    return reasons


def _high(f: Facts, fired: dict[str, Trigger]) -> list[Evidence]:
    reasons = []
    if "security_threat" in fired:
        reasons.append(Evidence("security report, no active incident named"))
    if f.is_high_value and f.ticket.priority in ("high", "urgent"):
        hits = f.find(f.rules.phrases.blocked, f.customer_text)
        if hits:
            reasons.append(Evidence(f"high-value account blocked: “{hits[0].text}”", phrases=(hits[0].text,)))
    if f.sla_position in (SlaPosition.AT_RISK, SlaPosition.BREACHED):
        reasons.append(Evidence(f"SLA {f.sla_position.value.replace('_', ' ')}"))
    if "churn_risk" in fired:
        reasons.append(Evidence("churn risk on a high-value account"))
    if f.ticket.priority == "urgent":
        reasons.append(Evidence("urgent ticket"))
    return reasons


def assess(f: Facts, triggers: list[Trigger]) -> tuple[Severity, list[Evidence]]:
    fired = {t.id: t for t in triggers}
    critical = _critical(f, fired)
    if critical:
        return Severity.CRITICAL, critical
    high = _high(f, fired)
    if high:
        return Severity.HIGH, high
    return Severity.MEDIUM, [Evidence("real impact, not time-critical")]
