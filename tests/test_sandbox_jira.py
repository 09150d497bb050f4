"""The sandbox Jira over plain HTTP, and the ``escalate sandbox`` command."""

from __future__ import annotations

import argparse
import threading
import time

import pytest
import requests

from connector.sandbox import cli
from connector.sandbox.adf_check import adf_errors
from connector.sandbox.common import JIRA_EMAIL, JIRA_TOKEN

AUTH = (JIRA_EMAIL, JIRA_TOKEN)
ADF = {
    "type": "doc",
    "version": 1,
    "content": [{"type": "paragraph", "content": [{"type": "text", "text": "hi"}]}],
}


@pytest.fixture
def api(sandbox_state):
    base = sandbox_state.jira_url

    def call(method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("auth", AUTH)
        return requests.request(method, f"{base}{path}", timeout=5, **kwargs)

    return call


def new_issue(api, version: str = "3", **fields) -> requests.Response:
    body = {"project": {"key": "ENG"}, "issuetype": {"name": "Bug"}, "summary": "Broken"}
    body.update(fields)
    return api("POST", f"/rest/api/{version}/issue", json={"fields": body})


def test_server_info_is_open_and_switchable(api, sandbox_state):
    info = api("GET", "/rest/api/2/serverInfo", auth=None).json()
    assert info["deploymentType"] == "Cloud" and info["versionNumbers"][0] >= 1000
    sandbox_state.jira_state.configure(deployment_type="Server")
    info = api("GET", "/rest/api/2/serverInfo").json()
    assert info["deploymentType"] == "Server" and info["versionNumbers"][:2] == [9, 12]


def test_everything_else_needs_credentials(api):
    assert api("GET", "/rest/api/2/myself", auth=None).status_code == 401
    assert api("GET", "/rest/api/2/myself", auth=(JIRA_EMAIL, "wrong")).status_code == 401
    bearer = {"Authorization": f"Bearer {JIRA_TOKEN}"}
    assert api("GET", "/rest/api/2/myself", auth=None, headers=bearer).status_code == 200


def test_v3_takes_adf_and_v2_takes_text(api):
    assert new_issue(api, "3", description="plain text").status_code == 400
    assert (
        new_issue(
            api, "3", description={"type": "doc", "version": 1, "content": [{"type": "text"}]}
        ).status_code
        == 400
    )
    assert new_issue(api, "2", description=ADF).status_code == 400
    created = new_issue(api, "3", description=ADF)
    assert created.status_code == 201 and created.json()["key"] == "ENG-1"
    assert new_issue(api, "2", description="h2. Wiki").json()["key"] == "ENG-2"
    as_v2 = api("GET", "/rest/api/2/issue/ENG-1").json()["fields"]["description"]
    as_v3 = api("GET", "/rest/api/3/issue/ENG-1", params={"fields": "description,status"}).json()["fields"]
    assert as_v2 == "hi" and as_v3["description"] == ADF and set(as_v3) == {"description", "status"}


def test_descriptions_over_the_limit_are_refused(api):
    response = new_issue(api, "2", description="x" * 32_768)
    assert response.status_code == 400 and "32,767" in response.json()["errors"]["description"]


def test_field_validation(api):
    errors = new_issue(api, "2", project={"key": "NOPE"}, labels=["has space"], summary="").json()["errors"]
    assert {"project", "labels", "summary"} <= set(errors)
    assert "issuetype" in new_issue(api, "2", issuetype={"name": "Saga"}).json()["errors"]


def test_search_endpoints_follow_the_deployment(api, sandbox_state):
    new_issue(api, "2", labels=["escalate-zd-1"])
    assert api("GET", "/rest/api/2/search", params={"jql": "labels = escalate-zd-1"}).status_code == 410
    found = api("GET", "/rest/api/2/search/jql", params={"jql": 'labels = "escalate-zd-1"'}).json()
    assert [i["key"] for i in found["issues"]] == ["ENG-1"] and found["isLast"] is True
    sandbox_state.jira_state.configure(deployment_type="Server")
    assert api("GET", "/rest/api/2/search/jql", params={"jql": "labels = x"}).status_code == 404
    found = api(
        "POST", "/rest/api/2/search", json={"jql": "project = ENG AND labels in (escalate-zd-1, other)"}
    )
    assert found.json()["total"] == 1
    assert api("GET", "/rest/api/2/search", params={"jql": "summary ~ broken"}).status_code == 400


def test_search_is_eventually_consistent_on_request(api, sandbox_state):
    base = sandbox_state.jira_url
    requests.post(f"{base}/_sandbox/config", json={"search_delay_s": 0.5}, timeout=5)
    key = new_issue(api, "3", labels=["fresh"]).json()["key"]
    assert api("GET", f"/rest/api/3/issue/{key}").status_code == 200  # reads see it at once
    assert api("GET", "/rest/api/3/search/jql", params={"jql": "labels = fresh"}).json()["issues"] == []
    time.sleep(0.6)
    assert len(api("GET", "/rest/api/3/search/jql", params={"jql": "labels = fresh"}).json()["issues"]) == 1


def test_remote_links_upsert_by_global_id(api):
    new_issue(api, "2")
    link = {"globalId": "system=https://acme.zendesk.com/tickets&id=7", "object": {"url": "u", "title": "t"}}
    assert api("POST", "/rest/api/2/issue/ENG-1/remotelink", json=link).status_code == 201
    link["object"]["title"] = "t2"
    assert api("POST", "/rest/api/2/issue/ENG-1/remotelink", json=link).status_code == 200
    assert api("POST", "/rest/api/2/issue/ENG-1/remotelink", json={"object": {"url": "v", "title": "x"}}).ok
    links = api("GET", "/rest/api/2/issue/ENG-1/remotelink").json()
    assert [x["object"]["title"] for x in links] == ["t2", "x"]


def test_comments_transitions_and_links(api, sandbox_state):
    new_issue(api, "3")
    new_issue(api, "3")
    assert api("POST", "/rest/api/3/issue/ENG-1/comment", json={"body": "text"}).status_code == 400
    assert api("POST", "/rest/api/3/issue/ENG-1/comment", json={"body": ADF}).status_code == 201
    assert api("POST", "/rest/api/2/issue/ENG-1/comment", json={"body": "*wiki*"}).status_code == 201
    comments = api("GET", "/rest/api/3/issue/ENG-1/comment").json()["comments"]
    assert all(adf_errors(c["body"]) == [] for c in comments)

    transitions = api("GET", "/rest/api/2/issue/ENG-1/transitions").json()["transitions"]
    done = next(t for t in transitions if t["name"] == "Done")
    assert (
        api(
            "POST", "/rest/api/2/issue/ENG-1/transitions", json={"transition": {"id": done["id"]}}
        ).status_code
        == 204
    )
    status = api("GET", "/rest/api/2/issue/ENG-1", params={"fields": "status"}).json()["fields"]["status"]
    assert status["statusCategory"]["key"] == "done"

    link = {"type": {"name": "Relates"}, "inwardIssue": {"key": "ENG-2"}, "outwardIssue": {"key": "ENG-1"}}
    assert api("POST", "/rest/api/2/issueLink", json=link).status_code == 201
    links = api("GET", "/rest/api/2/issue/ENG-1").json()["fields"]["issuelinks"]
    assert links[0]["inwardIssue"]["key"] == "ENG-2"
    assert api("GET", "/rest/api/2/issueLinkType").json()["issueLinkTypes"][3]["name"] == "Relates"


def test_status_switch_and_reset(api, sandbox_state):
    base = sandbox_state.jira_url
    new_issue(api, "2")
    moved = requests.post(f"{base}/_sandbox/issues/ENG-1/status", json={"name": "In Progress"}, timeout=5)
    assert moved.json()["status"] == "In Progress"
    state = requests.get(f"{base}/_sandbox/state", timeout=5).json()
    assert state["issues"][0]["status"] == "In Progress"
    requests.post(f"{base}/_sandbox/reset", timeout=5)
    assert requests.get(f"{base}/_sandbox/state", timeout=5).json()["issues"] == []


def test_faults_apply_to_jira_too(api, sandbox_state):
    sandbox_state.jira_state.faults.rate_limit(retry_after=3, prefix="/rest/api/3/issue", count=1)
    limited = new_issue(api, "3", description=ADF)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
    assert "errorMessages" in limited.json()
    assert new_issue(api, "3", description=ADF).status_code == 201


def test_cli_starts_both_and_prints_how_to_connect(capsys):
    parser = argparse.ArgumentParser(prog="escalate")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sandbox", "--jira-deployment", "Server"])
    stop = threading.Event()
    runner = threading.Thread(target=lambda: args.func(args, stop=stop))
    runner.start()
    try:
        out = ""
        for _ in range(100):
            out += capsys.readouterr().out
            if "Running until Ctrl-C" in out:
                break
            time.sleep(0.05)
        exports = [line.strip().removeprefix("export ") for line in out.splitlines() if "export " in line]
        env = dict(line.split("=", 1) for line in exports)
        assert env["ZENDESK_URL"].startswith("http://127.0.0.1:") and env["JIRA_API_TOKEN"] == JIRA_TOKEN
        info = requests.get(f"{env['JIRA_URL']}/rest/api/2/serverInfo", timeout=5).json()
        assert info["deploymentType"] == "Server"
    finally:
        stop.set()
        runner.join(timeout=10)
    assert not runner.is_alive()
