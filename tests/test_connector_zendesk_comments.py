"""The bundle's comments come from the ticket's audits (Zendesk keeps a comment as the Comment event of
the audit that added it), so a bundle with audits needs no comments call; the comments endpoint is still
asked when the audits are not read, refused, possibly cut short, or hold no comment."""

from __future__ import annotations

import logging

import pytest

from connector import zendesk_bundle
from connector.sandbox.seed import TICKETS
from rules.adapters.zendesk import case_from_bundle

# ----- the mapping, on audits in the documented shapes -----

WEB = {"channel": "web", "source": {"from": {}, "to": {}, "rel": None}}
RULE = {"channel": "rule", "source": {"from": {"id": 22, "title": "Notify"}, "to": {}, "rel": "trigger"}}
META = {"custom": {}, "system": {"ip_address": "76.218.201.212"}}


def audit(aid: int, at: str, author: int, *events: dict) -> dict:
    return {"id": aid, "ticket_id": 47, "created_at": at, "author_id": author, "via": WEB,
            "metadata": META, "events": list(events)}  # fmt: skip


def test_comment_events_become_the_comments_endpoint_shape():
    audits = [
        audit(
            1, "2026-11-01T09:00:00Z", 7,
            {"id": 11, "type": "Comment", "author_id": 7, "body": "Export fails", "html_body": "<p>Export "
             "fails</p>", "plain_body": "Export fails", "public": True, "audit_id": 1, "attachments": [
                 {"id": 5, "file_name": "log.txt", "content_url": "https://x/log.txt", "size": 12}]},
            {"id": 12, "type": "Create", "field_name": "priority", "value": "normal"},
        ),
        audit(
            2, "2026-11-01T10:00:00Z", 901,
            # The documented minimum (Ticket Audits API example): no author_id, audit_id, plain_body.
            {"id": 21, "type": "Comment", "body": "Looking", "html_body": "<p>Looking</p>", "public": False,
             "attachments": []},
            {"id": 22, "type": "Notification", "subject": "Updated", "body": "Ticket #47 has been updated"},
            {"id": 23, "type": "Change", "field_name": "status", "value": "open", "previous_value": "new",
             "via": RULE},
        ),
        audit(3, "2026-11-01T11:00:00Z", 901,
              {"id": 31, "type": "VoiceComment", "author_id": 901, "body": "Call", "public": True,
               "via": RULE, "data": {"call_duration": 40}, "attachments": []}),
        audit(4, "2026-11-01T12:00:00Z", 901, {"id": 41, "type": "CommentPrivacyChange", "comment_id": 11,
                                                 "public": False}),
    ]  # fmt: skip

    comments = zendesk_bundle.comments_from_audits(audits)

    assert [c["id"] for c in comments] == [11, 21, 31]  # oldest first; only comments
    first, second, voice = comments
    assert first["public"] is False  # made private later: the current value, as the endpoint says
    assert first["attachments"][0]["file_name"] == "log.txt"
    assert (first["created_at"], first["via"], first["metadata"]) == ("2026-11-01T09:00:00Z", WEB, META)
    assert (second["author_id"], second["audit_id"], second["public"]) == (901, 2, False)
    assert "plain_body" not in second and second["body"] == "Looking"
    assert voice["via"] == RULE and voice["type"] == "VoiceComment"
    assert audits[0]["events"][0]["public"] is True  # the bundle's audits are left as Zendesk sent them

    case = case_from_bundle({"ticket": {"id": 47}, "comments": comments})
    assert [(c.id, c.author_id, c.body, c.public) for c in case.comments] == [
        ("11", "7", "Export fails", False),
        ("21", "901", "Looking", False),
        ("31", "901", "Call", True),
    ]
    assert case.comments[0].attachments[0].name == "log.txt"


def test_audits_without_comment_events_give_no_comments():
    assert zendesk_bundle.comments_from_audits([]) == []
    assert zendesk_bundle.comments_from_audits([audit(1, "2026-11-01T09:00:00Z", 7)]) == []


# ----- against the sandbox, through zenpy -----


def comment_reads(state, tid: int) -> list[dict]:
    return state.requests.matching("GET", f"/api/v2/tickets/{tid}/comments")


@pytest.mark.parametrize("name", sorted(TICKETS))
def test_comments_from_audits_equal_the_comments_endpoint(name, zendesk, sandbox_state):
    tid, state = TICKETS[name], sandbox_state.zendesk_state
    bundle = zendesk.fetch_bundle(tid, history_days=0)
    assert not comment_reads(state, tid)
    assert len(state.requests.matching("GET", f"/api/v2/tickets/{tid}")) == 2  # ticket, audits

    assert bundle["comments"] == zendesk_bundle.list_comments(zendesk._client, tid)
    assert bundle["comments"]


def test_comments_written_later_come_from_the_audits_too(zendesk, sandbox_state):
    state = sandbox_state.zendesk_state
    tid = state.add_ticket(subject="New", description="It broke")["id"]
    state.add_comment(tid, "Any news?", author_id=1006)
    zendesk.add_internal_note(tid, "<p>Asked engineering</p>")  # through the API: via "api"
    bundle = zendesk.fetch_bundle(tid, history_days=0)
    assert [c["body"] for c in bundle["comments"]] == ["It broke", "Any news?", "Asked engineering"]
    assert not comment_reads(state, tid)
    assert bundle["comments"] == zendesk_bundle.list_comments(zendesk._client, tid)


def test_a_long_thread_pages_through_the_audits(zendesk, sandbox_state):
    state = sandbox_state.zendesk_state
    tid = state.add_ticket(subject="Long thread", description="first")["id"]
    for i in range(249):
        state.update_ticket(tid, {"comment": {"body": f"reply {i}", "public": True}}, 901)
    bundle = zendesk.fetch_bundle(tid, history_days=0)
    assert len(bundle["comments"]) == 250 and bundle["comments"][-1]["body"] == "reply 248"
    assert len(state.requests.matching("GET", f"/api/v2/tickets/{tid}/audits")) == 3
    assert not comment_reads(state, tid)


def test_audits_cut_at_their_limit_fall_back_to_the_comments_call(zendesk, sandbox_state):
    state, tid = sandbox_state.zendesk_state, TICKETS["stalled"]
    everything = zendesk_bundle.list_comments(zendesk._client, tid)
    state.requests.clear()
    bundle = zendesk_bundle.assemble(zendesk._client, tid, history_days=0, audit_limit=3)
    assert len(bundle["audits"]) == 3
    assert bundle["comments"] == everything and len(everything) == 7
    assert len(comment_reads(state, tid)) == 1


def test_audits_are_not_read_without_need(zendesk, sandbox_state):
    state, tid = sandbox_state.zendesk_state, TICKETS["outage"]
    bundle = zendesk.fetch_bundle(tid, include_audits=False, history_days=0)
    assert "audits" not in bundle and len(bundle["comments"]) == 4
    assert len(comment_reads(state, tid)) == 1
    assert not state.requests.matching("GET", f"/api/v2/tickets/{tid}/audits")


def test_audits_holding_no_comment_fall_back_to_the_comments_call(zendesk, sandbox_state):
    """Real audits always hold the description; audits that do not cannot stand in for the comments."""
    state, tid = sandbox_state.zendesk_state, TICKETS["outage"]
    state.audits[tid] = [a for a in state.audits[tid] if all(e["type"] != "Comment" for e in a["events"])]
    bundle = zendesk.fetch_bundle(tid, history_days=0)
    assert len(bundle["audits"]) == 1 and len(bundle["comments"]) == 4
    assert len(comment_reads(state, tid)) == 1


def test_refused_audits_fall_back_to_the_comments_call(zendesk, sandbox_state):
    state, tid = sandbox_state.zendesk_state, TICKETS["outage"]
    state.faults.add(prefix=f"/api/v2/tickets/{tid}/audits", status=403, count=1)
    bundle = zendesk.fetch_bundle(tid, history_days=0)
    assert "audits" not in bundle and len(bundle["comments"]) == 4
    assert len(comment_reads(state, tid)) == 1


def test_the_comment_limit_holds_for_comments_from_audits(zendesk, sandbox_state, caplog):
    tid = TICKETS["stalled"]
    with caplog.at_level(logging.WARNING, logger="connector.zendesk_bundle"):
        bundle = zendesk_bundle.assemble(zendesk._client, tid, history_days=0, comment_limit=2)
    assert [c["id"] for c in bundle["comments"]] == [
        c["id"] for c in sandbox_state.zendesk_state.ticket_comments(tid)[:2]
    ]
    assert "more than 2 comments" in caplog.text
    assert not comment_reads(sandbox_state.zendesk_state, tid)
