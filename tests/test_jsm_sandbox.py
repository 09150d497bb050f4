"""The sandbox's Jira Service Management endpoints answer in JSM's documented shapes and permissions."""

from __future__ import annotations

import pytest
import requests

from connector.sandbox.jsm_state import CUSTOMER_TOKEN, REQUESTS, SERVICE_DESK_ID, jsm_state_for

API = "/rest/servicedeskapi"


@pytest.fixture
def site(sandbox_state):
    jsm_state_for(sandbox_state.jira_state).ensure()
    env = sandbox_state.environment()
    agent = (env["JIRA_EMAIL"], env["JIRA_API_TOKEN"])

    def call(method: str, path: str, *, auth=agent, **kwargs) -> requests.Response:
        return requests.request(method, f"{sandbox_state.jira_url}{path}", auth=auth, timeout=5, **kwargs)

    return call


def customer(key: str, sandbox_state) -> tuple[str, str]:
    desk = jsm_state_for(sandbox_state.jira_state)
    return desk.user(desk.request(key)["reporter"])["emailAddress"], CUSTOMER_TOKEN


def test_pages_follow_start_limit_and_is_last_page(site) -> None:
    first = site("GET", f"{API}/servicedesk/{SERVICE_DESK_ID}/organization", params={"limit": 5}).json()
    assert (first["start"], first["limit"], first["size"], first["isLastPage"]) == (0, 5, 5, False)
    assert "start=5" in first["_links"]["next"]
    everything, start = [], 0
    while True:
        page = site(
            "GET", f"{API}/servicedesk/{SERVICE_DESK_ID}/organization", params={"start": start}
        ).json()
        everything += page["values"]
        if page["isLastPage"]:
            break
        start += page["size"]
    assert len(everything) == 14 and {"id", "name", "_links"} <= set(everything[0])
    assert site("GET", f"{API}/organization", params={"limit": "x"}).status_code == 400


def test_a_request_in_its_documented_shape(site) -> None:
    raw = site(
        "GET", f"{API}/request/{REQUESTS['outage']}", params={"expand": "requestType,participant"}
    ).json()
    documented = {"issueId", "issueKey", "requestTypeId", "serviceDeskId", "createdDate", "reporter",
                  "requestFieldValues", "currentStatus", "_links", "requestType", "participants"}  # fmt: skip
    assert documented <= set(raw)
    assert {"iso8601", "jira", "epochMillis", "friendly"} <= set(raw["createdDate"])
    assert raw["currentStatus"]["statusCategory"] in ("NEW", "INDETERMINATE", "DONE")
    assert raw["requestType"]["name"] == "Report an incident"
    by_id = site("GET", f"{API}/request/{raw['issueId']}").json()
    assert by_id["issueKey"] == raw["issueKey"]
    [sla_value, *_] = site("GET", f"{API}/request/{raw['issueKey']}/sla").json()["values"]
    assert {"id", "name", "completedCycles"} <= set(sla_value)


def test_customers_see_only_their_requests_and_public_comments(site, sandbox_state) -> None:
    mine, other = REQUESTS["outage"], REQUESTS["security"]
    auth = customer(mine, sandbox_state)
    assert site("GET", f"{API}/request/{mine}", auth=auth).status_code == 200
    assert site("GET", f"{API}/request/{other}", auth=auth).status_code == 404
    assert site("GET", f"{API}/request/{mine}/sla", auth=auth).status_code == 403
    comments = site("GET", f"{API}/request/{mine}/comment", params={"internal": "true"}, auth=auth).json()
    assert comments["values"] and all(c["public"] for c in comments["values"])
    refused = site("POST", f"{API}/request/{mine}/comment", json={"body": "psst", "public": False}, auth=auth)
    assert refused.status_code == 400 and "errorMessage" in refused.json()
    posted = site("POST", f"{API}/request/{mine}/comment", json={"body": "Any news?"}, auth=auth)
    assert posted.status_code == 201 and posted.json()["public"] is True


def test_authentication_is_required_except_for_info(site) -> None:
    assert site("GET", f"{API}/info", auth=None).status_code == 200
    assert site("GET", f"{API}/request/{REQUESTS['outage']}", auth=None).status_code == 401
    assert site("GET", f"{API}/request/{REQUESTS['outage']}", auth=("someone", "wrong")).status_code == 401


def test_organization_properties_and_members(site) -> None:
    path = f"{API}/organization/1/property"
    assert site("GET", path).json()["keys"][0]["key"] == "escalate"
    assert site("GET", f"{path}/escalate").json()["value"]["sla_tier"] == "enterprise"
    assert site("GET", f"{path}/nothing").status_code == 404
    assert site("PUT", f"{path}/other", json={"a": 1}).status_code == 201
    assert site("PUT", f"{path}/other", json={"a": 2}).status_code == 200
    assert site("GET", f"{path}/other").json() == {"key": "other", "value": {"a": 2}}
    assert site("DELETE", f"{path}/other").status_code == 204
    [member] = site("GET", f"{API}/organization/1/user").json()["values"]
    orgs = site("GET", f"{API}/organization", params={"accountId": member["accountId"]}).json()["values"]
    assert [o["id"] for o in orgs] == ["1"]


def test_the_clock_decides_what_is_breached(site) -> None:
    key = REQUESTS["csv_export_2"]  # first response due in two hours

    def breached() -> bool:
        return site("GET", f"{API}/request/{key}/sla").json()["values"][0]["ongoingCycle"]["breached"]

    assert breached() is False
    site("POST", "/_sandbox/jsm/clock", json={"now": "2099-01-01T00:00:00Z"})
    assert breached() is True
    site("POST", "/_sandbox/jsm/clock", json={"now": None})
    assert breached() is False
    site("POST", f"/_sandbox/jsm/requests/{key}/status", json={"status": "Resolved"})
    status = site("GET", f"{API}/request/{key}").json()["currentStatus"]
    assert (status["status"], status["statusCategory"]) == ("Resolved", "DONE")
    issue = site("GET", f"/rest/api/2/issue/{key}", params={"fields": "status"}).json()
    assert issue["fields"]["status"]["statusCategory"]["key"] == "done"
