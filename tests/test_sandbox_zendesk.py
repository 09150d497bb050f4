"""The sandbox Zendesk over plain HTTP: auth, shapes, paging, the search cap, faults, inspection."""

from __future__ import annotations

import time

import pytest
import requests

from connector.sandbox.common import ZENDESK_EMAIL, ZENDESK_TOKEN, iso
from connector.sandbox.seed import TICKETS

AUTH = (f"{ZENDESK_EMAIL}/token", ZENDESK_TOKEN)


@pytest.fixture
def api(sandbox_state):
    base = sandbox_state.zendesk_url

    def call(method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("auth", AUTH)
        return requests.request(method, f"{base}{path}", timeout=5, **kwargs)

    return call


@pytest.mark.parametrize(
    "auth", [None, ("someone@acme.test/token", ZENDESK_TOKEN), (f"{ZENDESK_EMAIL}/token", "no")]
)
def test_api_needs_the_token(api, auth):
    response = api("GET", "/api/v2/tickets/101.json", auth=auth)
    assert response.status_code == 401
    assert response.json() == {"error": "Couldn't authenticate you"}


def test_slas_only_when_sideloaded(api):
    plain = api("GET", "/api/v2/tickets/101.json").json()["ticket"]
    assert "slas" not in plain
    ticket = api("GET", "/api/v2/tickets/101.json", params={"include": "slas"}).json()["ticket"]
    assert ticket["slas"]["policy_metrics"][0].keys() == {"breach_at", "stage", "metric"}
    assert ticket["url"].endswith("/api/v2/tickets/101.json")


def test_unknown_ticket_is_record_not_found(api):
    response = api("GET", "/api/v2/tickets/4040.json")
    assert response.status_code == 404 and response.json()["error"] == "RecordNotFound"


def test_seed_covers_the_policy_cases(sandbox_state):
    state = sandbox_state.zendesk_state
    tickets = {name: state.ticket(tid) for name, tid in TICKETS.items()}
    assert tickets["outage"]["priority"] == "urgent" and tickets["outage"]["type"] == "incident"
    assert "another customer's data" in tickets["security"]["description"]
    assert "not renew" in tickets["churn"]["description"]
    assert tickets["howto"]["type"] == "question"
    assert "missing" in tickets["data_loss"]["description"]
    csv_orgs = {tickets[f"csv_export_{i}"]["organization_id"] for i in (1, 2, 3)}
    assert len(csv_orgs) == 3
    stalled = tickets["stalled"]["slas"]["policy_metrics"][0]
    assert stalled["stage"] == "active" and stalled["breach_at"] < iso(state.seeded_at)  # breached
    assert "Feature request" in tickets["feature_request"]["subject"]
    for org in (state.organization(o) for o in csv_orgs):
        assert {"arr", "pipeline_arr", "renewal_date", "sla_tier"} <= set(org["organization_fields"])


def test_comments_cursor_paging(api, sandbox_state):
    tid = TICKETS["stalled"]
    first = api("GET", f"/api/v2/tickets/{tid}/comments.json", params={"page[size]": 3}).json()
    assert len(first["comments"]) == 3 and first["meta"]["has_more"] is True
    second = requests.get(first["links"]["next"], auth=AUTH, timeout=5).json()
    assert len(second["comments"]) == 3
    last = requests.get(second["links"]["next"], auth=AUTH, timeout=5).json()
    assert len(last["comments"]) == 1 and last["meta"]["has_more"] is False and last["links"]["next"] is None
    ids = [c["id"] for page in (first, second, last) for c in page["comments"]]
    assert ids == [c["id"] for c in sandbox_state.zendesk_state.ticket_comments(tid)]


def test_every_comment_is_the_comment_event_of_its_audit(api, sandbox_state):
    """As in Zendesk: a comment is an event of the audit that added it (same id and fields); the
    audit holds its time and via. True of the seed and of comments added later, by any route."""
    state = sandbox_state.zendesk_state
    new = state.add_ticket(subject="New", description="It broke")["id"]
    state.add_comment(new, "Any news?", author_id=1006, public=True)
    note = {"ticket": {"comment": {"html_body": "<p>Looking</p>", "public": False}, "status": "pending"}}
    assert api("PUT", f"/api/v2/tickets/{new}.json", json=note).status_code == 200
    for tid in [*TICKETS.values(), new]:
        comments = api("GET", f"/api/v2/tickets/{tid}/comments.json").json()["comments"]
        audits = {a["id"]: a for a in api("GET", f"/api/v2/tickets/{tid}/audits.json").json()["audits"]}
        events = [e for a in audits.values() for e in a["events"] if e["type"] == "Comment"]
        assert [e["id"] for e in events] == [c["id"] for c in comments]
        for comment, event in zip(comments, events, strict=True):
            assert event == {k: comment[k] for k in event}
            assert set(comment) - set(event) == {"via", "created_at", "metadata"}
            audit = audits[comment["audit_id"]]
            assert (audit["created_at"], audit["via"]) == (comment["created_at"], comment["via"])
    assert state.ticket_audits(new)[-1]["via"]["channel"] == "api"


def test_comments_offset_paging(api):
    page = api("GET", f"/api/v2/tickets/{TICKETS['stalled']}/comments.json", params={"per_page": 5}).json()
    assert page["count"] == 7 and len(page["comments"]) == 5 and "page=2" in page["next_page"]


def test_search_caps_at_1000_results(api):
    assert api("GET", "/api/v2/search.json", params={"query": "type:ticket", "page": 10}).status_code == 200
    capped = api("GET", "/api/v2/search.json", params={"query": "type:ticket", "page": 11})
    assert capped.status_code == 422


def test_search_query_syntax(api):
    def ids(query: str) -> set[int]:
        body = api("GET", "/api/v2/search.json", params={"query": query}).json()
        return {r["id"] for r in body["results"]}

    assert ids("type:ticket status:solved") == {120, 121, 123}
    assert ids("type:ticket status<solved organization:506") == {106}
    assert ids('type:ticket "CSV"') >= {106, 107, 108}
    assert ids("type:ticket tags:fixed") == {123}
    assert ids("type:ticket created>1day -status:new") == {101, 102, 105, 106, 107, 111}


def test_search_export_needs_a_type_and_pages_by_cursor(api):
    assert api("GET", "/api/v2/search/export.json", params={"query": "type:ticket"}).status_code == 400
    params = {"query": "type:ticket", "filter[type]": "ticket", "page[size]": 10}
    page = api("GET", "/api/v2/search/export.json", params=params).json()
    assert len(page["results"]) == 10 and page["meta"]["has_more"]
    assert page["results"][0]["result_type"] == "ticket"
    rest = requests.get(page["links"]["next"], auth=AUTH, timeout=5).json()
    assert len(rest["results"]) == len(TICKETS) - 10 and not rest["meta"]["has_more"]


def test_update_validates_and_audits(api, sandbox_state):
    bad = api("PUT", "/api/v2/tickets/104.json", json={"ticket": {"group_id": 77}})
    assert bad.status_code == 422 and bad.json()["error"] == "RecordInvalid"
    good = api(
        "PUT", "/api/v2/tickets/104.json", json={"ticket": {"status": "open", "additional_tags": ["x"]}}
    )
    body = good.json()
    assert body["ticket"]["status"] == "open" and "x" in body["ticket"]["tags"]
    assert {e["field_name"] for e in body["audit"]["events"]} == {"status", "tags"}
    assert [w["method"] for w in sandbox_state.zendesk_state.writes] == ["PUT"]


def test_faults_over_http(api, sandbox_state):
    base = sandbox_state.zendesk_url
    added = requests.post(
        f"{base}/_sandbox/faults", json={"status": 429, "retry_after": 9, "count": 1}, timeout=5
    )
    assert added.status_code == 201
    limited = api("GET", "/api/v2/tickets/101.json")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "9"
    assert api("GET", "/api/v2/tickets/101.json").status_code == 200

    requests.post(
        f"{base}/_sandbox/faults", json={"status": 500, "count": 2, "prefix": "/api/v2/users"}, timeout=5
    )
    assert [api("GET", "/api/v2/users/me.json").status_code for _ in range(3)] == [500, 500, 200]

    requests.post(f"{base}/_sandbox/faults", json={"latency_ms": 300, "count": 1}, timeout=5)
    started = time.monotonic()
    api("GET", "/api/v2/users/me.json")
    assert time.monotonic() - started >= 0.3
    assert requests.get(f"{base}/_sandbox/faults", timeout=5).json() == {"faults": []}


def test_inspection_endpoints(api, sandbox_state):
    base = sandbox_state.zendesk_url
    api("PUT", "/api/v2/tickets/101/tags.json", json={"tags": ["inspected"]})
    state = requests.get(f"{base}/_sandbox/state", timeout=5).json()
    assert "inspected" in next(t for t in state["tickets"] if t["id"] == 101)["tags"]
    assert state["writes"][0]["body"] == {"tags": ["inspected"]}
    log = requests.get(f"{base}/_sandbox/requests", timeout=5).json()["requests"]
    assert log[-1]["method"] == "PUT" and log[-1]["status"] == 200

    created = requests.post(f"{base}/_sandbox/tickets", json={"subject": "Added"}, timeout=5).json()["ticket"]
    assert api("GET", f"/api/v2/tickets/{created['id']}.json").json()["ticket"]["subject"] == "Added"

    requests.post(f"{base}/_sandbox/reset", timeout=5)
    assert "inspected" not in sandbox_state.zendesk_state.ticket(101)["tags"]
    assert sandbox_state.zendesk_state.ticket(created["id"]) is None
