"""Escalating tickets end to end through both connectors and the sandbox, as the worker will: read the
case, create (or find) the issue, link each ticket to it, and note the issue on each ticket."""

from __future__ import annotations

from connector.jira_connector import IssueRef, JiraConnector
from connector.sandbox.adf_check import adf_errors
from connector.sandbox.seed import TICKETS
from connector.zendesk_connector import ZendeskConnector


def package_adf(bundle: dict) -> dict:
    ticket = bundle["ticket"]
    org = next(o for o in bundle["organizations"] if o["id"] == ticket["organization_id"])
    return {
        "type": "doc",
        "version": 1,
        "content": [
            {"type": "heading", "attrs": {"level": 2}, "content": [{"type": "text", "text": "ESCALATION"}]},
            {"type": "paragraph", "content": [{"type": "text", "text": ticket["subject"]}]},
            {
                "type": "bulletList",
                "content": [
                    {
                        "type": "listItem",
                        "content": [
                            {
                                "type": "paragraph",
                                "content": [
                                    {"type": "text", "text": "Customer: ", "marks": [{"type": "strong"}]},
                                    {
                                        "type": "text",
                                        "text": f"{org['name']} (ARR {org['organization_fields']['arr']})",
                                    },
                                ],
                            }
                        ],
                    }
                ],
            },
        ],
    }


def escalate(
    zendesk: ZendeskConnector, jira: JiraConnector, ticket_id: int, *, into: str | None = None
) -> IssueRef:
    """One escalation job: idempotent, so running it twice changes nothing the second time."""
    bundle = zendesk.fetch_bundle(ticket_id)
    ticket = bundle["ticket"]
    if into is None:
        label = f"escalate-zd-{ticket_id}"
        ref = jira.find_issue_by_label(label) or jira.create_issue(
            project="ENG",
            issue_type="Bug",
            summary=ticket["subject"],
            description_adf=package_adf(bundle),
            description_wiki=f"h2. ESCALATION\n\n{ticket['subject']}",
            labels=["escalate"],
            security_level=None,
            idempotency_label=label,
            priority="Highest",
        )
    else:
        ref = IssueRef(key=into, id="", url=jira.browse_url(into))
    jira.upsert_remote_link(
        ref.key,
        ticket_url=zendesk.ticket_url(ticket_id),
        ticket_id=ticket_id,
        title=f"Zendesk #{ticket_id}: {ticket['subject']}",
    )
    zendesk.record_jira_link(ticket_id, ref.key, ref.url)
    return ref


def test_escalating_a_ticket_creates_one_issue_one_link_one_note(zendesk, jira, sandbox_state):
    tid = TICKETS["outage"]
    ref = escalate(zendesk, jira, tid)
    escalate(zendesk, jira, tid)  # the job delivered twice

    issues = sandbox_state.jira_state.dump()["issues"]
    assert [i["key"] for i in issues] == [ref.key]
    description = issues[0]["description"]
    assert adf_errors(description) == []
    assert description["type"] == "doc" and description["version"] == 1
    assert len(sandbox_state.jira_state.requests.matching("POST", "/rest/api/3/issue")) == 1

    links = issues[0]["remote_links"]
    assert len(links) == 1
    assert links[0]["object"]["url"] == f"{sandbox_state.zendesk_url}/agent/tickets/{tid}"

    notes = [n for n in sandbox_state.zendesk_state.internal_notes(tid) if ref.key in n["body"]]
    assert len(notes) == 1 and notes[0]["public"] is False
    assert "jira_escalated" in sandbox_state.zendesk_state.ticket(tid)["tags"]


def test_renderer_adf_is_well_formed_too(zendesk):
    from connector.render.adf import validate_adf

    assert validate_adf(package_adf(zendesk.fetch_bundle(TICKETS["outage"]))) == []


def test_same_symptom_tickets_share_one_issue(zendesk, jira, sandbox_state):
    first, second, third = TICKETS["csv_export_1"], TICKETS["csv_export_2"], TICKETS["csv_export_3"]
    ref = escalate(zendesk, jira, first)
    for tid in (second, third, second):
        escalate(zendesk, jira, tid, into=ref.key)

    issues = sandbox_state.jira_state.dump()["issues"]
    assert len(issues) == 1
    linked = sorted(link["object"]["url"].rsplit("/", 1)[-1] for link in issues[0]["remote_links"])
    assert linked == sorted(str(t) for t in (first, second, third))
    for tid in (first, second, third):
        notes = [n for n in sandbox_state.zendesk_state.internal_notes(tid) if ref.key in n["body"]]
        assert len(notes) == 1, tid


def test_escalation_to_server_jira_uses_wiki(zendesk, jira_server, sandbox_state):
    ref = escalate(zendesk, jira_server, TICKETS["data_loss"])
    issue = sandbox_state.jira_state.find(ref.key)
    assert issue["description_format"] == "wiki" and issue["description"].startswith("h2. ESCALATION")
    assert len(issue["remote_links"]) == 1
