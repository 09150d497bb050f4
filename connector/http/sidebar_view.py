"""The backend's view of a ticket, turned into what the sidebar template shows.

Everything here returns plain text; the template escapes it. The one piece of HTML is the package
preview, produced by ``connector.render.zendesk_html`` (which escapes every piece of ticket text itself).
A value the backend does not have is shown as "unknown", never guessed (POLICY.md §5).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup

from connector.render.zendesk_html import render_html
from rules.document import is_safe_url
from rules.package_document import package_document

UNKNOWN = "unknown"

DESTINATIONS: dict[str, str] = {
    "engineering": "Engineering",
    "security": "Security",
    "leadership": "Leadership",
    "product": "Product",
    "support_l2": "Support L2",
}
FAMILIES: dict[str, str] = {
    "technical_barrier": "Technical barrier",
    "diagnostic_ceiling": "Diagnostic ceiling",
    "widespread_harm": "Widespread harm",
    "security": "Security",
    "business_stakes": "Business stakes",
    "stalled_progress": "Stalled progress",
    "recurring_pattern": "Recurring pattern",
}
# Garden tag colours: how loud each severity is in the header.
SEVERITY_TONES: dict[str, str] = {"critical": "red", "high": "yellow", "medium": "blue"}
SLA_TONES: dict[str, str] = {"breached": "red", "at_risk": "yellow", "compliant": "green"}
# Why agents turn a suggestion down: codes the rules' owners can count; the free text adds detail.
DISMISS_REASONS: tuple[tuple[str, str], ...] = (
    ("workaround_available", "A workaround or documented fix exists"),
    ("configuration_error", "It is a configuration error support can fix"),
    ("customer_needs_coaching", "The customer needs coaching, not a change"),
    ("not_severe", "Impact is lower than assessed"),
    ("already_escalated", "Already escalated elsewhere"),
    ("wrong_symptom_match", "The related tickets are not the same problem"),
    ("other", "Other"),
)
OPEN_STATES = frozenset({"created", "acknowledged", "resolved", "customer_updated"})


@dataclass(frozen=True)
class Evidence:
    title: str
    detail: str
    phrases: tuple[str, ...] = ()
    tickets: tuple[str, ...] = ()
    values: tuple[str, ...] = ()
    hard: bool = False
    link: str | None = None


@dataclass(frozen=True)
class ImpactRow:
    label: str
    value: str
    detail: str = ""
    tone: str | None = None


@dataclass(frozen=True)
class Linked:
    destination: str
    destination_label: str
    state: str
    jira_key: str | None
    jira_url: str | None
    jira_status: str
    last_moved: str
    last_moved_iso: str | None
    rollup: str = ""  # "3 customers · 4 tickets · USD 580,000 ARR exposed · growing (…)"
    stalled: str = ""


@dataclass(frozen=True)
class Panel:
    ticket_id: str
    escalate: bool
    headline: str
    verdict: str
    severity: str | None
    severity_tone: str
    destination: str | None
    destination_label: str
    also_notify: tuple[str, ...]
    automatic: bool
    triggers: tuple[Evidence, ...]
    holds: tuple[Evidence, ...]
    impact: tuple[ImpactRow, ...]
    package_html: Markup | None
    missing: tuple[str, ...]
    linked: tuple[Linked, ...]
    dismissed: tuple[str, ...]
    choices: tuple[tuple[str, str], ...]
    can_create: bool
    can_dismiss: bool
    evaluated_at: str
    ruleset_version: str
    matcher: str
    dismiss_reasons: tuple[tuple[str, str], ...] = field(default=DISMISS_REASONS)


def build_panel(ticket_id: str, view: Mapping[str, Any], now: datetime | None = None) -> Panel:
    now = now or datetime.now(UTC)
    decision: Mapping[str, Any] = view.get("decision") or {}
    escalations = [e for e in view.get("escalations") or [] if isinstance(e, Mapping)]
    destination = _text(decision.get("destination")) or None
    severity = _text(decision.get("severity")) or None
    package = decision.get("package") if isinstance(decision.get("package"), Mapping) else None
    # Handed over: an issue exists, or (support_l2, a Zendesk group) the escalation is under way.
    linked = tuple(_linked(e, now) for e in escalations if e.get("jira_key") or e.get("state") in OPEN_STATES)
    dismissed = tuple(
        label(DESTINATIONS, _text(e.get("destination"))) for e in escalations if e.get("state") == "dismissed"
    )
    handled = {x.destination for x in linked}
    declined = {_text(e.get("destination")) for e in escalations if e.get("state") == "dismissed"}
    also = tuple(_text(d) for d in decision.get("also_notify") or [] if _text(d))
    suggestion_open = bool(decision.get("escalate")) and destination is not None
    return Panel(
        ticket_id=ticket_id,
        escalate=bool(decision.get("escalate")),
        headline=_text(package.get("summary")) if package else _text(decision.get("verdict")),
        verdict=_text(decision.get("verdict")),
        severity=severity,
        severity_tone=SEVERITY_TONES.get(severity or "", "grey"),
        destination=destination,
        destination_label=label(DESTINATIONS, destination) if destination else "Keep in support",
        also_notify=tuple(label(DESTINATIONS, d) for d in also),
        automatic=bool(decision.get("automatic")),
        triggers=tuple(_trigger(t) for t in _mappings(decision.get("triggers"))),
        holds=tuple(_hold(h) for h in _mappings(decision.get("hold_reasons"))),
        impact=impact_rows(decision.get("impact") or {}, now),
        package_html=Markup(render_html(package_document(dict(package)))) if package else None,
        missing=tuple(_text(m) for m in decision.get("missing") or [] if _text(m)),
        linked=linked,
        dismissed=dismissed,
        choices=_choices(destination if suggestion_open else None, also, handled),
        can_create=not (destination in handled if suggestion_open else False),
        can_dismiss=suggestion_open and destination not in handled and destination not in declined,
        evaluated_at=when(_text(decision.get("evaluated_at")), now),
        ruleset_version=_text(decision.get("ruleset_version")),
        matcher=_text(decision.get("matcher")),
    )


def _choices(suggested: str | None, also: Sequence[str], handled: set[str]) -> tuple[tuple[str, str], ...]:
    """The destination select: the suggestion first, then those to notify, then the rest."""
    order = [d for d in [suggested, *also, *DESTINATIONS] if d in DESTINATIONS]
    seen: list[str] = []
    for d in order:
        if d not in seen and d not in handled:
            seen.append(d)
    return tuple((d, f"{DESTINATIONS[d]} (suggested)" if d == suggested else DESTINATIONS[d]) for d in seen)


def _trigger(t: Mapping[str, Any]) -> Evidence:
    ev = t.get("evidence") if isinstance(t.get("evidence"), Mapping) else {}
    return Evidence(
        title=f"{label(FAMILIES, _text(t.get('family')))}: {humanize(_text(t.get('id')))}",
        detail=_text(ev.get("summary")),
        phrases=tuple(_text(p) for p in ev.get("phrases") or [] if _text(p)),
        tickets=tuple(f"#{_text(x)}" for x in ev.get("tickets") or [] if _text(x)),
        values=tuple(f"{humanize(k)}: {_value(v)}" for k, v in (ev.get("values") or {}).items()),
        hard=bool(t.get("hard")),
    )


def _hold(h: Mapping[str, Any]) -> Evidence:
    ev = h.get("evidence") if isinstance(h.get("evidence"), Mapping) else {}
    reference = _text(h.get("reference"))
    return Evidence(
        title=humanize(_text(h.get("id"))),
        detail=_text(ev.get("summary")),
        phrases=tuple(_text(p) for p in ev.get("phrases") or [] if _text(p)),
        tickets=tuple(f"#{_text(x)}" for x in ev.get("tickets") or [] if _text(x)),
        link=reference if reference and _http_url(reference) else None,
    )


def _linked(e: Mapping[str, Any], now: datetime) -> Linked:
    moved = _text(e.get("state_changed_at")) or _text(e.get("updated_at"))
    url = _text(e.get("jira_url"))
    return Linked(
        destination=_text(e.get("destination")),
        destination_label=label(DESTINATIONS, _text(e.get("destination"))),
        state=humanize(_text(e.get("state"))),
        jira_key=_text(e.get("jira_key")) or None,
        jira_url=url if url and _http_url(url) else None,
        jira_status=_text(e.get("jira_status")) or humanize(_text(e.get("state"))) or UNKNOWN,
        last_moved=when(moved, now) if moved else UNKNOWN,
        last_moved_iso=moved or None,
        rollup=_text(e.get("rollup_summary")),
        stalled=_stalled(e),
    )


def _stalled(e: Mapping[str, Any]) -> str:
    if not e.get("stalled_since"):
        return ""
    return f"Stalled: {_text(e.get('missed_check_ins'))} missed check-in(s)"


# -- the six impact dimensions (POLICY.md §5) ------------------------------------------------------


def impact_rows(impact: Mapping[str, Any], now: datetime) -> tuple[ImpactRow, ...]:
    return (
        _breadth(_section(impact, "breadth")),
        _depth(_section(impact, "depth")),
        _duration(_section(impact, "duration"), now),
        _revenue(_section(impact, "revenue")),
        _reputation(_section(impact, "reputation")),
        _contractual(_section(impact, "contractual")),
    )


def _breadth(b: Mapping[str, Any]) -> ImpactRow:
    orgs, tickets = b.get("organizations"), b.get("tickets")
    if not _is_number(orgs) and not _is_number(tickets):
        return ImpactRow("Customers affected", UNKNOWN)
    value = f"{_count(orgs, 'customer')} · {_count(tickets, 'ticket')}"
    names = ", ".join(_text(n) for n in b.get("organization_names") or [] if _text(n))
    growing = b.get("growing")
    trend = "growing" if growing is True else "not growing" if growing is False else "growth unknown"
    return ImpactRow("Customers affected", value, "; ".join(x for x in (names, trend) if x))


def _depth(d: Mapping[str, Any]) -> ImpactRow:
    level = _text(d.get("level")) or UNKNOWN
    tone = {"blocked": "red", "degraded": "yellow"}.get(level)
    evidence = ", ".join(f"“{_text(e)}”" for e in d.get("evidence") or [] if _text(e))
    return ImpactRow(
        "Blocked or degraded", level.capitalize() if level != UNKNOWN else UNKNOWN, evidence, tone
    )


def _duration(d: Mapping[str, Any], now: datetime) -> ImpactRow:
    hours = d.get("hours_open")
    opened = f"open {_hours(hours)}" if _is_number(hours) else "time open unknown"
    critical = parse_time(_text(d.get("critical_at")))
    if critical is None:
        return ImpactRow("Time open · to SLA breach", opened, "no SLA breach time")
    left = (critical - now).total_seconds()
    breach = f"breach {relative(critical, now)}" if left > 0 else f"breached {relative(critical, now)}"
    tone = "red" if left <= 0 else "yellow" if left <= 2 * 3600 else None
    return ImpactRow(
        "Time open · to SLA breach", f"{opened} · {breach}", f"SLA breach at {clock(critical)}", tone
    )


def _revenue(r: Mapping[str, Any]) -> ImpactRow:
    currency = _text(r.get("currency")) or "USD"
    arr, pipeline = r.get("arr_exposed"), r.get("pipeline_at_risk")
    value = f"{currency} {arr:,.0f} ARR" if _is_number(arr) else "ARR unknown"
    extra = [f"{currency} {pipeline:,.0f} pipeline at risk" if _is_number(pipeline) else ""]
    renewal = _text(r.get("renewal_date"))
    if renewal and renewal != UNKNOWN:
        extra.append(f"renews {renewal}")
    without = [_text(o) for o in r.get("organizations_without_arr") or [] if _text(o)]
    if without:
        extra.append("no ARR on file for " + ", ".join(without))
    return ImpactRow("ARR exposed", value, "; ".join(x for x in extra if x))


def _reputation(r: Mapping[str, Any]) -> ImpactRow:
    signals = [_text(s) for s in r.get("public_exposure_signals") or [] if _text(s)]
    references = [_text(a) for a in r.get("reference_accounts") or [] if _text(a)]
    if not signals and not references:
        return ImpactRow("Reputation", "No public-exposure signal", "no reference account involved")
    value = "Public exposure threatened" if signals else "Reference account involved"
    detail = "; ".join(
        x
        for x in (
            ", ".join(f"“{s}”" for s in signals),
            "reference account: " + ", ".join(references) if references else "",
        )
        if x
    )
    return ImpactRow("Reputation", value, detail, "yellow")


def _contractual(c: Mapping[str, Any]) -> ImpactRow:
    position = _text(c.get("sla_position")) or UNKNOWN
    tier = _text(c.get("sla_tier"))
    shown = {"at_risk": "At risk", "breached": "Breached", "compliant": "Compliant"}.get(position, UNKNOWN)
    detail = f"{tier} tier" if tier and tier != UNKNOWN else "tier unknown"
    return ImpactRow("SLA position", shown, detail, SLA_TONES.get(position))


# -- small formatting helpers ----------------------------------------------------------------------


def label(names: Mapping[str, str], key: str | None) -> str:
    return names.get(key or "", humanize(key or "")) or UNKNOWN


# Words that identifiers spell in lower case but people write in capitals.
_ACRONYMS = {"sla": "SLA", "arr": "ARR", "l2": "L2", "csv": "CSV", "org": "org", "orgs": "orgs"}


def humanize(identifier: str) -> str:
    words = [_ACRONYMS.get(w, w) for w in identifier.replace("_", " ").split()]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def parse_time(value: str) -> datetime | None:
    if not value or value == UNKNOWN:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def clock(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%d %b %H:%M UTC")


def relative(moment: datetime, now: datetime) -> str:
    seconds = (moment - now).total_seconds()
    span = abs(seconds)
    if span < 60:
        return "just now"
    if span < 3600:
        amount = f"{span // 60:.0f} min"
    elif span < 48 * 3600:
        amount = f"{span / 3600:.1f} h".replace(".0 h", " h")
    else:
        amount = f"{span / 86400:.0f} d"
    return f"in {amount}" if seconds > 0 else f"{amount} ago"


def when(value: str, now: datetime) -> str:
    moment = parse_time(value)
    return f"{relative(moment, now)} ({clock(moment)})" if moment else UNKNOWN


def _hours(value: float) -> str:
    return f"{value / 24:.1f} d" if value >= 48 else f"{value:g} h"


def _count(value: Any, noun: str) -> str:
    if not _is_number(value):
        return f"{noun}s unknown"
    return f"{value:g} {noun}" + ("" if value == 1 else "s")


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if _is_number(value):
        return f"{value:,.0f}" if value >= 1000 else f"{value:.2f}".rstrip("0").rstrip(".")
    if isinstance(value, list | tuple):
        return ", ".join(_value(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_value(v)}" for k, v in value.items())
    return _text(value).replace("_", " ")  # computed codes such as at_risk, never ticket text


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _section(impact: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = impact.get(name)
    return value if isinstance(value, Mapping) else {}


def _mappings(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value or [] if isinstance(v, Mapping)]


def _http_url(url: str) -> bool:
    return is_safe_url(url) and url.strip().lower().startswith(("https://", "http://"))
