"""The Jira connector — the real jira client over HTTP — against the sandbox Jira, Cloud and Server."""

from __future__ import annotations

import time

import pytest

from connector import errors
from connector.jira_client import ConfigError, Deployment, JiraConfig, parse_deployment
from connector.jira_connector import clean_summary, parse_jira_time, ticket_global_id
from connector.jira_description import JIRA_TEXT_LIMIT, adf_size
from connector.sandbox.adf_check import adf_errors


def adf(*paragraphs: str) -> dict:
    return {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": p}]} for p in paragraphs],
    }


def create(connector, **overrides):
    args = dict(
        project="ENG",
        issue_type="Bug",
        summary="CSV export times out for three customers",
        description_adf=adf("ESCALATION: CSV export times out", "Severity: high"),
        description_wiki="h2. ESCALATION: CSV export times out\n\nSeverity: high",
        labels=["escalate", "support-escalation"],
        security_level=None,
        idempotency_label="escalate-zd-106",
        full_package_url="https://escalate.example/packages/106",
    )
    args.update(overrides)
    return connector.create_issue(**args)


def stored(sandbox, key: str) -> dict:
    return sandbox.jira_state.find(key)


def test_cloud_creates_through_v3_with_adf(jira, sandbox_state):
    ref = create(jira, security_level="Internal", priority="High")
    assert jira.deployment is Deployment.CLOUD
    issue = stored(sandbox_state, ref.key)
    assert ref.key == "ENG-1" and ref.url == f"{sandbox_state.jira_url}/browse/ENG-1"
    assert issue["description_format"] == "adf" and adf_errors(issue["description"]) == []
    assert issue["labels"] == ["escalate", "support-escalation", "escalate-zd-106"]
    assert issue["security"]["name"] == "Internal" and issue["priority"] == "High"
    log = sandbox_state.jira_state.requests
    assert len(log.matching("POST", "/rest/api/3/issue")) == 1
    assert not log.matching("POST", "/rest/api/2/issue")


def test_server_creates_through_v2_with_wiki(jira_server, sandbox_state):
    ref = create(jira_server)
    assert jira_server.deployment is Deployment.SERVER
    issue = stored(sandbox_state, ref.key)
    assert issue["description_format"] == "wiki"
    assert issue["description"].startswith("h2. ESCALATION")
    assert len(sandbox_state.jira_state.requests.matching("POST", "/rest/api/2/issue")) == 1


def test_configured_deployment_skips_server_info(make_jira, sandbox_state):
    sandbox_state.jira_state.configure(deployment_type="Server")  # what serverInfo would say, unasked
    connector = make_jira(deployment=Deployment.CLOUD)
    create(connector)
    log = sandbox_state.jira_state.requests
    assert not log.matching("GET", "/rest/api/2/serverInfo")
    assert len(log.matching("POST", "/rest/api/3/issue")) == 1


def test_security_level_for_security_escalations(jira, sandbox_state):
    ref = create(jira, project="SEC", security_level="Restricted")
    assert stored(sandbox_state, ref.key)["security"] == {"id": "10301", "name": "Restricted"}
    with pytest.raises(errors.PermanentError) as caught:
        create(jira, project="SEC", security_level="Nonexistent")
    assert caught.value.status == 400 and "security" in caught.value.message


def test_long_wiki_description_is_cut_with_a_pointer(jira_server, sandbox_state):
    ref = create(jira_server, description_wiki="line of text\n" * 5000)
    description = stored(sandbox_state, ref.key)["description"]
    assert len(description) <= JIRA_TEXT_LIMIT
    assert "https://escalate.example/packages/106" in description.splitlines()[-1]


def test_long_adf_description_is_cut_with_a_pointer(jira, sandbox_state):
    huge = adf(*(f"paragraph {i} " + "x" * 400 for i in range(200)))
    ref = create(jira, description_adf=huge)
    description = stored(sandbox_state, ref.key)["description"]
    assert adf_errors(description) == []
    assert adf_size(description) <= JIRA_TEXT_LIMIT
    pointer = description["content"][-1]["content"]
    assert "full escalation package" in "".join(node["text"] for node in pointer)
    hrefs = [mark["attrs"]["href"] for node in pointer for mark in node.get("marks", [])]
    assert hrefs == ["https://escalate.example/packages/106"]


def test_one_enormous_adf_block_still_fits(jira, sandbox_state):
    ref = create(jira, description_adf=adf("y" * 100_000))
    description = stored(sandbox_state, ref.key)["description"]
    assert adf_errors(description) == [] and adf_size(description) <= JIRA_TEXT_LIMIT


def test_malformed_adf_falls_back_to_the_text(jira, sandbox_state):
    broken = {"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text"}]}]}
    ref = create(jira, description_adf=broken)
    description = stored(sandbox_state, ref.key)["description"]
    assert adf_errors(description) == []
    assert "CSV export times out" in description["content"][0]["content"][0]["text"]


def test_summary_is_one_line_within_the_limit(jira, sandbox_state):
    ref = create(jira, summary="Production down\nfor all " + "z" * 400)
    summary = stored(sandbox_state, ref.key)["summary"]
    assert "\n" not in summary and len(summary) <= 255
    assert clean_summary("a\n b") == "a b"


def test_find_by_label_waits_for_eventually_consistent_search(jira, sandbox_state):
    sandbox_state.jira_state.configure(search_delay_s=0.6)
    ref = create(jira)
    assert jira.find_issue_by_label("escalate-zd-106") is None  # created, but not yet searchable
    time.sleep(0.7)
    assert jira.find_issue_by_label("escalate-zd-106") == ref
    assert jira.find_issue_by_label("escalate-zd-999") is None
    assert sandbox_state.jira_state.requests.matching("GET", "/rest/api/2/search/jql")


def test_find_by_label_on_server(jira_server):
    ref = create(jira_server)
    assert jira_server.find_issue_by_label("escalate-zd-106") == ref


def test_remote_link_is_an_upsert(jira, sandbox_state):
    ref = create(jira)
    url = f"{sandbox_state.zendesk_url}/agent/tickets/106"
    first = jira.upsert_remote_link(ref.key, ticket_url=url, ticket_id=106, title="Ticket #106")
    again = jira.upsert_remote_link(ref.key, ticket_url=url, ticket_id=106, title="Ticket #106: CSV export")
    other = jira.link_ticket(
        ref.key, ticket_url=url.replace("106", "107"), ticket_id=107, title="Ticket #107"
    )
    links = stored(sandbox_state, ref.key)["remote_links"]
    assert first == again != other
    assert [link["object"]["title"] for link in links] == ["Ticket #106: CSV export", "Ticket #107"]
    assert links[0]["globalId"] == ticket_global_id(url, 106)


def test_comments_in_the_deployment_format(jira, jira_server, sandbox_state):
    sandbox_state.jira_state.configure(deployment_type="Cloud")
    cloud_ref = create(jira)
    jira.add_comment(cloud_ref.key, body_adf=adf("Customer update sent"), body_wiki="Customer update sent")
    comment = stored(sandbox_state, cloud_ref.key)["comments"][-1]
    assert comment["format"] == "adf" and adf_errors(comment["body"]) == []

    sandbox_state.jira_state.configure(deployment_type="Server")
    server_ref = create(jira_server)
    jira_server.add_comment(server_ref.key, body_adf=adf("ignored"), body_wiki="*Customer* update sent")
    assert stored(sandbox_state, server_ref.key)["comments"][-1]["body"] == "*Customer* update sent"


def test_status_follows_transitions(jira, sandbox_state):
    ref = create(jira)
    status = jira.get_status(ref.key)
    assert (status.name, status.category) == ("To Do", "new") and status.updated is not None
    sandbox_state.jira_state.set_status(ref.key, "Done")
    assert jira.get_status(ref.key).category == "done"


def test_link_issues(jira, sandbox_state):
    original, recurrence = create(jira), create(jira, idempotency_label="escalate-zd-123")
    jira.link_issues(recurrence.key, original.key, "Relates")
    assert sandbox_state.jira_state.issue_links == [
        {
            "id": sandbox_state.jira_state.issue_links[0]["id"],
            "type": "Relates",
            "inward": "ENG-2",
            "outward": "ENG-1",
        }
    ]


def test_errors_from_the_live_sandbox(jira, make_jira, sandbox_state):
    with pytest.raises(errors.NotFoundError):
        jira.get_status("ENG-404")
    with pytest.raises(errors.PermanentError) as caught:
        create(jira, project="NOPE")
    assert "project" in caught.value.message
    with pytest.raises(errors.AuthError):
        make_jira(api_token="wrong").check_auth()


def test_injected_429_on_create_is_typed_and_sent_once(jira, sandbox_state):
    jira.check_auth()  # construct the client first: the fault is for the create
    sandbox_state.jira_state.faults.rate_limit(retry_after=11, prefix="/rest/api/3/issue")
    with pytest.raises(errors.RateLimited) as caught:
        create(jira)
    assert caught.value.retry_after == 11
    assert len(sandbox_state.jira_state.requests.matching("POST", "/rest/api/3/issue")) == 1
    assert sandbox_state.jira_state.issues == {}


def test_config_from_env():
    env = {
        "JIRA_URL": "https://acme.atlassian.net/",
        "JIRA_EMAIL": "bot@acme.test",
        "JIRA_API_TOKEN": "s3cr3t",
    }
    config = JiraConfig.from_env(env)
    assert config.server_url == "https://acme.atlassian.net" and config.deployment is None
    assert "s3cr3t" not in repr(config)
    assert JiraConfig.from_env({**env, "JIRA_DEPLOYMENT": "datacenter"}).deployment is Deployment.SERVER
    with pytest.raises(ConfigError, match="JIRA_DEPLOYMENT"):
        parse_deployment("mainframe")
    with pytest.raises(ConfigError, match="JIRA_URL"):
        JiraConfig.from_env({"JIRA_API_TOKEN": "x"})


def test_jira_time_formats():
    assert parse_jira_time("2026-11-20T15:00:00.000+0000").utcoffset().total_seconds() == 0
    assert parse_jira_time("2026-11-20T15:00:00+01:00").hour == 15
    assert parse_jira_time("yesterday") is None
