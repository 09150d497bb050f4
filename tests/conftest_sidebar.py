"""Fixtures for the sidebar (a pytest plugin: list it in a test module's ``pytest_plugins``).

- ``zendesk_keys``: an RSA key pair standing in for the Zendesk app's; ``sign_zendesk`` signs a
  signed-URL JWT with it as Zendesk would (RS256; iss, aud, sub, iat, exp, qsh, context).
- ``MemoryBackend``: the ``SidebarBackend`` protocol over a real decision (an example bundle run
  through ``rules.evaluate``), escalations kept in memory; for page and API tests.
- ``RecordingBackend``: wraps either and records the calls the endpoints made.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask

from connector.http import sidebar
from connector.http.sidebar_auth import SidebarAuthConfig, installation_audience, issuers_for
from rules.evaluate import evaluate_bundle
from rules.similarity import load_matcher

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
ARTIFACTS = ROOT / "artifacts"
SIDEBAR_SECRET = "sidebar-test-secret-0123456789abcdef"
ZENDESK_URL = "https://acme.zendesk.com"
INSTALLATION_ID = "360000123"
AGENT_ID = "901"


@dataclass(frozen=True)
class KeyPair:
    private_pem: str
    public_pem: str


def _key_pair() -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return KeyPair(private, public)


@pytest.fixture(scope="session")
def zendesk_keys() -> KeyPair:
    return _key_pair()


@pytest.fixture(scope="session")
def other_keys() -> KeyPair:
    """A key pair Zendesk did not issue: what a forger would sign with."""
    return _key_pair()


def auth_config(keys: KeyPair, zendesk_url: str = ZENDESK_URL, **overrides: Any) -> SidebarAuthConfig:
    values: dict[str, Any] = {
        "public_key": keys.public_pem,
        "audiences": (installation_audience(zendesk_url, INSTALLATION_ID),),
        "issuers": issuers_for(zendesk_url),
        "session_secret": SIDEBAR_SECRET,
        "frame_ancestors": ("https://*.zendesk.com", zendesk_url),
    }
    values.update(overrides)
    return SidebarAuthConfig(**values)


def sign_zendesk(
    keys: KeyPair,
    *,
    zendesk_url: str = ZENDESK_URL,
    sub: str = AGENT_ID,
    lifetime_s: int = 300,
    issued_at: int | None = None,
    algorithm: str = "RS256",
    **claims: Any,
) -> str:
    """A signed-URL JWT as Zendesk sends it on the iframe's first load."""
    now = int(time.time()) if issued_at is None else issued_at
    host = zendesk_url.split("://", 1)[-1]
    payload: dict[str, Any] = {
        "iss": host,
        "aud": installation_audience(zendesk_url, INSTALLATION_ID),
        "sub": sub,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime_s,
        "qsh": "not-checked",
        "cnf": {"jku": f"{zendesk_url}/api/v2/apps/1/public_key.pem"},
        "context": {"product": "support", "location": "ticket_sidebar"},
    }
    payload.update(claims)
    return jwt.encode(payload, keys.private_pem, algorithm=algorithm)


# -- backends --------------------------------------------------------------------------------------


def example_decision(name: str, **ticket_changes: Any) -> dict[str, Any]:
    """The decision `escalate evaluate examples/<name>.json` prints (lexical matcher: no model)."""
    bundle = json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    bundle["ticket"].update(ticket_changes)
    return evaluate_bundle(bundle, matcher=load_matcher("lexical")).to_dict()


def _stamp() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class MemoryBackend:
    """Tickets are decisions; create_issue hands out ENG-1, ENG-2, … once per (ticket, destination)."""

    decisions: dict[str, dict[str, Any]]
    escalations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    dismissals: list[dict[str, Any]] = field(default_factory=list)
    created: int = 0
    delay_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def view(self, ticket_id: str) -> dict[str, Any] | None:
        if ticket_id not in self.decisions:
            return None
        return {
            "decision": self.decisions[ticket_id],
            "escalations": list(self.escalations.get(ticket_id, [])),
        }

    def create_issue(self, ticket_id: str, destination: str, actor: str) -> dict[str, Any]:
        with self._lock:
            for e in self.escalations.get(ticket_id, []):
                if e["destination"] == destination and e["jira_key"]:
                    return e
            time.sleep(self.delay_s)
            self.created += 1
            key = f"ENG-{self.created}"
            record = _escalation(len(self.escalations.get(ticket_id, [])) + 1, destination, "created", key)
            record["jira_url"] = f"https://jira.example.com/browse/{key}"
            self.escalations.setdefault(ticket_id, []).append(record)
            return record

    def dismiss(self, ticket_id: str, destination: str, reason: str, actor: str) -> dict[str, Any]:
        with self._lock:
            self.dismissals.append(
                {"ticket_id": ticket_id, "destination": destination, "reason": reason, "actor": actor}
            )
            record = _escalation(len(self.escalations.get(ticket_id, [])) + 1, destination, "dismissed", None)
            self.escalations.setdefault(ticket_id, []).append(record)
            return record


def _escalation(number: int, destination: str, state: str, key: str | None) -> dict[str, Any]:
    stamp = _stamp()
    return {
        "id": number,
        "destination": destination,
        "state": state,
        "severity": None,
        "jira_key": key,
        "jira_url": None,
        "jira_status": "To Do" if key else None,
        "state_changed_at": stamp,
        "updated_at": stamp,
    }


class RecordingBackend:
    """Delegates to ``inner`` and keeps every call the sidebar made, to assert on what it sent."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self._lock = threading.Lock()

    def _record(self, name: str, *args: Any) -> None:
        with self._lock:
            self.calls.append((name, args))

    def view(self, ticket_id: str) -> dict[str, Any] | None:
        self._record("view", ticket_id)
        return self.inner.view(ticket_id)

    def create_issue(self, ticket_id: str, destination: str, actor: str) -> dict[str, Any]:
        self._record("create_issue", ticket_id, destination, actor)
        return self.inner.create_issue(ticket_id, destination, actor)

    def dismiss(self, ticket_id: str, destination: str, reason: str, actor: str) -> dict[str, Any]:
        self._record("dismiss", ticket_id, destination, reason, actor)
        return self.inner.dismiss(ticket_id, destination, reason, actor)

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [args for call, args in self.calls if call == name]


# -- a small app around the blueprint, for page and API tests --------------------------------------


@dataclass
class _Service:
    sidebar: Any


def make_sidebar_app(backend: Any, config: SidebarAuthConfig | None) -> Flask:
    app = Flask("escalate-sidebar-tests")
    app.config["TESTING"] = True
    app.extensions["escalate"] = _Service(backend)
    sidebar.init_app(app, config)
    return app


XSS_SUBJECT = "<img src=x onerror=alert(1)>"


@pytest.fixture
def memory_backend() -> MemoryBackend:
    return MemoryBackend(
        {
            "4101": example_decision("outage"),
            "4104": example_decision("howto_question"),
            "4666": example_decision("outage", subject=XSS_SUBJECT),
        }
    )


@pytest.fixture
def sidebar_app(memory_backend: MemoryBackend, zendesk_keys: KeyPair) -> Flask:
    return make_sidebar_app(memory_backend, auth_config(zendesk_keys))


def first_load(client: Any, keys: KeyPair, ticket_id: str | None = None, **claims: Any) -> Any:
    query = f"?ticket_id={ticket_id}" if ticket_id else ""
    return client.post(f"/sidebar{query}", data={"token": sign_zendesk(keys, **claims)})


def session_token(html: str) -> str:
    marker = 'data-token="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def artifacts_dir() -> Iterator[Path]:
    ARTIFACTS.mkdir(exist_ok=True)
    yield ARTIFACTS


def unique_label() -> str:
    return uuid.uuid4().hex[:8]
