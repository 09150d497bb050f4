"""POLICY.md §1: the reasons a ticket stays in support, each with its evidence and article."""

from __future__ import annotations

from rules.decision import Evidence, HoldReason
from rules.facts import Facts
from rules.ruleset import CatalogKind

CATALOG_HOLDS = {
    CatalogKind.WORKAROUND: "documented_fix",
    CatalogKind.CONFIGURATION: "configuration_error",
    CatalogKind.LIMITATION: "documented_limitation",
}


def catalog_holds(f: Facts) -> list[HoldReason]:
    found = []
    for kind, hold_id in CATALOG_HOLDS.items():
        for entry in f.rules.catalog_by_kind[kind]:
            hits = f.find(entry.phrases, f.customer_text)
            if hits:
                quoted = ", ".join(f"“{h.text}”" for h in hits[:3])
                evidence = Evidence(
                    f"matches {entry.id} “{entry.title}”: {quoted}",
                    phrases=tuple(h.text for h in hits),
                    values={"catalog_id": entry.id, "kind": kind.value},
                )
                found.append(HoldReason(hold_id, evidence, entry.article))
    return found


def coaching(f: Facts) -> HoldReason | None:
    """How-to phrasing on a question, with no defect, outage or data signal."""
    if f.ticket.type != "question":
        return None
    hits = f.find(f.rules.phrases.howto, f.customer_text)
    if not hits:
        return None
    p = f.rules.phrases
    if f.is_defect or f.find(p.outage) or f.find(p.data_loss) or f.find(p.security):
        return None
    return HoldReason("coaching", Evidence(f"how-to question: “{hits[0].text}”", phrases=(hits[0].text,)))


def resolved_at_support_before(f: Facts) -> HoldReason | None:
    """At least N same-symptom tickets solved without escalation, and none of them escalated."""
    escalated = {t.lower() for t in f.rules.tags.escalated}
    same = f.related_all_time
    if any(r.ticket.tags & escalated for r in same):
        return None
    solved = [r for r in same if r.ticket.is_solved]
    if len(solved) < f.rules.thresholds.resolved_at_support_min:
        return None
    ids = tuple(r.ticket.id for r in solved)
    return HoldReason(
        "resolved_at_support_before",
        Evidence(f"{len(solved)} tickets with the same symptom were solved in support", tickets=ids),
    )


def find_holds(f: Facts) -> list[HoldReason]:
    holds = catalog_holds(f)
    for check in (coaching, resolved_at_support_before):
        hold = check(f)
        if hold is not None:
            holds.append(hold)
    return holds
