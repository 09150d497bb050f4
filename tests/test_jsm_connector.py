"""The JSM connector over the sandbox with the real ``jira`` client: the case it assembles, the judgement
that follows, and the actions (internal comment, engineering issue + issue link, labels, L2)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import requests

from connector.errors import AuthError, ConfigError, NotFoundError, RateLimited
from connector.jira_client import JiraConfig
from connector.jira_connector import JiraConnector
from connector.jsm_config import JsmConfig
from connector.jsm_connector import JsmConnector, issue_label
from connector.sandbox.jsm_state import (
    CUSTOMER_TOKEN,
    ENVIRONMENT,
    ORGANIZATIONS_FIELD,
    REQUESTS,
    JsmState,
    jsm_state_for,
)
from rules.adapters.jsm import case_from_jsm_bundle
from rules.evaluate import evaluate
from rules.facts import Facts, SlaPosition


@pytest.fixture
def desk(sandbox_state) -> JsmState:
    """The sandbox's JSM desk, seeded (it otherwise appears on first JSM use)."""
    state = jsm_state_for(sandbox_state.jira_state)
    state.ensure()
    return state


@pytest.fixture
def make_jsm(sandbox_state, desk) -> Callable[..., JsmConnector]:
    """A JSM connector on the sandbox desk; keyword arguments override its ``JsmConfig``."""
    env = sandbox_state.environment()

    def make(**overrides) -> JsmConnector:
        jira = JiraConnector(
            JiraConfig(
                url=env["JIRA_URL"], email=env["JIRA_EMAIL"], api_token=env["JIRA_API_TOKEN"], timeout=5.0
            )
        )
        settings = {"project_key": "DESK", "organization_field": ORGANIZATIONS_FIELD, **overrides}
        return JsmConnector(JsmConfig(**settings), jira)

    return make


@pytest.fixture
def jsm(make_jsm) -> JsmConnector:
    return make_jsm()


def judge(bundle, matcher):
    case = case_from_jsm_bundle(bundle)
    return case, evaluate(case, matcher=matcher).to_dict()


# --- the case ------------------------------------------------------------------------------------------
def test_a_request_with_a_breached_sla_cycle_is_judged_breached(jsm, desk, lexical_matcher) -> None:
    bundle = jsm.fetch_case(REQUESTS["stalled"])

    [cycle] = bundle["sla"]
    assert cycle["ongoingCycle"]["breached"] is True
    _, decision = judge(bundle, lexical_matcher)
    assert decision["impact"]["contractual"]["sla_position"] == "breached"
    assert "sla_breached" in [t["id"] for t in decision["triggers"]]
    assert decision["escalate"] and decision["destination"] == "support_l2"


def test_an_sla_about_to_breach_is_at_risk_and_a_paused_one_does_not_count(
    jsm, desk, lexical_matcher
) -> None:
    from rules.evaluate import default_ruleset

    key = REQUESTS["feature_request"]  # its only SLA is paused
    case = case_from_jsm_bundle(jsm.fetch_case(key))
    assert Facts(case, default_ruleset(), lexical_matcher).sla_position is SlaPosition.COMPLIANT
    desk.clock = desk.now() + timedelta(hours=29)  # the sandbox judges its cycles at this moment
    record = desk.request(key)
    record["sla"][0]["ongoing"]["paused"] = False
    bundle = jsm.fetch_case(key, now=desk.clock)
    case = case_from_jsm_bundle(bundle)
    assert Facts(case, default_ruleset(), lexical_matcher).sla_position is SlaPosition.AT_RISK


def test_an_outage_request_escalates_to_engineering(jsm, lexical_matcher) -> None:
    bundle = jsm.fetch_case(REQUESTS["outage"])
    case, decision = judge(bundle, lexical_matcher)

    assert (case.ticket.type, case.ticket.priority, case.ticket.status) == ("incident", "urgent", "open")
    assert case.organization is not None and case.organization.name == "Globex"
    assert case.organization.fields["arr"] == 480000 and "strategic" in case.organization.tags
    assert decision["escalate"] is True
    assert decision["destination"] == "engineering"
    assert decision["severity"] == "critical"
    assert "outage" in [t["id"] for t in decision["triggers"]]
    assert "severity_rising" in [t["id"] for t in decision["triggers"]]  # Medium → Highest in the changelog
    assert decision["package"]["references"]["ticket"]["url"].endswith("/browse/DESK-1")


def test_the_case_tells_public_replies_from_internal_comments(jsm) -> None:
    case = case_from_jsm_bundle(jsm.fetch_case(REQUESTS["outage"]))
    internal = [c for c in case.comments if not c.public]
    public = [c for c in case.comments if c.public]
    assert internal and public
    assert all(case.is_staff_comment(c) for c in internal)
    agent_replies = [c for c in public if case.is_staff_comment(c)]
    customer_replies = [c for c in public if not case.is_staff_comment(c)]
    assert agent_replies and customer_replies
    assert all(case.author(c).name == "Priya Patel" for c in agent_replies)
    assert all(c.author_id == case.ticket.requester_id for c in customer_replies)


def test_recent_requests_form_the_history_window(jsm, desk) -> None:
    old = desk.add_request(request_type_id="11", reporter="qm:sandbox:customer-1006",
                           summary="Ancient problem", created=desk.now() - timedelta(days=40))  # fmt: skip
    bundle = jsm.fetch_case(REQUESTS["csv_export_1"])
    keys = [h["key"] for h in bundle["history"]]
    assert REQUESTS["csv_export_1"] not in keys and old not in keys
    assert REQUESTS["csv_export_2"] in keys and REQUESTS["csv_export_fixed"] in keys
    case = case_from_jsm_bundle(bundle)
    by_key = {t.id: t for t in case.history}
    assert by_key[REQUESTS["csv_export_2"]].organization_id is not None  # the reporter's organization
    assert case_from_jsm_bundle(jsm.fetch_case(REQUESTS["csv_export_1"], history_days=0)).history == ()


def test_server_deployment_reads_the_same_case(sandbox_state, make_jsm, desk, lexical_matcher) -> None:
    sandbox_state.jira_state.configure(deployment_type="Server")
    jsm = make_jsm()
    bundle = jsm.fetch_case(REQUESTS["csv_export_2"])
    assert bundle["history"] and "changelog" in bundle  # v2 search; changelog by ?expand=changelog
    search = sandbox_state.jira_state.requests.matching("GET", "/rest/api/2/search")
    assert search and not sandbox_state.jira_state.requests.matching("GET", "/rest/api/2/search/jql")
    _, decision = judge(bundle, lexical_matcher)
    assert decision["destination"] == "engineering"


def test_a_missing_section_is_unknown_but_a_rate_limit_is_raised(jsm, sandbox_state) -> None:
    faults = sandbox_state.jira_state.faults
    faults.add(prefix=f"/rest/servicedeskapi/request/{REQUESTS['outage']}/sla", status=403)
    bundle = jsm.fetch_case(REQUESTS["outage"])
    assert "sla" not in bundle and bundle["comments"]
    assert case_from_jsm_bundle(bundle).ticket.sla_metrics == ()

    faults.rate_limit(prefix="/rest/servicedeskapi/request", retry_after=7)
    with pytest.raises(RateLimited) as raised:
        jsm.fetch_case(REQUESTS["outage"])
    assert raised.value.retry_after == 7


def test_unknown_requests_and_bad_credentials_are_typed_errors(jsm, make_jsm, sandbox_state) -> None:
    with pytest.raises(NotFoundError):
        jsm.fetch_case("DESK-999")
    env = sandbox_state.environment()
    wrong = JsmConnector(
        JsmConfig(project_key="DESK"),
        JiraConnector(
            JiraConfig(url=env["JIRA_URL"], email=env["JIRA_EMAIL"], api_token="nope", timeout=5.0)
        ),
    )
    with pytest.raises(AuthError):
        wrong.get_request(REQUESTS["outage"])
    assert jsm.check_auth()["projectKey"] == "DESK"


# --- actions -------------------------------------------------------------------------------------------
def test_the_suggestion_is_an_internal_comment_only_agents_see(jsm, desk, sandbox_state) -> None:
    key = REQUESTS["outage"]
    comment_id = jsm.add_internal_comment(
        key, "h3. Escalation suggested\n* Escalate to engineering (critical)"
    )

    [sent] = sandbox_state.jira_state.requests.matching("POST", f"/rest/servicedeskapi/request/{key}/comment")
    assert sent["json"]["public"] is False
    agent_view = {c["id"]: c for c in jsm.comments(key)}
    assert agent_view[comment_id]["public"] is False
    assert agent_view[comment_id]["author"]["displayName"] == "Escalate Bot"
    assert comment_id not in {c["id"] for c in jsm.comments(key, internal=False)}

    reporter = desk.user(desk.request(key)["reporter"])
    url = f"{sandbox_state.jira_url}/rest/servicedeskapi/request/{key}/comment"
    as_customer = requests.get(url, auth=(reporter["emailAddress"], CUSTOMER_TOKEN), timeout=5)
    assert as_customer.status_code == 200
    seen = {c["id"] for c in as_customer.json()["values"]}
    assert seen and comment_id not in seen
    one = requests.get(f"{url}/{comment_id}", auth=(reporter["emailAddress"], CUSTOMER_TOKEN), timeout=5)
    assert one.status_code == 404
    with pytest.raises(ValueError):
        jsm.add_internal_comment(key, "  ")


def test_engineering_issue_created_and_linked_with_the_configured_type(make_jsm, sandbox_state) -> None:
    jsm = make_jsm(link_type="Blocks")
    key = REQUESTS["outage"]
    issue = jsm.create_issue(
        project="ENG",
        issue_type="Bug",
        summary="Production is down for Globex",
        description_adf={"type": "doc", "version": 1, "content": []},
        description_wiki="Production is down.",
        labels=[f"jsm-{key}"],
        security_level=None,
        idempotency_label=f"escalate-jsm-{key}-engineering-1",
    )
    assert issue.key.startswith("ENG-")

    assert jsm.record_issue_link(key, issue.key, issue.url) is True
    state = sandbox_state.jira_state
    [link] = [x for x in state.issue_links if key in (x["inward"], x["outward"])]
    assert (link["type"], link["inward"], link["outward"]) == ("Blocks", issue.key, key)
    assert not state.find(issue.key)["remote_links"]  # an issue link, not a remote link
    assert {"jira_escalated", issue_label(issue.key)} <= set(jsm.labels(key))
    assert [x["key"] for x in jsm.linked_issues(key)] == [issue.key]
    notes = [c for c in jsm.comments(key) if issue.key in c["body"]]
    assert len(notes) == 1 and notes[0]["public"] is False

    # A retried job repeats nothing.
    assert jsm.record_issue_link(key, issue.key, issue.url) is False
    assert jsm.link_issue(key, issue.key) is False
    assert len([x for x in state.issue_links if key in (x["inward"], x["outward"])]) == 1
    assert len([c for c in jsm.comments(key) if issue.key in c["body"]]) == 1


def test_labels_are_added_and_removed_without_touching_others(jsm) -> None:
    key = REQUESTS["csv_export_fixed"]  # labelled "fixed"
    jsm.add_labels(key, ["escalate_suggested", "escalate to engineering"])
    assert set(jsm.labels(key)) == {"fixed", "escalate_suggested", "escalate-to-engineering"}
    jsm.remove_labels(key, ["escalate_suggested"])
    assert set(jsm.labels(key)) == {"fixed", "escalate-to-engineering"}


def test_l2_sets_the_configured_queue_field(make_jsm, desk) -> None:
    jsm = make_jsm(l2_field="customfield_10070", l2_value={"value": "Tier 2"})
    key = REQUESTS["stalled"]
    jsm.assign_l2(key)
    assert desk.custom_field(key, "customfield_10070") == {"value": "Tier 2"}
    request = jsm.get_request(key)
    assert {"fieldId": "customfield_10070", "label": "customfield_10070", "value": {"value": "Tier 2"}} in (
        request["requestFieldValues"]
    )
    with pytest.raises(ConfigError):
        make_jsm().assign_l2(key)


# --- configuration --------------------------------------------------------------------------------------
def test_configuration_from_the_environment(sandbox_state) -> None:
    env = {
        **sandbox_state.environment(),
        **ENVIRONMENT,
        "JSM_ARR_FIELD": "customfield_10050",
        "JSM_LINK_TYPE": "Blocks",
        "JSM_L2_FIELD": "customfield_10070",
        "JSM_L2_VALUE": '{"value": "Tier 2"}',
        "JSM_PRIORITY_MAP": "P1=urgent; P2=high",
        "JSM_TYPE_MAP": "Get IT help=question",
    }
    jsm = JsmConnector.from_env(env)
    config = jsm.config
    assert (config.project_key, config.service_desk_id, config.org_property_key) == ("DESK", "1", "escalate")
    assert config.l2_value == {"value": "Tier 2"} and config.link_type == "Blocks"
    mapping = config.mapping()
    assert mapping.priority("P1") == "urgent" and mapping.ticket_type("Get IT help") == "question"
    assert mapping.request_org_fields == {"customfield_10050": "arr"}
    assert jsm.fetch_case(REQUESTS["howto"])["mapping"] == mapping.to_dict()

    defaults = JsmConfig.from_env({"JSM_PROJECT_KEY": "HELP"})
    assert (defaults.link_type, defaults.org_property_key, defaults.l2_field) == ("Relates", "escalate", None)
    assert JsmConfig.from_env({"JSM_PROJECT_KEY": "HELP", "JSM_L2_FIELD": "assignee",
                               "JSM_L2_VALUE": "support-l2"}).l2_value == "support-l2"  # fmt: skip
    for bad in (
        {},
        {"JSM_PROJECT_KEY": "not a key"},
        {"JSM_PROJECT_KEY": "HELP", "JSM_L2_FIELD": "customfield_1"},
        {"JSM_PROJECT_KEY": "HELP", "JSM_PRIORITY_MAP": "P1=critical"},
        {"JSM_PROJECT_KEY": "HELP", "JSM_ARR_FIELD": "ARR field"},
    ):
        with pytest.raises(ConfigError):
            JsmConfig.from_env(bad)


def test_the_sandbox_desk_appears_on_first_use_and_after_a_reset(sandbox_state, jsm, desk) -> None:
    key = desk.add_request(request_type_id="12", reporter="qm:sandbox:customer-1004", summary="Extra")
    desk.clock = datetime(2026, 1, 1, tzinfo=UTC)
    requests.post(f"{sandbox_state.jira_url}/_sandbox/reset", timeout=5)
    jira = sandbox_state.jira_state
    assert "DESK" not in jira.projects and not jira.issues  # a Jira-only run sees only its own issues
    assert jsm.get_request(REQUESTS["outage"])["issueKey"] == "DESK-1"  # first JSM use seeds it again
    assert key not in desk.requests and desk.clock is None
    assert jira.search('project = "DESK"')


def test_organization_lookups_are_reused_across_cases(make_jsm, sandbox_state) -> None:
    log = sandbox_state.jira_state.requests
    jsm = make_jsm()
    jsm.fetch_case(REQUESTS["csv_export_1"])
    assert log.matching("GET", "/rest/servicedeskapi/organization/")
    log.clear()
    jsm.fetch_case(REQUESTS["csv_export_2"])
    directory = [e["path"] for e in log.entries() if "/organization" in e["path"]]
    assert directory == []  # memberships and properties came from the connector's directory cache
    log.clear()
    make_jsm(directory_ttl=0).fetch_case(REQUESTS["csv_export_2"])
    assert log.matching("GET", "/rest/servicedeskapi/organization/")
