"""The structured package → the format-neutral ``Document`` every renderer takes.

The headings and their order are POLICY.md §6's, exactly; this is the one place that says so.
"""

from __future__ import annotations

from typing import Any

from rules.document import (
    Block,
    BulletList,
    Document,
    Link,
    OrderedList,
    Paragraph,
    Section,
    Text,
    is_safe_url,
    labelled,
    line,
)
from rules.package import DESTINATION_LABEL, SEVERITY_LABEL
from rules.ruleset import Destination, Severity

HEADINGS = (
    "Severity",
    "Routed to",
    "BUSINESS IMPACT",
    "PROBLEM NARRATIVE",
    "REPRODUCTION PROCEDURE",
    "ACTIONS ALREADY TAKEN",
    "CUSTOMER COMMUNICATION STATUS",
    "REQUEST",
    "ATTACHMENTS AND REFERENCES",
)


def _link(text: str, url: str | None) -> Text | Link:
    return Link(text, url) if url and is_safe_url(url) else Text(text)


def package_document(package: dict[str, Any]) -> Document:
    sections = (
        _severity(package),
        _routed(package),
        _impact(package),
        Section(HEADINGS[3], (Paragraph(line(package["narrative"])),)),
        _reproduction(package),
        _actions(package),
        _communication(package),
        _request(package),
        _references(package),
    )
    return Document(title=f"ESCALATION: {package['summary']}", sections=sections)


def _severity(p: dict[str, Any]) -> Section:
    sev = p["severity"]
    blocks: list[Block] = [Paragraph(line(Text(SEVERITY_LABEL[Severity(sev["level"])], bold=True)))]
    if sev["reasons"]:
        blocks.append(BulletList(tuple(line(r) for r in sev["reasons"])))
    return Section(HEADINGS[0], tuple(blocks))


def _routed(p: dict[str, Any]) -> Section:
    routed = p["routed_to"]
    spans = [Text(DESTINATION_LABEL[Destination(routed["destination"])], bold=True)]
    if routed["also_notify"]:
        others = ", ".join(DESTINATION_LABEL[Destination(d)] for d in routed["also_notify"])
        spans.append(Text(f" (also notify: {others})"))
    return Section(HEADINGS[1], (Paragraph(tuple(spans)),))


def _impact(p: dict[str, Any]) -> Section:
    bi = p["business_impact"]
    items = [
        labelled("Affected customers", bi["affected_customers"]),
        labelled("Operational effect", bi["operational_effect"]),
        labelled("Revenue exposure", bi["revenue_exposure"]),
        labelled("SLA position", bi["sla_position"]),
        labelled("Duration", bi["duration"]),
        labelled("Reputation", bi["reputation"]),
    ]
    focus = [labelled(label, value) for label, value in bi["focus"]]
    dest = DESTINATION_LABEL[Destination(p["routed_to"]["destination"])]
    blocks: list[Block] = [BulletList(tuple(items))]
    if focus:
        blocks += [Paragraph(line(Text(f"For {dest}", bold=True))), BulletList(tuple(focus))]
    return Section(HEADINGS[2], tuple(blocks))


def _reproduction(p: dict[str, Any]) -> Section:
    r = p["reproduction"]
    blocks: list[Block] = []
    if r["steps"]:
        blocks.append(OrderedList(tuple(line(s) for s in r["steps"])))
    else:
        blocks.append(Paragraph(line("No reproduction steps in the ticket.")))
    observed = r["observed"] or "unknown"
    if r["observed_from"] == "subject":
        observed += " (from the ticket subject)"
    env = "; ".join(f"{k}: {v}" for k, v in r["environment"]) or "unknown"
    blocks.append(
        BulletList(
            (
                labelled("Expected outcome", r["expected"] or "unknown"),
                labelled("Observed outcome", observed),
                labelled("Environment", env),
            )
        )
    )
    return Section(HEADINGS[4], tuple(blocks))


def _actions(p: dict[str, Any]) -> Section:
    actions = p["actions_taken"]
    if not actions:
        return Section(HEADINGS[5], (Paragraph(line("No actions recorded by support yet.")),))
    items = tuple(
        line(("" if a["public"] else "(internal) ") + a["what"], Text(" → ", bold=True), a["outcome"])
        for a in actions
    )
    return Section(HEADINGS[5], (OrderedList(items),))


def _communication(p: dict[str, Any]) -> Section:
    c = p["communication"]
    latest = c["latest_update"]
    latest_text = f"{latest['at'] or 'undated'}: {latest['summary']}" if latest else "no public reply yet"
    return Section(
        HEADINGS[6],
        (
            BulletList(
                (
                    labelled("Most recent update", latest_text),
                    labelled("Customer expectation", c["customer_expectation"]),
                    labelled("Further escalation risk", c["escalation_risk"]),
                )
            ),
        ),
    )


def _request(p: dict[str, Any]) -> Section:
    r = p["request"]
    items = [
        line(Text(r["ask"], bold=True)),
        labelled("Hard deadline", f"{r['deadline']} ({r['deadline_basis']})"),
    ]
    if p["missing"]:
        items.append(labelled("Gaps in this package", "; ".join(p["missing"])))
    return Section(HEADINGS[7], (BulletList(tuple(items)),))


def _references(p: dict[str, Any]) -> Section:
    refs = p["references"]
    ticket = refs["ticket"]
    items = [line(_link(f"Ticket #{ticket['id']}", ticket["url"]))]
    items += [
        line(
            _link(f"Ticket #{r['ticket_id']}", r["url"]),
            f" ({r['organization']}): {r['subject']} (similarity {r['similarity']})",
        )
        for r in refs["related"]
    ]
    items += [line("Attachment: ", _link(a["name"], a["url"])) for a in refs["attachments"]]
    items += [line("Article: ", _link(a["id"], a["url"])) for a in refs["articles"]]
    return Section(HEADINGS[8], (BulletList(tuple(items)),))


def assessment_document(decision: dict[str, Any]) -> Document:
    """The assessment an agent reads in an internal note or the sidebar: the verdict and why."""
    sections = [Section("Verdict", (Paragraph(line(Text(decision["verdict"], bold=True))),))]
    triggers = decision["triggers"]
    if triggers:
        items = tuple(
            line(Text(f"{t['family']} / {t['id']}", code=True), f": {t['evidence']['summary']}")
            for t in triggers
        )
        sections.append(Section("Triggers", (BulletList(items),)))
    holds = decision["hold_reasons"]
    if holds:
        items = tuple(
            line(
                Text(h["id"], code=True),
                f": {h['evidence']['summary']} ",
                *([_link("article", h["reference"])] if h["reference"] else []),
            )
            for h in holds
        )
        sections.append(Section("Keep in support because", (BulletList(items),)))
    if decision["missing"]:
        sections.append(
            Section("Missing before sending", (BulletList(tuple(line(m) for m in decision["missing"])),))
        )
    sections.append(
        Section(
            "Judged by",
            (
                Paragraph(
                    line(
                        f"ruleset {decision['ruleset_version']}, symptom matcher {decision['matcher']}, "
                        f"at {decision['evaluated_at']}"
                    )
                ),
            ),
        )
    )
    title = "ASSESSMENT: " + (
        f"escalate to {decision['destination']} ({decision['severity']})"
        if decision["escalate"]
        else "keep in support"
    )
    return Document(title=title, sections=tuple(sections))
