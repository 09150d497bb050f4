"""Who may use the sidebar: Zendesk's signed first load, then our own short-lived session tokens.

The first load. With ``signedUrls: true`` in the app manifest, Zendesk POSTs the iframe's first page
load with a form field ``token``: a JWT signed RS256 with the app's key pair (the public key is
``GET /api/v2/apps/{app_id}/public_key.pem``). Its claims, as Zendesk documents them for server-side
apps: ``iss`` the account's host (``acme.zendesk.com``), ``aud`` the installation
(``https://acme.zendesk.com/api/v2/apps/installations/{id}.json``), ``sub`` the agent, ``exp`` a few
minutes after ``iat``, ``qsh`` and ``context`` ({product, location}). Nothing in it names the ticket:
the page learns that from the ZAF SDK (``client.get('ticket.id')``).

Later calls. The page carries a session token we issue (HS256, ``ESCALATE_SIDEBAR_SECRET``) in an
``Authorization: Bearer`` header; not a cookie, because browsers block third-party cookies in the
Zendesk iframe. It names the agent, the Zendesk account, and once the page knows it the ticket; it
lasts 15 minutes and is renewed on use, up to 8 hours after Zendesk vouched for the agent.

No key, no audience, no secret: everything is refused (401). Nothing is ever accepted unsigned.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import jwt

SESSION_TTL_S = 15 * 60
# How long renewals may extend a session past Zendesk's signed load: an agent's working day.
SESSION_MAX_AGE_S = 8 * 60 * 60
# Clock skew tolerated on Zendesk's exp/iat/nbf (their token lives about five minutes).
ZENDESK_LEEWAY_S = 30
SESSION_ISSUER = "escalate-sidebar"
SESSION_AUDIENCE = "escalate-sidebar"
# HS256 wants a key at least as long as its hash (RFC 7518 §3.2); a shorter one is refused.
MIN_SECRET_BYTES = 32
TICKET_ID = re.compile(r"^[1-9][0-9]{0,19}$")


class Unauthorized(Exception):
    """The request does not prove who sent it; the reason goes to the log, never to the caller."""


@dataclass(frozen=True)
class Agent:
    """The Zendesk user the sidebar acts for, and the account (Zendesk ``iss``) they belong to."""

    user_id: str
    account: str

    @property
    def actor(self) -> str:
        """How the store records who clicked: ``zendesk-user:<id>``."""
        return f"zendesk-user:{self.user_id}"


@dataclass(frozen=True)
class Session:
    agent: Agent
    ticket_id: str | None
    authenticated_at: int
    expires_at: int


@dataclass(frozen=True)
class SidebarAuthConfig:
    public_key: str | None = field(default=None, repr=False)
    audiences: tuple[str, ...] = ()
    issuers: tuple[str, ...] = ()
    session_secret: str | None = field(default=None, repr=False)
    # Origins allowed to frame the page (CSP frame-ancestors).
    frame_ancestors: tuple[str, ...] = ("https://*.zendesk.com",)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SidebarAuthConfig:
        """``ZENDESK_APP_PUBLIC_KEY`` (PEM; ``\\n`` escapes allowed, for one-line .env files),
        ``ZENDESK_APP_AUDIENCE`` (comma-separated) or ``ZENDESK_APP_INSTALLATION_ID``, ``ZENDESK_URL``
        (issuer and frame ancestor) and ``ESCALATE_SIDEBAR_SECRET``."""
        zendesk_url = (environ.get("ZENDESK_URL") or "").strip().rstrip("/")
        key = (environ.get("ZENDESK_APP_PUBLIC_KEY") or "").replace("\\n", "\n").strip() or None
        audiences = tuple(
            a.strip() for a in (environ.get("ZENDESK_APP_AUDIENCE") or "").split(",") if a.strip()
        )
        installation = (environ.get("ZENDESK_APP_INSTALLATION_ID") or "").strip()
        if not audiences and installation and zendesk_url:
            audiences = (installation_audience(zendesk_url, installation),)
        ancestors = ["https://*.zendesk.com"]
        origin = _origin(zendesk_url)
        if origin and origin not in ancestors:
            ancestors.append(origin)
        return cls(
            public_key=key,
            audiences=audiences,
            issuers=issuers_for(zendesk_url),
            session_secret=(environ.get("ESCALATE_SIDEBAR_SECRET") or "").strip() or None,
            frame_ancestors=tuple(ancestors),
        )

    def problems(self) -> list[str]:
        """What is missing for the sidebar to accept anyone; empty when it is configured."""
        missing = []
        if not self.public_key:
            missing.append("ZENDESK_APP_PUBLIC_KEY")
        if not self.audiences:
            missing.append("ZENDESK_APP_AUDIENCE (or ZENDESK_APP_INSTALLATION_ID)")
        if not self.issuers:
            missing.append("ZENDESK_URL")
        if not self.session_secret:
            missing.append("ESCALATE_SIDEBAR_SECRET")
        elif len(self.session_secret.encode()) < MIN_SECRET_BYTES:
            missing.append(f"ESCALATE_SIDEBAR_SECRET of at least {MIN_SECRET_BYTES} bytes")
        return missing


def installation_audience(zendesk_url: str, installation_id: str) -> str:
    return f"{zendesk_url.rstrip('/')}/api/v2/apps/installations/{installation_id}.json"


def issuers_for(zendesk_url: str) -> tuple[str, ...]:
    """Zendesk's examples put the bare host in ``iss``; the URL form is accepted too."""
    parts = urlsplit(zendesk_url)
    if not parts.scheme or not parts.netloc:
        return ()
    return (parts.netloc, f"{parts.scheme}://{parts.netloc}")


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


def agent_id_from_sub(sub: Any) -> str:
    """The user id in ``sub``: a bare id, or the last number of a user URL (``…/users/901.json``)."""
    text = str(sub).strip() if isinstance(sub, str | int) and not isinstance(sub, bool) else ""
    if not text:
        raise Unauthorized("token without a subject")
    found = re.search(r"users/(\d+)", text)
    return found.group(1) if found else text


def verify_zendesk_token(token: str, config: SidebarAuthConfig) -> Agent:
    """The agent a Zendesk signed-URL JWT vouches for; ``Unauthorized`` for anything less."""
    if config.problems():
        raise Unauthorized("sidebar not configured: " + ", ".join(config.problems()))
    if not token:
        raise Unauthorized("no token")
    try:
        claims = jwt.decode(
            token,
            config.public_key,
            algorithms=["RS256"],  # never "none", never HS256 with the public key as the secret
            audience=list(config.audiences),
            leeway=ZENDESK_LEEWAY_S,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise Unauthorized(f"Zendesk token refused: {type(exc).__name__}: {exc}") from None
    # Checked here rather than by PyJWT: a list of accepted issuers needs PyJWT >= 2.10.
    if claims.get("iss") not in config.issuers:
        raise Unauthorized(f"Zendesk token from an unexpected issuer {claims.get('iss')!r}")
    return Agent(user_id=agent_id_from_sub(claims.get("sub")), account=str(claims["iss"]))


def issue_session(
    agent: Agent,
    config: SidebarAuthConfig,
    *,
    ticket_id: str | None = None,
    authenticated_at: int | None = None,
    now: int | None = None,
) -> tuple[str, Session]:
    secret = _session_secret(config)
    issued = int(time.time()) if now is None else now
    auth_time = issued if authenticated_at is None else authenticated_at
    expires = min(issued + SESSION_TTL_S, auth_time + SESSION_MAX_AGE_S)
    if expires <= issued:
        raise Unauthorized("session too old to renew")
    claims: dict[str, Any] = {
        "iss": SESSION_ISSUER,
        "aud": SESSION_AUDIENCE,
        "sub": agent.user_id,
        "acct": agent.account,
        "auth_time": auth_time,
        "iat": issued,
        "exp": expires,
        "jti": secrets.token_urlsafe(12),
    }
    if ticket_id is not None:
        claims["tid"] = ticket_id
    token = jwt.encode(claims, secret, algorithm="HS256")
    return token, Session(agent, ticket_id, auth_time, expires)


def verify_session(token: str, config: SidebarAuthConfig) -> Session:
    secret = _session_secret(config)
    if not token:
        raise Unauthorized("no session token")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            audience=SESSION_AUDIENCE,
            issuer=SESSION_ISSUER,
            options={"require": ["exp", "iat", "sub", "acct", "auth_time"]},
        )
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise Unauthorized(f"session token refused: {type(exc).__name__}: {exc}") from None
    ticket = claims.get("tid")
    if ticket is not None and not (isinstance(ticket, str) and TICKET_ID.match(ticket)):
        raise Unauthorized("session token with a malformed ticket id")
    return Session(
        agent=Agent(user_id=str(claims["sub"]), account=str(claims["acct"])),
        ticket_id=ticket,
        authenticated_at=int(claims["auth_time"]),
        expires_at=int(claims["exp"]),
    )


def _session_secret(config: SidebarAuthConfig) -> str:
    secret = config.session_secret or ""
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise Unauthorized(f"ESCALATE_SIDEBAR_SECRET is unset or shorter than {MIN_SECRET_BYTES} bytes")
    return secret


def bearer(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or ``""``."""
    scheme, _, value = (header or "").strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""
