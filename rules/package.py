"""POLICY.md §6: the escalation package, built from the case and the decision's parts.

Every piece of ticket text passes through ``redact`` before it enters the package: the package is what
leaves the helpdesk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rules import extract
from rules.case import Comment
from rules.deadline import hard_deadline
from rules.decision import Evidence, HoldReason, Trigger
from rules.facts import Facts, SlaPosition
from rules.redact import redact
from rules.ruleset import Destination, Family, Severity

UNKNOWN = "unknown"
_EXPECTATION_WORDS = (
    r"asap|as soon as possible|immediately|urgently|today|tomorrow|"
    r"by (?:monday|tuesday|wednesday|"
    r"thursday|friday|saturday|sunday|tonight|the end of|end of|eod|eow|noon|\d)|before (?:monday|tuesday|"
    r"wednesday|thursday|friday|the|our|\d)|deadline|go[- ]live|launch"
)
_EXPECTATION = re.compile(rf"[^.!?\n]*\b({_EXPECTATION_WORDS})\b[^.!?\n]*[.!?]?", re.IGNORECASE)
_EXPECTATION_WORD = re.compile(rf"\b({_EXPECTATION_WORDS})\b", re.IGNORECASE)
_CONTAINMENT = re.compile(
    r"\b(rotated|revoked|disabled|locked|reset|blocked|contained|suspended|invalidated|patched)\b",
    re.IGNORECASE,
)
_COMPETITOR_WORDS = r"competitor|alternative|other vendors?|switch(ing)? to"
_COMPETITOR = re.compile(rf"[^.!?\n]*\b({_COMPETITOR_WORDS})\b[^.!?\n]*", re.I)
_COMPETITOR_WORD = re.compile(rf"\b({_COMPETITOR_WORDS})\b", re.I)
_SENTENCE_ENDS = ".!?\n"


def sentence_search(sentence: re.Pattern[str], word: re.Pattern[str], text: str) -> re.Match[str] | None:
    """``sentence.search(text)`` for a ``sentence`` of the form ``[^.!?\n]*\b(WORDS)\b…`` and its ``word``,
    ``\b(WORDS)\b``, where no WORD can start with a sentence end.

    The same match, without trying the sentence at every position of a long text (each try runs to the
    sentence's end and backtracks over every word): no match can start in a sentence before the one
    holding the first WORD, so the search starts at that sentence's beginning.
    """
    first = word.search(text)
    if first is None:
        return None
    start = max(text.rfind(c, 0, first.start()) for c in _SENTENCE_ENDS) + 1
    return sentence.search(text, start)


DESTINATION_LABEL = {
    Destination.SECURITY: "Security",
    Destination.ENGINEERING: "Engineering",
    Destination.LEADERSHIP: "Leadership",
    Destination.PRODUCT: "Product",
    Destination.SUPPORT_L2: "Support L2",
}
SEVERITY_LABEL = {
    Severity.CRITICAL: "Critical: act now",
    Severity.HIGH: "High: same day",
    Severity.MEDIUM: "Medium: this week",
}


@dataclass
class Redactor:
    """Redacts ticket text and remembers what kinds of secret it removed."""

    kinds: set[str] = field(default_factory=set)
    # A package quotes the same subject and comments in several sections: each is redacted once.
    done: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __call__(self, text: str) -> str:
        cleaned = self.done.get(text)
        if cleaned is None:
            cleaned, kinds = redact(text)
            self.kinds.update(kinds)
            self.done[text] = cleaned
        return cleaned


def money(amount: Any, currency: str) -> str:
    return f"{currency} {amount:,.0f}" if isinstance(amount, int | float) else UNKNOWN


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


@dataclass
class PackageInput:
    facts: Facts
    destination: Destination
    also_notify: list[Destination]
    severity: Severity
    severity_reasons: list[Evidence]
    triggers: list[Trigger]
    holds: list[HoldReason]
    impact: dict[str, Any]


def build_package(p: PackageInput) -> dict[str, Any]:
    """The package as structured data: every §6 section, in order, plus what it is missing."""
    clean = Redactor()
    f = p.facts
    package = {
        "summary": summary_line(p, clean),
        "severity": {"level": p.severity.value, "reasons": [e.summary for e in p.severity_reasons]},
        "routed_to": {
            "destination": p.destination.value,
            "also_notify": [d.value for d in p.also_notify],
        },
        "business_impact": business_impact(p, clean),
        "narrative": narrative(p, clean),
        "reproduction": reproduction(f, clean),
        "actions_taken": actions_taken(f, clean),
        "communication": communication(p, clean),
        "request": request(p),
        "references": references(p, clean),
    }
    package["missing"] = missing(p, package)
    package["redacted"] = sorted(clean.kinds)
    return package


# --- the one-line summary ---------------------------------------------------------------------------
def summary_line(p: PackageInput, clean: Redactor) -> str:
    f = p.facts
    subject = " ".join(clean(f.ticket.subject).split()) or f"ticket {f.ticket.id}"
    if len(subject) > 90:
        subject = subject[:89].rstrip() + "…"
    breadth = p.impact["breadth"]
    who = (
        f"{breadth['organizations']} organizations"
        if breadth["organizations"] > 1
        else f.org_name(f.ticket.organization_id)
    )
    arr = p.impact["revenue"]["arr_exposed"]
    exposure = f", {money(arr, f.rules.fields.currency)} ARR exposed" if arr != UNKNOWN else ""
    return f"{subject} ({who}{exposure})"


# --- business impact --------------------------------------------------------------------------------
def business_impact(p: PackageInput, clean: Redactor) -> dict[str, Any]:
    f, imp = p.facts, p.impact
    b, rev, con, dur = imp["breadth"], imp["revenue"], imp["contractual"], imp["duration"]
    cur = rev["currency"]
    names = ", ".join(b["organization_names"][:8])
    growth = {True: "growing", False: "not growing"}.get(b["growing"], "growth unknown")
    affected = f"{b['organizations']} organization(s) ({names}); {b['tickets']} ticket(s); {growth}"
    revenue = (
        f"{money(rev['arr_exposed'], cur)} ARR exposed; "
        f"{money(rev['pipeline_at_risk'], cur)} pipeline at risk"
    )
    if rev["renewal_date"] != UNKNOWN:
        revenue += f"; renewal {rev['renewal_date']}"
    sla = con["sla_position"].replace("_", " ")
    sla_line = f"{sla.capitalize()} (tier {con['sla_tier']})"
    if con["breach_at"] != UNKNOWN:
        sla_line += f"; breach at {con['breach_at']}"
    rep = imp["reputation"]
    refs = rep["reference_accounts"]
    reputation = (
        f"public-exposure signals: {', '.join(rep['public_exposure_signals']) or 'none'}; "
        f"reference accounts: {_names(refs)}"
    )
    out = {
        "affected_customers": affected,
        "operational_effect": f"{imp['depth']['level'].capitalize()}: {clean(f.ticket.subject) or UNKNOWN}",
        "revenue_exposure": revenue,
        "sla_position": sla_line,
        "duration": (
            f"first reported {dur['first_reported_at']}; open {dur['hours_open']} h; "
            f"critical at {dur['critical_at']}"
        ),
        "reputation": reputation,
    }
    out["focus"] = destination_focus(p, clean)
    return out


def _names(refs: list[str] | str) -> str:
    if refs == UNKNOWN:
        return UNKNOWN
    return ", ".join(refs) or "none"


def destination_focus(p: PackageInput, clean: Redactor) -> list[tuple[str, str]]:
    """What the receiving team needs most, made prominent (POLICY §6)."""
    f = p.facts
    org = f.organization
    cur = f.rules.fields.currency
    context = (
        f"{f.org_name(f.ticket.organization_id)}, tier {f.sla_tier(org) or UNKNOWN}, "
        f"ARR {money(f.arr(org), cur)}"
    )
    staff = [c for c in f.case.comments if f.case.is_staff_comment(c)]
    if p.destination is Destination.SUPPORT_L2:
        return [
            ("Issue summary", clean(extract.sentences(f.ticket.description, 2)) or clean(f.ticket.subject)),
            ("Troubleshooting performed", f"{len(staff)} agent comment(s); see ACTIONS ALREADY TAKEN"),
            ("Customer context", context),
        ]
    if p.destination is Destination.PRODUCT:
        b = p.impact["breadth"]
        competitive = sentence_search(_COMPETITOR, _COMPETITOR_WORD, f.customer_text)
        return [
            ("Use case", clean(extract.sentences(f.ticket.description, 2)) or UNKNOWN),
            (
                "Request frequency",
                f"{b['reporters']} organization(s) within {f.rules.thresholds.lookback_days:g} days",
            ),
            ("Requested by", ", ".join(b["organization_names"]) or UNKNOWN),
            ("Competitive context", clean(competitive.group(0).strip()) if competitive else UNKNOWN),
        ]
    if p.destination is Destination.SECURITY:
        sec = next((t for t in p.triggers if t.family is Family.SECURITY), None)
        contained = [extract.gist(clean(c.body)) for c in staff if _CONTAINMENT.search(c.body)]
        return [
            ("Observations", sec.evidence.summary if sec else UNKNOWN),
            ("Affected parties and systems", context),
            ("Containment already taken", "; ".join(contained) or "none recorded"),
            ("Urgency", SEVERITY_LABEL[p.severity]),
        ]
    if p.destination is Destination.LEADERSHIP:
        stakes = [t.evidence.summary for t in p.triggers if t.family is Family.BUSINESS_STAKES]
        return [
            ("Business context", context),
            ("What is at stake", "; ".join(stakes) or UNKNOWN),
            ("Decision needed", request(p)["ask"]),
        ]
    return [("Affected customers", ", ".join(p.impact["breadth"]["organization_names"]) or UNKNOWN)]


# --- narrative --------------------------------------------------------------------------------------
def narrative(p: PackageInput, clean: Redactor) -> str:
    f, imp = p.facts, p.impact
    org = f.organization
    tier = f.sla_tier(org)
    who = f.org_name(f.ticket.organization_id) + (f" ({tier} tier)" if tier else "")
    subject = " ".join(clean(f.ticket.subject).split()) or "a problem"
    out = [f"{who} reports: {subject.rstrip('.')}."]
    dur = imp["duration"]
    if dur["first_reported_at"] != UNKNOWN:
        since = f"It was first reported at {dur['first_reported_at']}"
        if dur["hours_open"] != UNKNOWN:
            since += f" and this ticket has been open {dur['hours_open']} hours"
        out.append(since + ".")
    presents = " ".join(clean(extract.sentences(f.ticket.description, 2)).split())
    if presents:
        if len(presents) > 300:
            presents = presents[:299].rstrip() + "…"
        out.append(f"As the customer describes it: “{presents}”")
    b = imp["breadth"]
    if b["organizations"] > 1 or b["tickets"] > 1:
        grow = " and the count is growing" if b["growing"] is True else ""
        out.append(
            f"Blast radius: {b['organizations']} organization(s) and {b['tickets']} ticket(s) report the "
            f"same symptom{grow}."
        )
    else:
        out.append(
            f"No other organization has reported the same symptom in the last "
            f"{f.rules.thresholds.lookback_days:g} days."
        )
    depth = imp["depth"]["level"]
    if depth != UNKNOWN:
        out.append(f"Users are {depth}.")
    return " ".join(out[:5])


# --- reproduction -----------------------------------------------------------------------------------
def reproduction(f: Facts, clean: Redactor) -> dict[str, Any]:
    texts = [f.ticket.description, *(c.body for c in f.case.comments)]
    found = extract.reproduction(texts)
    observed = found.observed
    source = "ticket" if observed else None
    if observed is None and f.ticket.subject:
        observed, source = f.ticket.subject, "subject"
    return {
        "steps": [clean(s) for s in found.steps],
        "expected": clean(found.expected) if found.expected else None,
        "observed": clean(observed) if observed else None,
        "observed_from": source,
        "environment": [[k, clean(v)] for k, v in found.environment],
    }


# --- actions ----------------------------------------------------------------------------------------
def actions_taken(f: Facts, clean: Redactor) -> list[dict[str, Any]]:
    comments = list(f.case.comments)
    actions = []
    for i, c in enumerate(comments):
        if not f.case.is_staff_comment(c):
            continue
        what = extract.gist(clean(c.body))
        if not what:
            continue
        actions.append(
            {
                "what": what,
                "outcome": _outcome(f, c, comments[i + 1 :], clean, what),
                "public": c.public,
                "at": iso(c.created_at),
            }
        )
    return actions[-10:]


def _outcome(f: Facts, comment: Comment, after: list[Comment], clean: Redactor, what: str) -> str:
    if not comment.public:
        # An internal note records its own result ("checked the logs - nothing for this tenant").
        return extract.rest(clean(comment.body), what) or "recorded in an internal note"
    reply = next((c for c in after if c.public and not f.case.is_staff_comment(c)), None)
    if reply is not None:
        return f"customer replied: {extract.gist(clean(reply.body))}"
    return "no reply from the customer yet"


# --- communication ----------------------------------------------------------------------------------
def communication(p: PackageInput, clean: Redactor) -> dict[str, Any]:
    f = p.facts
    latest = f.public_agent_replies[-1] if f.public_agent_replies else None
    expectation = sentence_search(_EXPECTATION, _EXPECTATION_WORD, f.customer_text)
    return {
        "latest_update": (
            {"at": iso(latest.created_at), "summary": extract.gist(clean(latest.body))} if latest else None
        ),
        "customer_expectation": (
            clean(expectation.group(0).strip()) if expectation else "a fix or workaround; no date stated"
        ),
        "escalation_risk": escalation_risk(p),
    }


def escalation_risk(p: PackageInput) -> str:
    ids = {t.id for t in p.triggers}
    if ids & {"leadership_requested", "legal_threat", "public_exposure", "churn_risk"}:
        return "high: the customer has signalled they will go further"
    if p.facts.sla_position is SlaPosition.BREACHED or ids & {"open_too_long", "troubleshooting_stalled"}:
        return "medium: the customer has waited long"
    return "low"


# --- request ----------------------------------------------------------------------------------------
def request(p: PackageInput) -> dict[str, Any]:
    f = p.facts
    ids = {t.id for t in p.triggers}
    asks = {
        Destination.SECURITY: (
            "Assess the report, contain any exposure, and tell support what the customer may be told"
        ),
        Destination.ENGINEERING: (
            "Ship a fix for the confirmed defect"
            if "confirmed_defect" in ids
            else "Investigate the root cause and ship a fix or a workaround"
            if ids & {"outage", "data_loss", "repeated_reports", "multi_org_same_symptom", "resurfaced"}
            else "Investigate with the access and tooling support does not have"
        ),
        Destination.LEADERSHIP: (
            f"Decide on an intervention for {f.org_name(f.ticket.organization_id)}: executive contact, "
            "policy exception or commercial concession"
        ),
        Destination.PRODUCT: (
            "Decide whether and when to close this capability gap, and what support tells the customer"
        ),
        Destination.SUPPORT_L2: "Take over the investigation with specialist tooling and product expertise",
    }
    breach = f.active_breaches[0] if f.active_breaches else None
    deadline, why = hard_deadline(p.severity, f.now, f.rules.deadlines, breach)
    return {"ask": asks[p.destination], "deadline": iso(deadline), "deadline_basis": why}


# --- references -------------------------------------------------------------------------------------
def references(p: PackageInput, clean: Redactor) -> dict[str, Any]:
    f = p.facts
    related = [
        {
            "ticket_id": r.ticket.id,
            "url": r.ticket.url,
            "organization": f.org_name(r.ticket.organization_id),
            "subject": clean(r.ticket.subject),
            "similarity": round(r.score, 3),
        }
        for r in f.related[:20]
    ]
    attachments = [{"name": a.name, "url": a.url} for c in f.case.comments for a in c.attachments]
    articles = [{"id": h.id, "url": h.reference} for h in p.holds if h.reference]
    return {
        "ticket": {"id": f.ticket.id, "url": f.ticket.url},
        "related": related,
        "attachments": attachments,
        "articles": articles,
    }


# --- gaps -------------------------------------------------------------------------------------------
def missing(p: PackageInput, package: dict[str, Any]) -> list[str]:
    f = p.facts
    gaps = []
    repro = package["reproduction"]
    needs_repro = p.destination in (Destination.ENGINEERING, Destination.SUPPORT_L2) or f.is_defect
    if needs_repro:
        if not repro["steps"]:
            gaps.append("no reproduction steps")
        if not repro["expected"]:
            gaps.append("no expected outcome")
        if repro["observed_from"] != "ticket":
            gaps.append("no observed outcome beyond the subject")
        if not repro["environment"]:
            gaps.append("no environment")
    if f.organization is None:
        gaps.append("no organization: revenue and contract unknown")
    else:
        gaps.extend(f"no ARR for {name}" for name in p.impact["revenue"]["organizations_without_arr"])
    if not f.ticket.sla_metrics:
        gaps.append("no SLA data")
    if not package["actions_taken"]:
        gaps.append("no actions recorded from support")
    if package["communication"]["latest_update"] is None:
        gaps.append("no public reply to the customer yet")
    if p.destination is Destination.SECURITY and not any(
        _CONTAINMENT.search(c.body) for c in f.case.comments if f.case.is_staff_comment(c)
    ):
        gaps.append("no containment recorded")
    return gaps
