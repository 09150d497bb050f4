"""The Zendesk connector — real zenpy over HTTP — against the sandbox Zendesk."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from connector import errors
from connector.sandbox.seed import JIRA_ISSUE_FIELD, L2_GROUP_ID, PRODUCT_AREA_FIELD, TICKETS
from connector.zendesk_client import ConfigError, ZendeskConfig, split_host
from connector.zendesk_connector import issue_tag


def _keys(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _keys(v)
    elif isinstance(value, list):
        for v in value:
            yield from _keys(v)


def test_bundle_has_every_part_in_zendesk_shapes(zendesk):
    bundle = zendesk.fetch_bundle(TICKETS["outage"])
    ticket = bundle["ticket"]
    assert ticket["id"] == TICKETS["outage"]
    metrics = ticket["slas"]["policy_metrics"]
    assert {m["metric"] for m in metrics} == {"first_reply_time", "next_reply_time"}
    assert all({"breach_at", "stage", "metric"} <= set(m) for m in metrics)
    assert ticket["via"]["source"]["from"] == {}  # zenpy's "from_" is turned back into "from"
    assert "from_" not in set(_keys(bundle))

    assert bundle["comments"][0]["body"] == ticket["description"]
    assert [c["public"] for c in bundle["comments"]] == [True, False, True, True]
    roles = {u["id"]: u["role"] for u in bundle["users"]}
    assert roles[ticket["requester_id"]] == "end-user" and roles[901] == "agent"
    orgs = {o["id"]: o for o in bundle["organizations"]}
    assert orgs[ticket["organization_id"]]["organization_fields"]["arr"] == 480_000
    assert "strategic" in orgs[ticket["organization_id"]]["tags"]

    history_ids = {t["id"] for t in bundle["history"]}
    assert TICKETS["outage"] not in history_ids
    assert {TICKETS["csv_export_1"], TICKETS["csv_export_2"], TICKETS["csv_export_3"]} <= history_ids
    assert {t["organization_id"] for t in bundle["history"]} <= set(orgs)

    changes = [e for a in bundle["audits"] for e in a["events"] if e["type"] == "Change"]
    assert {"field_name": "priority", "previous_value": "normal", "value": "urgent"}.items() <= changes[
        0
    ].items()
    json.dumps(bundle)  # plain JSON, as `escalate evaluate` reads it


def test_bundle_reads_as_a_case(zendesk):
    from rules.adapters.zendesk import case_from_bundle

    stalled = case_from_bundle(zendesk.fetch_bundle(TICKETS["stalled"]))
    assert stalled.ticket.priority == "high"
    assert stalled.ticket.sla_metrics and stalled.ticket.sla_metrics[0].breach_at < stalled.now
    assert sum(1 for c in stalled.comments if c.public and stalled.is_staff_comment(c)) >= 5
    outage = case_from_bundle(zendesk.fetch_bundle(TICKETS["outage"]))
    assert [(c.field, c.previous, c.value) for c in outage.ticket.changes] == [
        ("priority", "normal", "urgent")
    ]
    assert outage.organization is not None and outage.organization.fields["sla_tier"] == "enterprise"


def test_bundle_pages_through_comments(zendesk, sandbox_state):
    state = sandbox_state.zendesk_state
    tid = state.add_ticket(subject="Long thread", description="first")["id"]
    for i in range(249):
        state.update_ticket(tid, {"comment": {"body": f"reply {i}", "public": True}}, 901)
    bundle = zendesk.fetch_bundle(tid, include_audits=False, history_days=0)
    assert len(bundle["comments"]) == 250
    assert bundle["comments"][-1]["body"] == "reply 248"
    assert "history" not in bundle and "audits" not in bundle
    pages = state.requests.matching("GET", f"/api/v2/tickets/{tid}/comments")
    assert len(pages) == 3


def test_history_pages_past_one_page_and_respects_the_limit(zendesk, sandbox_state):
    state = sandbox_state.zendesk_state
    for i in range(150):
        state.add_ticket(subject=f"Bulk ticket {i}", description="bulk")
    bundle = zendesk.fetch_bundle(TICKETS["howto"])
    assert len(bundle["history"]) == 150 + len(TICKETS) - 1
    assert len(state.requests.matching("GET", "/api/v2/search/export")) == 2
    assert not state.requests.matching("GET", "/api/v2/search.json")  # never the capped endpoint

    small = zendesk.fetch_bundle(TICKETS["howto"], history_limit=5)
    assert len(small["history"]) == 5


def test_history_window_excludes_old_tickets(zendesk, sandbox_state):
    old = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    tid = sandbox_state.zendesk_state.add_ticket(subject="Ancient", created_at=old)["id"]
    history = zendesk.fetch_bundle(TICKETS["howto"], history_days=14)["history"]
    assert tid not in {t["id"] for t in history}


def test_internal_note_is_private_and_html_safe(zendesk, sandbox_state):
    tid = TICKETS["security"]
    zendesk.add_internal_note(
        tid, '<p onclick="x()">Hi <script>alert(1)</script><a href="javascript:x">y</a></p>'
    )
    note = sandbox_state.zendesk_state.internal_notes(tid)[-1]
    assert note["public"] is False
    assert note["html_body"] == "<p>Hi <a>y</a></p>"
    put = sandbox_state.zendesk_state.writes[-1]
    assert put["method"] == "PUT" and put["path"] == f"/api/v2/tickets/{tid}.json"
    assert put["body"] == {"ticket": {"comment": {"html_body": "<p>Hi <a>y</a></p>", "public": False}}}


def test_text_note_is_escaped(zendesk, sandbox_state):
    zendesk.add_internal_note_text(TICKETS["howto"], "a < b & <b>c</b>\n\nnext")
    note = sandbox_state.zendesk_state.internal_notes(TICKETS["howto"])[-1]
    assert note["html_body"] == "<p>a &lt; b &amp; &lt;b&gt;c&lt;/b&gt;</p><p>next</p>"


def test_tags_are_added_and_removed_without_replacing(zendesk, sandbox_state):
    tid = TICKETS["churn"]
    assert zendesk.add_tags(tid, ["escalated", "Account Risk"]) == ["account_risk", "escalated", "reporting"]
    assert zendesk.remove_tags(tid, ["escalated"]) == ["account_risk", "reporting"]
    methods = [w["method"] for w in sandbox_state.zendesk_state.writes]
    assert methods == ["PUT", "DELETE"]


def test_custom_fields_and_group(zendesk, sandbox_state):
    tid = TICKETS["stalled"]
    zendesk.set_custom_fields(tid, {PRODUCT_AREA_FIELD: "calendar"})
    zendesk.assign_group(tid, L2_GROUP_ID)
    ticket = sandbox_state.zendesk_state.ticket(tid)
    assert {"id": PRODUCT_AREA_FIELD, "value": "calendar"} in ticket["custom_fields"]
    assert ticket["group_id"] == L2_GROUP_ID
    with pytest.raises(errors.PermanentError) as caught:
        zendesk.assign_group(tid, 999)
    assert caught.value.status == 422


def test_record_jira_link_once(zendesk, sandbox_state):
    tid = TICKETS["data_loss"]
    assert zendesk.record_jira_link(tid, "ENG-7", "https://acme.atlassian.net/browse/ENG-7") is True
    assert zendesk.record_jira_link(tid, "ENG-7", "https://acme.atlassian.net/browse/ENG-7") is False
    ticket = sandbox_state.zendesk_state.ticket(tid)
    assert {"jira_escalated", issue_tag("ENG-7")} <= set(ticket["tags"])
    assert {"id": JIRA_ISSUE_FIELD, "value": "ENG-7"} in ticket["custom_fields"]
    notes = [n for n in sandbox_state.zendesk_state.internal_notes(tid) if "ENG-7" in n["body"]]
    assert len(notes) == 1
    assert 'href="https://acme.atlassian.net/browse/ENG-7"' in notes[0]["html_body"]


def test_missing_ticket_and_bad_credentials(zendesk, make_zendesk):
    with pytest.raises(errors.NotFoundError):
        zendesk.get_ticket(999_999)
    bad = make_zendesk(api_token="wrong")
    with pytest.raises(errors.AuthError) as caught:
        bad.fetch_bundle(TICKETS["outage"])
    assert "wrong" not in str(caught.value)


def test_injected_429_comes_back_typed_without_waiting(zendesk, sandbox_state):
    sandbox_state.zendesk_state.faults.rate_limit(retry_after=7, prefix="/api/v2/tickets")
    started = time.monotonic()
    with pytest.raises(errors.RateLimited) as caught:
        zendesk.get_ticket(TICKETS["outage"])
    assert caught.value.retry_after == 7
    assert time.monotonic() - started < 2
    assert zendesk.get_ticket(TICKETS["outage"])["id"] == TICKETS["outage"]  # the caller's retry works


def test_injected_500s_then_recovery(zendesk, sandbox_state):
    sandbox_state.zendesk_state.faults.server_errors(status=500, count=2)
    for _ in range(2):
        with pytest.raises(errors.TransientError):
            zendesk.get_ticket(TICKETS["howto"])
    assert zendesk.get_ticket(TICKETS["howto"])["id"] == TICKETS["howto"]
    assert len(sandbox_state.zendesk_state.requests.matching("GET", "/api/v2/tickets")) == 3


def test_latency_beyond_the_timeout_is_transient(sandbox_state, make_zendesk):
    sandbox_state.zendesk_state.faults.latency(1500, count=1)
    slow = make_zendesk(timeout=0.3)
    with pytest.raises(errors.TransientError, match="timed out"):
        slow.get_ticket(TICKETS["howto"])


def test_config_from_env():
    env = {
        "ZENDESK_URL": "https://acme.zendesk.com",
        "ZENDESK_EMAIL": "a@acme.test",
        "ZENDESK_API_TOKEN": "s3cr3t",
    }
    config = ZendeskConfig.from_env(env)
    assert (config.url, config.timeout, config.jira_link_field_id) == (env["ZENDESK_URL"], 15.0, None)
    assert "s3cr3t" not in repr(config)
    assert ZendeskConfig.from_env({**env, "ZENDESK_JIRA_FIELD_ID": "360002"}).jira_link_field_id == 360002
    with pytest.raises(ConfigError, match="ZENDESK_API_TOKEN"):
        ZendeskConfig.from_env({k: v for k, v in env.items() if k != "ZENDESK_API_TOKEN"})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://acme.zendesk.com", ("https", "acme", "zendesk.com")),
        ("https://acme.zendesk.com/", ("https", "acme", "zendesk.com")),
        ("http://127.0.0.1:8101", ("http", "127", "0.0.1:8101")),
        ("https://support.acme.example", ("https", "support", "acme.example")),
    ],
)
def test_split_host(url, expected):
    assert split_host(url) == expected


@pytest.mark.parametrize(
    "url", ["http://localhost:8101", "acme.zendesk.com", "https://acme.zendesk.com/api/v2", "ftp://a.b"]
)
def test_unusable_urls_fail_at_configuration(url):
    with pytest.raises(ConfigError):
        split_host(url)


def test_show_many_asks_for_at_most_100_ids_a_call():
    from connector.zendesk_bundle import show_many

    calls = []

    def fetch(ids):
        calls.append(list(ids))
        return [{"id": i} for i in ids if i % 2]

    found = show_many(fetch, [*range(1, 251), None, 3])
    assert [len(c) for c in calls] == [100, 100, 50]
    assert len(found) == 125
