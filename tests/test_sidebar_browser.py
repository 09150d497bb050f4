"""The sidebar end to end, in headless Chromium, as an agent sees it inside Zendesk.

The service is the real app (``worker.app.create_app``) on a local port, talking to the sandbox
Zendesk and Jira. A stand-in for Zendesk's agent page, served from another site (``localhost`` rather
than ``127.0.0.1``, so the sidebar is a cross-site iframe as in Zendesk), does what Zendesk does: it
POSTs the signed-URL JWT into a 320px iframe and answers the ZAF SDK's messages (the handshake,
``get('ticket.id')``, ``invoke('resize')``). Screenshots go to ``artifacts/``.

Chromium comes from Debian (``/usr/bin/chromium``; ``.ci/run`` installs it); Playwright drives it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from werkzeug.serving import make_server

from connector.http import sidebar
from connector.sandbox.server import Sandbox
from worker.app import Service, build_service, create_app
from worker.config import Settings
from worker.store import Store

pytest.register_assert_rewrite("tests.conftest_sidebar")  # see test_sidebar.py

from tests.conftest_sidebar import (  # noqa: E402
    AGENT_ID,
    XSS_SUBJECT,
    KeyPair,
    RecordingBackend,
    auth_config,
    sign_zendesk,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these Chromium's own background connections get refused on this network and stall it.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SIDEBAR_WIDTH = 320
APP_GUID = "e2e-app-guid"
TIMEOUT_MS = 30_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not installed at /usr/bin/chromium (.ci/run installs it)",
)

TICKET_TO_CREATE = 107  # engineering, high: a suggestion, not created automatically
TICKET_TO_DISMISS = 103  # leadership, high


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


class AgentUI:
    """Zendesk's agent page for our app, one HTML document per ticket path, on a loopback port."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        self.server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, name="agent-ui", daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://localhost:{self.server.server_port}"

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = self.pages.get(environ.get("PATH_INFO", ""))
        if body is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [body.encode()]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def agent_ui() -> Iterator[AgentUI]:
    ui = AgentUI()
    yield ui
    ui.stop()


@dataclass
class Live:
    url: str
    zendesk_url: str
    ui: AgentUI
    sandbox: Sandbox
    service: Service
    backend: RecordingBackend
    keys: KeyPair

    def token(self, keys: KeyPair | None = None) -> str:
        return sign_zendesk(
            keys or self.keys,
            zendesk_url=self.zendesk_url,
            sub=f"{self.zendesk_url}/api/v2/users/{AGENT_ID}.json",
        )


def _backend_for(service: Service) -> Any:
    """The service's own backend once the app factory provides one; until then the worker's class,
    wired to this service the way the factory will."""
    own = getattr(service, "sidebar", None)
    if own is not None:
        return own
    from worker.sidebar_backend import SidebarBackend

    return SidebarBackend(service.job_context)


@pytest.fixture
def live(
    sandbox_state: Sandbox,
    monkeypatch: pytest.MonkeyPatch,
    zendesk_keys: KeyPair,
    agent_ui: AgentUI,
    store: Store,
) -> Iterator[Live]:
    """The real app on a free port, on each store (SQLite, the embedded default, and PostgreSQL)."""
    env = sandbox_state.environment()
    monkeypatch.setenv("ZENDESK_JIRA_FIELD_ID", env["ZENDESK_JIRA_FIELD_ID"])
    settings = Settings(
        zendesk_url=env["ZENDESK_URL"],
        zendesk_email=env["ZENDESK_EMAIL"],
        zendesk_api_token=env["ZENDESK_API_TOKEN"],
        zendesk_webhook_secret="zendesk-webhook-secret",
        jira_url=env["JIRA_URL"],
        jira_email=env["JIRA_EMAIL"],
        jira_api_token=env["JIRA_API_TOKEN"],
        jira_webhook_secret="jira-webhook-secret",
        database_url=store.engine.url.render_as_string(hide_password=False),
        redis_url=None,
        auto_migrate=False,  # the store fixture migrated it
    )
    service = build_service(settings, store=store)
    app = create_app(settings, service=service)
    recorder = RecordingBackend(_backend_for(service))
    service.sidebar = recorder  # type: ignore[attr-defined]
    if "sidebar" not in app.blueprints:  # until worker/app.py registers it
        sidebar.init_app(app)
    # Zendesk's own origin (the sandbox's) is the issuer; the agent page's origin may frame the sidebar.
    app.extensions[sidebar.CONFIG_KEY] = auth_config(
        zendesk_keys,
        zendesk_url=env["ZENDESK_URL"],
        frame_ancestors=("https://*.zendesk.com", env["ZENDESK_URL"], agent_ui.origin),
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="sidebar-e2e", daemon=True)
    thread.start()
    try:
        yield Live(
            f"http://127.0.0.1:{server.server_port}",
            env["ZENDESK_URL"],
            agent_ui,
            sandbox_state,
            service,
            recorder,
            zendesk_keys,
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        queue = service.queue
        if hasattr(queue, "join"):
            queue.join(timeout=10)  # type: ignore[union-attr]
        if hasattr(queue, "close"):
            queue.close()  # type: ignore[union-attr]


def agent_page(live: Live, ticket_id: int, token: str) -> str:
    """What Zendesk's agent UI does for our app, reduced to the protocol: a signed POST into the iframe,
    then answers to the SDK's postMessage requests."""
    action = f"{live.url}/sidebar?origin={quote(live.ui.origin, safe='')}&app_guid={APP_GUID}"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Ticket #{ticket_id}</title>
<style>
  body {{ margin: 0; background: #f8f9f9; }}
  iframe {{ display: block; width: {SIDEBAR_WIDTH}px; height: 600px; border: 0; background: #fff; }}
</style></head>
<body>
<form id="load" method="post" target="sidebar" action="{action}">
  <input type="hidden" name="token" value="{token}">
</form>
<iframe name="sidebar" id="sidebar" title="Escalate"></iframe>
<script>
  window.zaf = {{handshakes: 0, gets: [], resizes: []}};
  var frame = document.getElementById('sidebar');
  window.addEventListener('message', function (event) {{
    if (event.source !== frame.contentWindow) {{ return; }}
    var message = JSON.parse(event.data);
    function reply(data) {{ frame.contentWindow.postMessage(JSON.stringify(data), event.origin); }}
    if (message.key === 'iframe.handshake') {{
      window.zaf.handshakes += 1;
      reply({{key: 'zaf.app.registered', message: {{
        context: {{product: 'support', location: 'ticket_sidebar'}},
        metadata: {{appId: 1, installationId: 1}}}}}});
    }} else if (message.request === 'get') {{
      window.zaf.gets.push(message.params);
      reply({{id: message.id, result: {{'ticket.id': {ticket_id}}}}});
    }} else if (message.request === 'invoke') {{
      if (message.params.resize) {{
        window.zaf.resizes.push(message.params.resize[0]);
        frame.style.height = message.params.resize[0].height;
      }}
      reply({{id: message.id, result: {{}}}});
    }}
  }});
  document.getElementById('load').submit();
</script>
</body></html>"""


@dataclass
class Opened:
    page: Any
    frame: Any
    dialogs: list[str]


def open_ticket(browser: Any, live: Live, ticket_id: int, *, token: str | None = None) -> Opened:
    page = browser.new_page(viewport={"width": SIDEBAR_WIDTH + 40, "height": 1800})
    page.set_default_timeout(TIMEOUT_MS)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    path = f"/agent/tickets/{ticket_id}"
    live.ui.pages[path] = agent_page(live, ticket_id, token or live.token())
    page.goto(live.ui.origin + path)
    frame = page.frame_locator("#sidebar")
    return Opened(page, frame, dialogs)


def wait_for_panel(opened: Opened) -> None:
    opened.frame.locator("#panel").wait_for()
    # The page asks Zendesk to resize the iframe to its content once the panel is in.
    opened.page.wait_for_function("window.zaf.resizes.length > 0")


def session_for(opened: Opened, live: Live, ticket_id: int) -> str:
    """A ticket-bound session token, obtained as the page does: the first load's token, then /session."""
    frame = opened.page.frame(name="sidebar")
    unbound = frame.evaluate("document.body.getAttribute('data-token')")
    bound = frame.evaluate(
        """async ([api, token, id]) => {
            const r = await fetch(api + '/session', {method: 'POST', headers: {
                'Authorization': 'Bearer ' + token, 'Content-Type': 'application/json'},
                body: JSON.stringify({ticket_id: String(id)})});
            return (await r.json()).token;
        }""",
        [f"{live.url}/sidebar/api", unbound, ticket_id],
    )
    return str(bound)


# -- the tests -------------------------------------------------------------------------------------


def test_the_sidebar_shows_the_assessment(browser, live, artifacts_dir):
    opened = open_ticket(browser, live, TICKET_TO_CREATE)
    wait_for_panel(opened)
    frame = opened.frame
    assert frame.locator("[data-test=severity]").inner_text().strip() == "High"
    assert frame.locator("[data-test=destination]").inner_text().strip() == "Engineering"
    assert frame.locator("[data-test=trigger]").count() >= 2
    triggers = frame.locator("[data-test=why]").inner_text()
    assert "Widespread harm: Multi org same symptom" in triggers
    assert frame.locator("[data-test=impact-row]").count() == 6
    impact = frame.locator("[data-test=impact]").inner_text()
    for label in (
        "Customers affected",
        "Blocked or degraded",
        "to SLA breach",
        "ARR exposed",
        "Reputation",
        "SLA position",
    ):
        assert label in impact
    assert frame.locator("[data-test=missing]").is_visible()
    assert frame.locator("[data-test=create]").inner_text().strip() == "Create Engineering issue"
    assert frame.locator("#panel").evaluate("e => e.getBoundingClientRect().width") <= SIDEBAR_WIDTH
    no_overflow = "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    assert opened.page.frame(name="sidebar").evaluate(no_overflow)
    assert opened.page.evaluate("window.zaf.gets") == [["ticket.id"]]
    opened.page.locator("#sidebar").screenshot(path=str(artifacts_dir / "sidebar.png"))
    assert opened.dialogs == []


def test_create_makes_exactly_one_issue_and_shows_its_key(browser, live, artifacts_dir):
    opened = open_ticket(browser, live, TICKET_TO_CREATE)
    wait_for_panel(opened)
    before = set(live.sandbox.jira_state.issues)
    opened.frame.locator("[data-test=create]").dblclick()
    key_cell = opened.frame.locator("[data-test=jira-key]")
    key_cell.wait_for()
    created = [live.sandbox.jira_state.issues[i] for i in set(live.sandbox.jira_state.issues) - before]
    assert len(created) == 1
    key = created[0]["key"]
    assert key.startswith("ENG-") and key_cell.inner_text().strip() == key
    assert opened.frame.locator("[data-test=jira-status]").inner_text().strip()
    assert "Last moved" in opened.frame.locator("[data-test=last-moved]").inner_text()
    assert [args[:2] for args in live.backend.named("create_issue")] == [
        (str(TICKET_TO_CREATE), "engineering")
    ]
    assert live.backend.named("create_issue")[0][2] == f"zendesk-user:{AGENT_ID}"

    # Two more clicks racing from another tab of the same agent: still the one issue.
    token = session_for(opened, live, TICKET_TO_CREATE)
    keys = opened.page.frame(name="sidebar").evaluate(
        """async ([url, token]) => {
            const click = () => fetch(url, {method: 'POST', headers: {'Authorization': 'Bearer ' + token,
                'Content-Type': 'application/json'}, body: JSON.stringify({destination: 'engineering'})})
                .then(r => r.json()).then(d => d.escalation.jira_key);
            return Promise.all([click(), click()]);
        }""",
        [f"{live.url}/sidebar/api/tickets/{TICKET_TO_CREATE}/issues", token],
    )
    assert keys == [key, key]
    assert len(set(live.sandbox.jira_state.issues) - before) == 1
    opened.page.locator("#sidebar").screenshot(path=str(artifacts_dir / "sidebar-linked.png"))


def test_dismiss_records_the_reason(browser, live):
    opened = open_ticket(browser, live, TICKET_TO_DISMISS)
    wait_for_panel(opened)
    frame = opened.frame
    assert frame.locator("[data-test=destination]").inner_text().strip() == "Leadership"
    frame.locator("[data-test=dismiss-box] summary").click()
    frame.locator("[data-test=dismiss-reason]").select_option("not_severe")
    frame.locator("[data-test=dismiss-note]").fill("Renewal already signed; the CSM is on it.")
    frame.locator("[data-test=dismiss]").click()
    frame.locator("[data-test=dismissed]").wait_for()
    assert "Leadership" in frame.locator("[data-test=dismissed]").inner_text()
    assert frame.locator("[data-test=dismiss-box]").count() == 0
    assert live.backend.named("dismiss") == [
        (
            str(TICKET_TO_DISMISS),
            "leadership",
            "not_severe: Renewal already signed; the CSM is on it.",
            f"zendesk-user:{AGENT_ID}",
        )
    ]
    assert live.sandbox.jira_state.issues == {}


def test_an_html_subject_stays_inert(browser, live, artifacts_dir):
    ticket = live.sandbox.zendesk_state.add_ticket(
        subject=XSS_SUBJECT,
        description="Export fails for every report. <script>alert(2)</script> We are blocked.",
        tags=["bug_confirmed"],
        requester_id=1006,
    )
    opened = open_ticket(browser, live, int(ticket["id"]))
    wait_for_panel(opened)
    frame = opened.frame
    assert XSS_SUBJECT in frame.locator("[data-test=headline]").inner_text()
    frame.locator(".esc-package summary").click()
    assert "<script>alert(2)</script>" in frame.locator("[data-test=package-preview]").inner_text()
    assert frame.locator("#panel img, #panel script").count() == 0
    opened.page.wait_for_timeout(300)  # an onerror handler would have fired by now
    assert opened.dialogs == []
    opened.page.locator("#sidebar").screenshot(path=str(artifacts_dir / "sidebar-xss.png"))


def test_requests_without_a_valid_token_get_401(browser, live, other_keys):
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    direct = page.goto(f"{live.url}/sidebar?ticket_id={TICKET_TO_CREATE}")
    assert direct is not None and direct.status == 401
    assert "Not signed in" in page.inner_text("body")
    statuses = page.evaluate(
        """async (base) => {
            const forged = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIiwidGlkIjoiMTA3In0.c2lnbmF0dXJl';
            const get = (headers) => fetch(base + '/api/tickets/107/panel', {headers}).then(r => r.status);
            const post = (headers) => fetch(base + '/api/tickets/107/issues', {method: 'POST',
                headers: Object.assign({'Content-Type': 'application/json'}, headers),
                body: JSON.stringify({destination: 'engineering'})}).then(r => r.status);
            return [await get({}), await get({Authorization: 'Bearer ' + forged}), await post({}),
                    await post({Authorization: 'Bearer ' + forged})];
        }""",
        f"{live.url}/sidebar",
    )
    assert statuses == [401, 401, 401, 401]
    assert live.backend.named("create_issue") == [] and live.sandbox.jira_state.issues == {}

    forged_load = open_ticket(browser, live, TICKET_TO_CREATE, token=live.token(other_keys))
    forged_load.frame.locator("[data-test=unauthorized]").wait_for()
    assert forged_load.frame.locator("#panel").count() == 0


def test_the_vendored_sdk_is_the_one_loaded(browser, live):
    opened = open_ticket(browser, live, TICKET_TO_CREATE)
    wait_for_panel(opened)
    frame = opened.page.frame(name="sidebar")
    assert frame.evaluate("typeof window.ZAFClient.init") == "function"
    scripts = frame.evaluate("Array.from(document.scripts, s => s.src)")
    assert all(src.startswith(live.url + "/sidebar/static/") for src in scripts), scripts
    assert opened.page.evaluate("window.zaf.handshakes") == 1
    assert json.loads(json.dumps(opened.page.evaluate("window.zaf.resizes")))[-1]["width"] == "100%"
