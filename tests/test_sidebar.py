"""The sidebar page and its API, against the SidebarBackend protocol (no browser, no sandbox)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from html import unescape

import jwt
import pytest

from connector.http import sidebar
from connector.http.sidebar_auth import (
    SESSION_MAX_AGE_S,
    Agent,
    SidebarAuthConfig,
    Unauthorized,
    agent_id_from_sub,
    issue_session,
    verify_session,
)
from connector.http.sidebar_backend import SidebarBackend
from connector.http.sidebar_view import build_panel, impact_rows, relative

# The helpers module is also this file's plugin: pytest loads plugins through its assertion rewriter
# and warns when one was imported before it could; marking it first keeps the import below plain.
pytest.register_assert_rewrite("tests.conftest_sidebar")

from tests.conftest_sidebar import (  # noqa: E402
    AGENT_ID,
    SIDEBAR_SECRET,
    XSS_SUBJECT,
    ZENDESK_URL,
    MemoryBackend,
    auth_config,
    bearer,
    example_decision,
    first_load,
    make_sidebar_app,
    session_token,
    sign_zendesk,
)


@pytest.fixture
def client(sidebar_app):
    return sidebar_app.test_client()


def ticket_token(client, keys, ticket_id="4101") -> str:
    response = first_load(client, keys, ticket_id)
    assert response.status_code == 200
    return session_token(response.get_data(as_text=True))


# -- the first load: Zendesk's signed URL ---------------------------------------------------------


def test_a_signed_first_load_shows_the_assessment(client, zendesk_keys):
    response = first_load(client, zendesk_keys, "4101")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'data-test="severity"' in html and "Critical" in html
    assert "Engineering" in html and "Leadership" in html  # destination, also notify
    assert html.count('data-test="impact-row"') == 6
    assert html.count('data-test="trigger"') == 3
    assert "Production is down" in html and 'data-test="package-preview"' in html
    assert 'data-test="create"' in html and 'data-test="dismiss-box"' in html


def test_the_first_load_without_a_ticket_waits_for_the_zaf_sdk(client, zendesk_keys):
    response = first_load(client, zendesk_keys)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and 'data-test="loading"' in html
    session = verify_session(session_token(html), auth_config(zendesk_keys))
    assert session.ticket_id is None and session.agent == Agent(AGENT_ID, "acme.zendesk.com")


@pytest.mark.parametrize(
    "change",
    [
        {"aud": "https://acme.zendesk.com/api/v2/apps/installations/999.json"},
        {"iss": "evil.zendesk.com"},
        {"lifetime_s": -120},  # expired beyond the leeway
        {"issued_at": int(time.time()) + 3600},  # not yet valid (nbf)
        {"sub": ""},
    ],
    ids=["audience", "issuer", "expired", "not-yet-valid", "no-subject"],
)
def test_a_first_load_with_wrong_claims_is_refused(client, zendesk_keys, change):
    response = client.post("/sidebar?ticket_id=4101", data={"token": sign_zendesk(zendesk_keys, **change)})
    assert response.status_code == 401
    assert "data-token" not in response.get_data(as_text=True)


def _hmac_jwt(claims: dict, secret: bytes) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = (
        b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    )
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(signature)


def test_a_first_load_signed_with_another_key_is_refused(client, other_keys):
    assert first_load(client, other_keys, "4101").status_code == 401


def test_unsigned_and_hs256_tokens_are_refused(client, zendesk_keys):
    claims = jwt.decode(sign_zendesk(zendesk_keys), options={"verify_signature": False})
    unsigned = jwt.encode(claims, None, algorithm="none")
    # The classic confusion: HMAC with the public key as the secret (PyJWT will not make one; we do).
    confused = _hmac_jwt(claims, zendesk_keys.public_pem.encode())
    for token in (unsigned, confused, "", "not.a.jwt"):
        assert client.post("/sidebar", data={"token": token}).status_code == 401
    assert client.get("/sidebar?ticket_id=4101").status_code == 401


def test_without_configuration_everything_is_refused(memory_backend, zendesk_keys):
    for missing in ("public_key", "session_secret", "audiences", "issuers"):
        empty = () if missing in ("audiences", "issuers") else None
        app = make_sidebar_app(memory_backend, auth_config(zendesk_keys, **{missing: empty}))
        assert first_load(app.test_client(), zendesk_keys, "4101").status_code == 401, missing


def test_a_short_session_secret_is_refused(memory_backend, zendesk_keys):
    app = make_sidebar_app(memory_backend, auth_config(zendesk_keys, session_secret="short"))
    assert first_load(app.test_client(), zendesk_keys, "4101").status_code == 401
    assert auth_config(zendesk_keys, session_secret="short").problems() == [
        "ESCALATE_SIDEBAR_SECRET of at least 32 bytes"
    ]


def test_configuration_from_the_environment(zendesk_keys):
    config = SidebarAuthConfig.from_env(
        {
            "ZENDESK_URL": "https://acme.zendesk.com/",
            "ZENDESK_APP_PUBLIC_KEY": zendesk_keys.public_pem.replace("\n", "\\n"),
            "ZENDESK_APP_INSTALLATION_ID": "360000123",
            "ESCALATE_SIDEBAR_SECRET": "s3cret-" + "x" * 32,
        }
    )
    assert config.problems() == []
    assert config.public_key == zendesk_keys.public_pem.strip()
    assert config.audiences == ("https://acme.zendesk.com/api/v2/apps/installations/360000123.json",)
    assert config.issuers == ("acme.zendesk.com", "https://acme.zendesk.com")
    assert "https://acme.zendesk.com" in config.frame_ancestors
    assert "s3cret" not in repr(config) and "PUBLIC KEY" not in repr(config)
    assert set(SidebarAuthConfig.from_env({}).problems()) == {
        "ZENDESK_APP_PUBLIC_KEY",
        "ZENDESK_APP_AUDIENCE (or ZENDESK_APP_INSTALLATION_ID)",
        "ZENDESK_URL",
        "ESCALATE_SIDEBAR_SECRET",
    }


@pytest.mark.parametrize(
    ("sub", "expected"),
    [
        ("901", "901"),
        (901, "901"),
        ("https://acme.zendesk.com/api/v2/users/901.json", "901"),
        ("agent-x", "agent-x"),
    ],
)
def test_the_agent_comes_from_the_subject(sub, expected):
    assert agent_id_from_sub(sub) == expected


# -- the API: our session token --------------------------------------------------------------------


API_ROUTES = [
    ("GET", "/sidebar/api/tickets/4101"),
    ("GET", "/sidebar/api/tickets/4101/panel"),
    ("POST", "/sidebar/api/tickets/4101/issues"),
    ("POST", "/sidebar/api/tickets/4101/dismissals"),
    ("POST", "/sidebar/api/session"),
    ("GET", "/sidebar/api/anything/else"),
]


@pytest.mark.parametrize(("method", "path"), API_ROUTES)
def test_every_api_route_wants_a_valid_token(client, zendesk_keys, memory_backend, method, path):
    forged = jwt.encode(
        {"sub": "1", "acct": "x", "tid": "4101"}, "guessed-secret-guessed-secret-guessed", algorithm="HS256"
    )
    zendesk_jwt = sign_zendesk(zendesk_keys)  # Zendesk's own token is for the first load only
    for headers in ({}, bearer("garbage"), bearer(forged), bearer(zendesk_jwt), {"Authorization": "Basic x"}):
        response = client.open(path, method=method, headers=headers, json={"destination": "engineering"})
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert memory_backend.created == 0 and memory_backend.dismissals == []


def test_a_ticket_token_works_for_its_ticket_only(client, zendesk_keys):
    token = ticket_token(client, zendesk_keys, "4101")
    assert client.get("/sidebar/api/tickets/4101", headers=bearer(token)).status_code == 200
    assert client.get("/sidebar/api/tickets/4104", headers=bearer(token)).status_code == 401
    assert (
        client.post("/sidebar/api/session", headers=bearer(token), json={"ticket_id": "4104"}).status_code
        == 403
    )


def test_the_zaf_sdk_binds_the_session_to_its_ticket(client, zendesk_keys):
    unbound = session_token(first_load(client, zendesk_keys).get_data(as_text=True))
    assert client.get("/sidebar/api/tickets/4101", headers=bearer(unbound)).status_code == 401
    bad = client.post("/sidebar/api/session", headers=bearer(unbound), json={"ticket_id": "41 01"})
    assert bad.status_code == 400
    bound = client.post(
        "/sidebar/api/session", headers=bearer(unbound), json={"ticket_id": "4101"}
    ).get_json()
    assert bound["ticket_id"] == "4101"
    assert client.get("/sidebar/api/tickets/4101/panel", headers=bearer(bound["token"])).status_code == 200


def test_an_expired_session_is_refused_and_a_live_one_renewed(client, zendesk_keys):
    config = auth_config(zendesk_keys)
    agent = Agent(AGENT_ID, "acme.zendesk.com")
    old, _ = issue_session(agent, config, ticket_id="4101", now=int(time.time()) - 3600)
    assert client.get("/sidebar/api/tickets/4101", headers=bearer(old)).status_code == 401
    live, session = issue_session(agent, config, ticket_id="4101")
    response = client.get("/sidebar/api/tickets/4101", headers=bearer(live))
    renewed = verify_session(response.headers[sidebar.TOKEN_HEADER], config)
    assert renewed.ticket_id == "4101" and renewed.authenticated_at == session.authenticated_at
    with pytest.raises(Unauthorized):  # renewal stops at the session's maximum age
        issue_session(agent, config, authenticated_at=int(time.time()) - SESSION_MAX_AGE_S - 1)
    with pytest.raises(Unauthorized):
        verify_session(
            live, auth_config(zendesk_keys, session_secret="another-secret-of-thirty-two-bytes-or-more")
        )


def test_the_session_secret_signs_the_token(zendesk_keys):
    token, _ = issue_session(Agent("7", "acme.zendesk.com"), auth_config(zendesk_keys), ticket_id="12")
    claims = jwt.decode(token, SIDEBAR_SECRET, algorithms=["HS256"], audience="escalate-sidebar")
    assert claims["exp"] - claims["iat"] == 15 * 60
    assert (claims["sub"], claims["tid"], claims["acct"]) == ("7", "12", "acme.zendesk.com")


# -- what the API does -----------------------------------------------------------------------------


def test_create_issue_passes_the_agent_and_returns_the_issue(client, zendesk_keys, memory_backend):
    token = ticket_token(client, zendesk_keys)
    response = client.post(
        "/sidebar/api/tickets/4101/issues", headers=bearer(token), json={"destination": "engineering"}
    )
    assert response.status_code == 200
    assert response.get_json()["escalation"]["jira_key"] == "ENG-1"
    panel = client.get("/sidebar/api/tickets/4101/panel", headers=bearer(token)).get_data(as_text=True)
    assert 'data-test="jira-key"' in panel and "ENG-1" in panel and "Last moved" in panel
    assert 'data-test="dismiss-box"' not in panel  # the suggestion is acted on


def test_two_clicks_make_one_issue(client, zendesk_keys, memory_backend):
    memory_backend.delay_s = 0.2
    token = ticket_token(client, zendesk_keys)

    def click(_: int) -> str:
        response = client.post(
            "/sidebar/api/tickets/4101/issues", headers=bearer(token), json={"destination": "engineering"}
        )
        return response.get_json()["escalation"]["jira_key"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        keys = set(pool.map(click, range(4)))
    assert keys == {"ENG-1"} and memory_backend.created == 1


def test_concurrent_clicks_reach_the_backend_one_at_a_time(zendesk_keys):
    inside, most = [0], [0]
    guard = threading.Lock()

    class Slow(MemoryBackend):
        def create_issue(self, ticket_id, destination, actor):
            with guard:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.05)
            with guard:
                inside[0] -= 1
            return {"jira_key": "ENG-1"}

    app = make_sidebar_app(Slow({"4101": example_decision("outage")}), auth_config(zendesk_keys))
    client = app.test_client()
    token = ticket_token(client, zendesk_keys)
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(
            pool.map(
                lambda _: client.post(
                    "/sidebar/api/tickets/4101/issues",
                    headers=bearer(token),
                    json={"destination": "engineering"},
                ),
                range(3),
            )
        )
    assert most[0] == 1


def test_dismiss_records_the_reason_for_tuning(client, zendesk_keys, memory_backend):
    token = ticket_token(client, zendesk_keys)
    url = "/sidebar/api/tickets/4101/dismissals"
    assert client.post(url, headers=bearer(token), json={"destination": "engineering"}).status_code == 400
    assert (
        client.post(
            url, headers=bearer(token), json={"destination": "nowhere", "reason": "not_severe"}
        ).status_code
        == 400
    )
    other = {"destination": "engineering", "reason": "other", "note": "  "}
    assert client.post(url, headers=bearer(token), json=other).status_code == 400
    body = {"destination": "engineering", "reason": "workaround_available", "note": "KB 123\ncovers it"}
    assert client.post(url, headers=bearer(token), json=body).status_code == 200
    assert memory_backend.dismissals == [
        {
            "ticket_id": "4101",
            "destination": "engineering",
            "reason": "workaround_available: KB 123 covers it",
            "actor": f"zendesk-user:{AGENT_ID}",
        }
    ]
    panel = client.get("/sidebar/api/tickets/4101/panel", headers=bearer(token)).get_data(as_text=True)
    assert 'data-test="dismissed"' in panel and 'data-test="dismiss-box"' not in panel


def test_bad_destinations_are_refused(client, zendesk_keys, memory_backend):
    token = ticket_token(client, zendesk_keys)
    for body in ({}, {"destination": "jira"}, {"destination": ["engineering"]}):
        assert (
            client.post("/sidebar/api/tickets/4101/issues", headers=bearer(token), json=body).status_code
            == 400
        )
    assert memory_backend.created == 0


def test_unknown_tickets_and_backend_failures(zendesk_keys):
    class Broken(MemoryBackend):
        def create_issue(self, ticket_id, destination, actor):
            raise RuntimeError("Jira said no: secret-internal-detail")

    app = make_sidebar_app(Broken({"4101": example_decision("outage")}), auth_config(zendesk_keys))
    client = app.test_client()
    page = first_load(client, zendesk_keys, "999")
    assert page.status_code == 200 and 'data-test="not-found"' in page.get_data(as_text=True)
    token = ticket_token(client, zendesk_keys)
    failed = client.post(
        "/sidebar/api/tickets/4101/issues", headers=bearer(token), json={"destination": "engineering"}
    )
    assert failed.status_code == 502 and "secret-internal-detail" not in failed.get_data(as_text=True)
    stray, _ = issue_session(Agent("1", "acme.zendesk.com"), auth_config(zendesk_keys), ticket_id="999")
    assert client.get("/sidebar/api/tickets/999", headers=bearer(stray)).status_code == 404
    assert client.get("/sidebar/api/tickets/999/panel", headers=bearer(stray)).status_code == 404


def test_without_a_backend_the_api_answers_503(zendesk_keys):
    app = make_sidebar_app(None, auth_config(zendesk_keys))
    client = app.test_client()
    token = ticket_token(client, zendesk_keys)
    assert client.get("/sidebar/api/tickets/4101", headers=bearer(token)).status_code == 503


def test_the_json_view_is_the_backends(client, zendesk_keys, memory_backend):
    token = ticket_token(client, zendesk_keys)
    data = client.get("/sidebar/api/tickets/4101", headers=bearer(token)).get_json()
    assert data["ticket_id"] == "4101"
    assert data["decision"]["destination"] == "engineering" and data["escalations"] == []


# -- ticket text is text ---------------------------------------------------------------------------


def test_the_templates_are_autoescaped(sidebar_app):
    for name in ("sidebar/page.html", "sidebar/_panel.html", "sidebar/_missing.html"):
        assert sidebar_app.select_jinja_autoescape(name), name


def test_an_html_subject_is_shown_as_text(client, zendesk_keys):
    html = first_load(client, zendesk_keys, "4666").get_data(as_text=True)
    assert "<img" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    token = session_token(html)
    panel = client.get("/sidebar/api/tickets/4666/panel", headers=bearer(token)).get_data(as_text=True)
    assert "<img" not in panel and XSS_SUBJECT in unescape(panel)


def test_the_page_allows_no_inline_script_and_only_zendesk_frames(client, zendesk_keys):
    response = first_load(client, zendesk_keys, "4101")
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors https://*.zendesk.com " + ZENDESK_URL in csp
    assert response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    assert "<script>" not in html and " style=" not in html and "onclick" not in html
    assert "cdn" not in html.lower() and "zdassets" not in html


def test_the_static_files_are_served(client):
    for name in ("sidebar.js", "sidebar.css", "vendor/garden.css", "vendor/zaf_sdk.js"):
        response = client.get(f"/sidebar/static/{name}")
        assert response.status_code == 200, name
        response.close()


def test_the_backend_protocol_is_satisfied_by_the_test_backend(memory_backend):
    assert isinstance(memory_backend, SidebarBackend)


# -- what the panel says ---------------------------------------------------------------------------


def test_the_panel_for_a_ticket_kept_in_support():
    panel = build_panel("4104", {"decision": example_decision("howto_question"), "escalations": []})
    assert panel.destination_label == "Keep in support" and panel.severity is None
    assert [h.title for h in panel.holds] == ["Coaching"]
    assert panel.package_html is None and not panel.can_dismiss
    assert panel.choices[0] == ("engineering", "Engineering")  # the agent may still escalate


def test_the_panel_orders_the_destinations_suggestion_first():
    panel = build_panel("4101", {"decision": example_decision("outage"), "escalations": []})
    assert panel.choices[0] == ("engineering", "Engineering (suggested)")
    assert panel.choices[1] == ("leadership", "Leadership")
    assert len(panel.choices) == 5 and panel.can_create and panel.can_dismiss


def test_a_hand_over_without_an_issue_counts_as_done():
    """support_l2 is a Zendesk group: the escalation is under way with no Jira key."""
    decision = example_decision("outage")
    decision.update(destination="support_l2", also_notify=[])
    escalation = {
        "id": 1,
        "destination": "support_l2",
        "state": "created",
        "jira_key": None,
        "jira_url": None,
        "jira_status": None,
        "state_changed_at": "2026-11-20T14:00:00Z",
    }
    panel = build_panel(
        "4101", {"decision": decision, "escalations": [escalation]}, datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
    )
    assert [(x.destination_label, x.jira_status, x.last_moved) for x in panel.linked] == [
        ("Support L2", "Created", "1 h ago (20 Nov 14:00 UTC)")
    ]
    assert not panel.can_create and not panel.can_dismiss
    assert "support_l2" not in dict(panel.choices)


def test_a_suggestion_waiting_for_a_click_is_not_a_hand_over():
    suggested = {"id": 1, "destination": "engineering", "state": "suggested", "jira_key": None}
    panel = build_panel("4101", {"decision": example_decision("outage"), "escalations": [suggested]})
    assert panel.linked == () and panel.can_create and panel.can_dismiss


def test_impact_says_unknown_rather_than_guessing():
    now = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
    rows = impact_rows({}, now)
    assert [r.label for r in rows] == [
        "Customers affected",
        "Blocked or degraded",
        "Time open · to SLA breach",
        "ARR exposed",
        "Reputation",
        "SLA position",
    ]
    assert rows[0].value == "unknown" and rows[1].value == "unknown" and rows[5].value == "unknown"
    outage = impact_rows(example_decision("outage")["impact"], now)
    assert outage[2].value == "open 1.5 h · breach in 30 min" and outage[2].tone == "yellow"
    assert outage[3].value == "USD 420,000 ARR"
    assert outage[5].value == "At risk" and outage[5].detail == "enterprise tier"


def test_relative_times():
    now = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
    assert relative(now + timedelta(minutes=30), now) == "in 30 min"
    assert relative(now - timedelta(hours=3), now) == "3 h ago"
    assert relative(now - timedelta(days=4), now) == "4 d ago"
    assert relative(now, now) == "just now"
