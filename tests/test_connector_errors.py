"""Error paths of both connectors, with `responses` standing in for Zendesk and Jira: every failure comes
out typed, a 429 carries its Retry-After, nothing sleeps, nothing is sent twice."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
import responses

from connector import errors
from connector.jira_client import Deployment, JiraConfig
from connector.jira_connector import JiraConnector
from connector.zendesk_client import ZendeskConfig
from connector.zendesk_connector import ZendeskConnector

ZD = "https://acme.zendesk.com"
JIRA = "https://acme.atlassian.net"
TICKET_URL = f"{ZD}/api/v2/tickets/42.json"
ISSUE_URL = f"{JIRA}/rest/api/2/issue/ENG-1"
SECRET = "s3cret-token-value"

ADF = {
    "type": "doc",
    "version": 1,
    "content": [{"type": "paragraph", "content": [{"type": "text", "text": "x"}]}],
}


@pytest.fixture(autouse=True)
def no_sleeping(monkeypatch):
    """Any sleep inside a client fails the test: the worker, not the client, waits out a 429."""

    def forbidden(seconds):
        raise AssertionError(f"a client tried to sleep {seconds}s")

    monkeypatch.setattr(time, "sleep", forbidden)
    monkeypatch.setattr("zenpy.lib.api.sleep", forbidden)


@pytest.fixture
def zendesk() -> ZendeskConnector:
    return ZendeskConnector(ZendeskConfig(url=ZD, email="bot@acme.test", api_token=SECRET, timeout=7))


@pytest.fixture
def jira() -> JiraConnector:
    config = JiraConfig(
        url=JIRA, email="bot@acme.test", api_token=SECRET, deployment=Deployment.CLOUD, timeout=7
    )
    return JiraConnector(config)


# ----- translation rules -----


@pytest.mark.parametrize(
    ("value", "expected"),
    [("120", 120.0), ("0", 0.0), ("1.5", 1.5), ("-3", 0.0), ("soon", None), ("", None), (None, None)],
)
def test_retry_after_seconds(value, expected):
    assert errors.parse_retry_after(value) == expected


def test_retry_after_http_date():
    now = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert errors.parse_retry_after(header, now=now) == pytest.approx(90)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, errors.PermanentError),
        (401, errors.AuthError),
        (403, errors.AuthError),
        (404, errors.NotFoundError),
        (409, errors.TransientError),
        (422, errors.PermanentError),
        (429, errors.RateLimited),
        (500, errors.TransientError),
        (503, errors.TransientError),
    ],
)
def test_status_maps_to_type(status, kind):
    error = errors.from_status("zendesk", status, method="GET", path="/api/v2/tickets/1.json")
    assert type(error) is kind
    assert error.retryable is (kind in (errors.RateLimited, errors.TransientError))


def test_rate_limited_without_retry_after_gets_a_default():
    error = errors.from_status("jira", 429, method="GET", path="/x")
    assert isinstance(error, errors.RateLimited)
    assert error.retry_after == errors.DEFAULT_RETRY_AFTER


def test_errors_survive_pickling():
    import pickle

    error = errors.RateLimited("jira", "GET /x answered 429", retry_after=12)
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.service, copy.retry_after) == (errors.RateLimited, "jira", 12)


# ----- Zendesk through zenpy -----


@responses.activate
def test_zendesk_429_is_rate_limited_with_retry_after_and_not_retried(zendesk):
    responses.get(TICKET_URL, status=429, headers={"Retry-After": "120"}, json={"error": "TooManyRequests"})
    with pytest.raises(errors.RateLimited) as caught:
        zendesk.get_ticket(42)
    assert caught.value.retry_after == 120
    assert caught.value.service == "zendesk"
    assert len(responses.calls) == 1


@responses.activate
def test_zendesk_429_on_a_write_is_sent_once(zendesk):
    responses.put(TICKET_URL, status=429, headers={"Retry-After": "30"})
    with pytest.raises(errors.RateLimited):
        zendesk.add_internal_note(42, "<p>note</p>")
    assert len(responses.calls) == 1


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (401, {"error": "Couldn't authenticate you"}, errors.AuthError),
        (403, {"error": "Forbidden"}, errors.AuthError),
        (404, {"error": "RecordNotFound", "description": "Not found"}, errors.NotFoundError),
        (409, {"error": "Conflict"}, errors.TransientError),
        (422, {"error": "RecordInvalid", "description": "Record validation errors"}, errors.PermanentError),
        (500, {"error": "InternalError"}, errors.TransientError),
        (503, None, errors.TransientError),
    ],
)
@responses.activate
def test_zendesk_statuses_come_back_typed(zendesk, status, body, kind):
    responses.get(TICKET_URL, status=status, json=body)
    with pytest.raises(kind) as caught:
        zendesk.get_ticket(42)
    assert caught.value.status == status
    assert SECRET not in str(caught.value)
    assert len(responses.calls) == 1


@pytest.mark.parametrize(
    ("exception", "kind"),
    [
        (requests.exceptions.ReadTimeout("read timed out"), errors.TransientError),
        (requests.exceptions.ConnectTimeout("connect timed out"), errors.TransientError),
        (requests.exceptions.ConnectionError("refused"), errors.TransientError),
    ],
)
@responses.activate
def test_zendesk_transport_failures_are_transient(zendesk, exception, kind):
    responses.get(TICKET_URL, body=exception)
    with pytest.raises(kind, match="zendesk"):
        zendesk.get_ticket(42)
    assert len(responses.calls) == 1


@responses.activate
def test_zendesk_calls_carry_the_timeout(zendesk):
    responses.get(TICKET_URL, json={"ticket": {"id": 42, "subject": "s", "tags": []}})
    assert zendesk.get_ticket(42)["id"] == 42
    assert responses.calls[0].request.req_kwargs["timeout"] == 7


def test_zendesk_session_never_retries(zendesk):
    session = zendesk._client.tickets.session
    for prefix in ("http://", "https://"):
        assert session.get_adapter(prefix).max_retries.total == 0


@responses.activate
def test_zendesk_search_rate_limit_while_paging_the_history(zendesk):
    """A 429 in the middle of the bundle (the history search) still comes out typed."""
    responses.get(TICKET_URL, json={"ticket": {"id": 42, "requester_id": 7, "organization_id": None}})
    responses.get(f"{ZD}/api/v2/tickets/42/comments.json", json={"comments": [], "meta": {"has_more": False}})
    responses.get(f"{ZD}/api/v2/tickets/42/audits.json", json={"audits": [], "meta": {"has_more": False}})
    responses.get(f"{ZD}/api/v2/search/export.json", status=429, headers={"Retry-After": "45"})
    with pytest.raises(errors.RateLimited) as caught:
        zendesk.fetch_bundle(42)
    assert caught.value.retry_after == 45


AUDITS_URL = f"{ZD}/api/v2/tickets/42/audits.json"
COMMENTS_URL = f"{ZD}/api/v2/tickets/42/comments.json"


def _paths() -> list[str]:
    return [requests.utils.urlparse(c.request.url).path for c in responses.calls]


@responses.activate
def test_zendesk_bundle_takes_its_comments_from_the_audits(zendesk):
    """Audits in the documented shape: the comments come from their Comment events, no comments call."""
    responses.get(TICKET_URL, json={"ticket": {"id": 42, "requester_id": 7, "organization_id": None}})
    event = {"id": 2127301148, "type": "Comment", "body": "A private note",
             "html_body": "<p>A private note</p>", "public": False, "attachments": []}  # fmt: skip
    audit = {"id": 2127301143, "ticket_id": 42, "created_at": "2011-09-25T22:35:44Z", "author_id": 7,
             "via": {"channel": "web"}, "metadata": {"custom": {}, "system": {}},
             "events": [event]}  # fmt: skip
    responses.get(AUDITS_URL, json={"audits": [audit], "meta": {"has_more": False}})
    responses.get(f"{ZD}/api/v2/users/show_many.json", json={"users": [{"id": 7, "role": "end-user"}]})
    bundle = zendesk.fetch_bundle(42, history_days=0)
    [comment] = bundle["comments"]
    assert (comment["id"], comment["author_id"], comment["public"]) == (2127301148, 7, False)
    assert (comment["created_at"], comment["audit_id"]) == ("2011-09-25T22:35:44Z", 2127301143)
    assert _paths() == [
        "/api/v2/tickets/42.json",
        "/api/v2/tickets/42/audits.json",
        "/api/v2/users/show_many.json",
    ]


@responses.activate
def test_zendesk_rate_limit_on_the_audits_comes_out_typed(zendesk):
    responses.get(TICKET_URL, json={"ticket": {"id": 42, "requester_id": 7, "organization_id": None}})
    responses.get(AUDITS_URL, status=429, headers={"Retry-After": "12"})
    with pytest.raises(errors.RateLimited) as caught:
        zendesk.fetch_bundle(42, history_days=0)
    assert caught.value.retry_after == 12
    assert _paths() == ["/api/v2/tickets/42.json", "/api/v2/tickets/42/audits.json"]  # not the comments


@responses.activate
def test_zendesk_outage_on_the_audits_is_transient(zendesk):
    responses.get(TICKET_URL, json={"ticket": {"id": 42, "requester_id": 7, "organization_id": None}})
    responses.get(AUDITS_URL, status=503)
    with pytest.raises(errors.TransientError):
        zendesk.fetch_bundle(42, history_days=0)
    assert len(responses.calls) == 2


@responses.activate
def test_zendesk_audits_refused_leave_the_comments_to_their_endpoint(zendesk):
    responses.get(TICKET_URL, json={"ticket": {"id": 42, "requester_id": None, "organization_id": None}})
    responses.get(AUDITS_URL, status=403, json={"error": "Forbidden"})
    comment = {"id": 9, "type": "Comment", "author_id": None, "body": "Hi", "public": True}
    responses.get(COMMENTS_URL, json={"comments": [comment], "meta": {"has_more": False}})
    bundle = zendesk.fetch_bundle(42, history_days=0)
    assert "audits" not in bundle and [c["body"] for c in bundle["comments"]] == ["Hi"]
    assert _paths()[-1] == "/api/v2/tickets/42/comments.json"


@responses.activate
def test_zendesk_ticket_read_answered_without_json_is_a_permanent_error(zendesk):
    """A proxy's HTML page with a 200: the ticket cannot be judged from it, and retrying gives the same."""
    responses.get(TICKET_URL, body="<html>Service</html>", content_type="text/html")
    with pytest.raises(errors.PermanentError, match="without a JSON object"):
        zendesk.get_ticket(42)
    responses.replace(responses.GET, TICKET_URL, json=["not", "an", "object"])
    with pytest.raises(errors.PermanentError, match=r"/api/v2/tickets/42\.json answered 200"):
        zendesk.get_ticket(42)


@responses.activate
def test_zendesk_audits_answered_without_json_leave_the_comments_to_their_endpoint(zendesk):
    responses.get(TICKET_URL, json={"ticket": {"id": 42, "requester_id": None, "organization_id": None}})
    responses.get(AUDITS_URL, body="truncated {", content_type="application/json")
    responses.get(COMMENTS_URL, json={"comments": [{"id": 9, "body": "Hi"}], "meta": {"has_more": False}})
    bundle = zendesk.fetch_bundle(42, history_days=0)
    assert "audits" not in bundle and [c["body"] for c in bundle["comments"]] == ["Hi"]


@responses.activate
def test_zendesk_audits_are_read_page_by_page_up_to_the_limit(zendesk):
    """Cursor paging as Zendesk documents it: ``links.next`` while ``meta.has_more``, no page past the
    limit, the ticket's JSON kept as sent (no keys added)."""
    from connector import zendesk_bundle

    def page(first: int, more: bool) -> dict:
        audits = [{"id": i, "events": []} for i in range(first, first + 100)]
        return {"audits": audits, "meta": {"has_more": more},
                "links": {"next": f"{AUDITS_URL}?page[after]={first + 99}" if more else None}}  # fmt: skip

    responses.get(AUDITS_URL, json=page(0, True), match=[responses.matchers.query_param_matcher(
        {"page[size]": "100"})])  # fmt: skip
    responses.get(AUDITS_URL, json=page(100, True), match=[responses.matchers.query_param_matcher(
        {"page[after]": "99"})])  # fmt: skip
    audits = zendesk_bundle.list_audits(zendesk._client, 42, limit=150)
    assert [a["id"] for a in audits] == list(range(150))
    assert len(responses.calls) == 2
    assert audits[0] == {"id": 0, "events": []}


# ----- Jira through the jira client -----


@responses.activate
def test_jira_429_is_rate_limited_without_sleep_or_retry(jira):
    responses.get(
        ISSUE_URL, status=429, headers={"Retry-After": "17"}, json={"errorMessages": ["Rate limited"]}
    )
    with pytest.raises(errors.RateLimited) as caught:
        jira.get_status("ENG-1")
    assert caught.value.retry_after == 17
    assert caught.value.service == "jira"
    assert len(responses.calls) == 1


@responses.activate
def test_jira_create_is_posted_once_on_429(jira):
    responses.post(f"{JIRA}/rest/api/3/issue", status=429, headers={"Retry-After": "5"})
    with pytest.raises(errors.RateLimited):
        jira.create_issue(
            project="ENG",
            issue_type="Bug",
            summary="s",
            description_adf=ADF,
            description_wiki="x",
            labels=[],
            security_level=None,
            idempotency_label="escalate-zd-42",
        )
    assert len(responses.calls) == 1


@responses.activate
def test_jira_create_is_posted_once_on_connection_error(jira):
    """The jira client retries ConnectionError for every method by default: a create could land twice."""
    responses.post(f"{JIRA}/rest/api/3/issue", body=requests.exceptions.ConnectionError("reset by peer"))
    with pytest.raises(errors.TransientError):
        jira.create_issue(
            project="ENG",
            issue_type="Bug",
            summary="s",
            description_adf=ADF,
            description_wiki="x",
            labels=[],
            security_level=None,
            idempotency_label="escalate-zd-42",
        )
    assert len(responses.calls) == 1


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, errors.PermanentError),
        (401, errors.AuthError),
        (403, errors.AuthError),
        (404, errors.NotFoundError),
        (500, errors.TransientError),
        (502, errors.TransientError),
    ],
)
@responses.activate
def test_jira_statuses_come_back_typed(jira, status, kind):
    responses.get(ISSUE_URL, status=status, json={"errorMessages": ["nope"], "errors": {}})
    with pytest.raises(kind) as caught:
        jira.get_status("ENG-1")
    assert caught.value.status == status
    assert "nope" in caught.value.message
    assert SECRET not in str(caught.value)
    assert len(responses.calls) == 1


@responses.activate
def test_jira_503_with_retry_after_is_transient_and_keeps_the_hint(jira):
    responses.get(ISSUE_URL, status=503, headers={"Retry-After": "9"})
    with pytest.raises(errors.TransientError) as caught:
        jira.get_status("ENG-1")
    assert caught.value.retry_after == 9
    assert len(responses.calls) == 1


@pytest.mark.parametrize(
    "exception",
    [requests.exceptions.ReadTimeout("slow"), requests.exceptions.ConnectionError("refused")],
)
@responses.activate
def test_jira_transport_failures_are_transient(jira, exception):
    responses.get(ISSUE_URL, body=exception)
    with pytest.raises(errors.TransientError, match="jira"):
        jira.get_status("ENG-1")
    assert len(responses.calls) == 1


@responses.activate
def test_jira_calls_carry_the_timeout(jira):
    responses.get(ISSUE_URL, json={"id": "1", "key": "ENG-1", "fields": {"status": {"name": "Done"}}})
    assert jira.get_status("ENG-1").name == "Done"
    assert responses.calls[0].request.req_kwargs["timeout"] == 7
    assert jira.client._session.max_retries == 0


@responses.activate
def test_jira_server_info_failure_at_construction_is_typed():
    """With the deployment left to detection, the client's serverInfo call is the first to fail."""
    responses.get(f"{JIRA}/rest/api/2/serverInfo", status=503, headers={"Retry-After": "4"})
    connector = JiraConnector(JiraConfig(url=JIRA, email="bot@acme.test", api_token=SECRET))
    with pytest.raises(errors.TransientError) as caught:
        connector.get_status("ENG-1")
    assert caught.value.retry_after == 4
    assert len(responses.calls) == 1


def test_sessions_skip_the_per_call_environment_scan_only_when_no_proxy_is_configured():
    import requests

    from connector.http_client import without_environment_lookups

    plain = without_environment_lookups(requests.Session(), {"PATH": "/bin", "REQUESTS_CA_BUNDLE": "/ca.pem"})
    assert plain.trust_env is False
    assert plain.verify == "/ca.pem"  # what requests would have read per call, read once

    proxied = without_environment_lookups(requests.Session(), {"HTTPS_PROXY": "http://proxy:3128"})
    assert proxied.trust_env is True  # NO_PROXY and friends keep working through requests itself
    assert without_environment_lookups(requests.Session(), {"no_proxy": "internal"}).trust_env is True
