"""Webhook signatures: Zendesk's timestamped HMAC and Jira's X-Hub-Signature.

Both sign the raw body, so these functions take bytes exactly as received; parsing comes after.
The ``sign_*`` functions exist for the sandbox and the tests, which must produce what the real
senders produce.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

# Zendesk: base64(HMAC-SHA256(key = signing secret as UTF-8 text, msg = timestamp + raw body)),
# sent in X-Zendesk-Webhook-Signature with the timestamp in X-Zendesk-Webhook-Signature-Timestamp
# (developer.zendesk.com, "Verifying webhook authenticity"; test vector in DESIGN.md).
MAX_CLOCK_SKEW = timedelta(minutes=5)


def sign_zendesk(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode("utf-8"), timestamp.encode("utf-8") + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def zendesk_signature_valid(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    expected = sign_zendesk(secret, timestamp, body)
    # compare_digest: a byte-by-byte comparison would leak how much of a forged signature matched.
    return hmac.compare_digest(expected.encode("ascii"), signature.strip().encode("utf-8", "replace"))


def parse_timestamp(value: str) -> datetime | None:
    """Zendesk sends ISO 8601 in UTC (``2021-03-25T05:09:27Z``); anything unparseable is None."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def timestamp_fresh(value: str, now: datetime | None = None, skew: timedelta = MAX_CLOCK_SKEW) -> bool:
    """True when the signed timestamp is within ``skew`` of now, either way.

    The timestamp is part of the signed message, so a fresh one cannot be grafted onto a replayed
    body: this bounds replays to the skew window, and the delivery-id dedupe covers the window.
    """
    stamp = parse_timestamp(value)
    if stamp is None:
        return False
    now = now or datetime.now(UTC)
    return abs(now - stamp) <= skew


def sign_hub(secret: str, body: bytes) -> str:
    """Jira's admin webhooks with a secret: ``X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, body)>``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def hub_signature_valid(secret: str, body: bytes, header: str) -> bool:
    method, _, received = header.strip().partition("=")
    if method.lower() != "sha256" or not received:
        return False
    expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode("ascii"), received.lower().encode("utf-8", "replace"))
