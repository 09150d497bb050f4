"""Secret redaction: what it must catch, and the ordinary support text it must leave alone."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.redact import redact

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi7Jhx1nVq8V8bYk2mEXAMPLEAAAA\n"
    "q9FmHmB9yHdIzUqKg0nYm3ExAMPLE0123456789abcdefABCDEF+/abcdefghijklmn\n"
    "-----END RSA PRIVATE KEY-----"
)


@pytest.mark.parametrize(
    ("text", "expected", "kinds"),
    [
        ("password: hunter2", "password: [REDACTED password]", ["password"]),
        ("Password=hunter2 thanks", "Password=[REDACTED password] thanks", ["password"]),
        ("pwd=s3cret!", "pwd=[REDACTED password]", ["password"]),
        ("DB_PASSWORD=correct-horse-battery", "DB_PASSWORD=[REDACTED password]", ["password"]),
        (
            '{"user": "bob", "password": "hunter 2"}',
            '{"user": "bob", "password": "[REDACTED password]"}',
            ["password"],
        ),
        ("my password is hunter2.", "my password is [REDACTED password]", ["password"]),
        (
            "The password is now Summer2024! Please fix",
            "The password is now [REDACTED password] Please fix",
            ["password"],
        ),
        ("my password is 'letmein'", "my password is '[REDACTED password]'", ["password"]),
        ("Password:\nhunter2\nThanks", "Password:\n[REDACTED password]\nThanks", ["password"]),
        ("(temp password: Xy7pq)", "(temp password: [REDACTED password])", ["password"]),
        (
            "postgres://app:Sup3rS3cret@db.internal:5432/prod",
            "postgres://app:[REDACTED password]@db.internal:5432/prod",
            ["password"],
        ),
        (
            "Authorization: Basic dXNlcjpwYXNzd29yZA==",
            "Authorization: Basic [REDACTED password]",
            ["password"],
        ),
        (
            "Authorization: Bearer 4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c",
            "Authorization: Bearer [REDACTED token]",
            ["token"],
        ),
        ("api_key=AbC123dEf456GhI789", "api_key=[REDACTED api_key]", ["api_key"]),
        ("X-API-Key: 8d7f6e5a4b3c2d1e0f9a", "X-API-Key: [REDACTED api_key]", ["api_key"]),
        ("client_secret=9a8b7c6d5e4f3g2h1i0j", "client_secret=[REDACTED api_key]", ["api_key"]),
        ("token: 7c4a8d09ca3762af61e59520943dc26494f8941b", "token: [REDACTED token]", ["token"]),
        ("access_token=ya29.A0ARrdaM-abc123", "access_token=[REDACTED token]", ["token"]),
        ("key AKIAIOSFODNN7EXAMPLE in the logs", "key [REDACTED api_key] in the logs", ["api_key"]),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws_secret_access_key = [REDACTED api_key]",
            ["api_key"],
        ),
        ("use ghp_16C7e42F292c6912E7710c838347Ae178B4a please", "use [REDACTED token] please", ["token"]),
        (
            "slack xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            "slack [REDACTED token]",
            ["token"],
        ),
        ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "stripe [REDACTED api_key]", ["api_key"]),
        ("api_key=sk_live_4eC39HqLyjWDarjtT1zdp7dc", "api_key=[REDACTED api_key]", ["api_key"]),
        (f"session {JWT} expired", "session [REDACTED token] expired", ["token"]),
        (f"key:\n{PEM}\nthanks", "key:\n[REDACTED private_key]\nthanks", ["private_key"]),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n\nThanks!",
            "[REDACTED private_key]\n\nThanks!",
            ["private_key"],
        ),
        (
            "the secret is 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "the secret is [REDACTED api_key]",
            ["api_key"],
        ),
        (
            "reset https://app.example.com/reset?token=abc123def456&user=1",
            "reset https://app.example.com/reset?token=[REDACTED token]&user=1",
            ["token"],
        ),
        ("token: 550e8400-e29b-41d4-a716-446655440000", "token: [REDACTED token]", ["token"]),
        ("card 4111 1111 1111 1111 exp 12/27", "card [REDACTED card_number] exp 12/27", ["card_number"]),
        ("card 4111-1111-1111-1111", "card [REDACTED card_number]", ["card_number"]),
        ("charged 5500005555555559 twice", "charged [REDACTED card_number] twice", ["card_number"]),
        ("amex 3782 822463 10005", "amex [REDACTED card_number]", ["card_number"]),
        (
            "password: hunter2, card 4111111111111111, token: ghp_16C7e42F292c6912E7710c838347Ae178B4a",
            "password: [REDACTED password], card [REDACTED card_number], token: [REDACTED token]",
            ["password", "card_number", "token"],
        ),
    ],
)
def test_redacts_secrets(text: str, expected: str, kinds: list[str]) -> None:
    assert redact(text) == (expected, kinds)


ORDINARY = [
    "I forgot my password and the reset password link doesn't work",
    "Password reset emails are not arriving",
    "The password is incorrect, says the login page",
    "My password is not being accepted since the upgrade",
    "password is case-sensitive, right?",
    "Password:\nThe customer cannot log in after the SSO change",
    "Password: ********",
    "2FA reset requested; SSO token expired; please resend the token",
    "Bearer tokens expire after an hour",
    "The token endpoint returns 500 errors",
    "access key: granted to the admin role",
    "API key rotation is on our roadmap",
    "Ticket #48213, ZD-1234 and JIRA-987 are related",
    "Seen on 2024-03-15T10:22:31Z and 15/03/2024, version 2.14.3 (build 20240315.7)",
    "Order #4111111111111111 was shipped",
    "Order number: 4012888888881881",
    "order 1234567890123 and invoice 98765432101234",
    "Call me on +1 415 555 2671 or 415-555-2671 or +44 20 7946 0958",
    "Phone 4155552671, fax 4155552672",
    "Tracking 1Z999AA10123456784",
    "Request id 7f3a9c2e1b4d8f6a0e5c3b2a1d4f6e8c failed",
    "Fixed in commit 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b",
    "See https://acme.zendesk.com/agent/tickets/123?session=550e8400-e29b-41d4-a716-446655440000",
    "GET https://api.example.com/v2/keys/550e8400-e29b-41d4-a716-446655440000 returns 404",
    "Key 550E8400-E29B-41D4-A716-446655440000 is the tenant id",
    "Workspace 3f2504e0-4f89-11d3-9a0c-0305e82c3301 is affected",
    "The keyboard shortcut for export is Ctrl+Shift+E",
    "Error: secret store unavailable (code 503)",
    "Our publishable key pk_live_51H8xYzAbCdEfGhIj is in the widget",
    "Amounts: 1,234,567.89 USD and 4111.11 EUR",
    "IP 192.168.100.200 and port 8443",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_leaves_ordinary_support_text_alone(text: str) -> None:
    assert redact(text) == (text, [])


def test_reports_each_kind_once_in_order_of_appearance() -> None:
    _, kinds = redact("card 4111111111111111; password: a1b2c3; card 5500005555555559; pwd=x9y8")
    assert kinds == ["card_number", "password"]


def test_keeps_the_surrounding_text() -> None:
    text = "Hi team,\nlogin fails with password: Tr0ub4dor&3 since Monday.\nThanks, Ana"
    assert redact(text) == (
        "Hi team,\nlogin fails with password: [REDACTED password] since Monday.\nThanks, Ana",
        ["password"],
    )


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_redaction_is_idempotent_and_never_grows_a_secret(text: str) -> None:
    once, kinds = redact(text)
    assert redact(once) == (once, [])
    assert len(kinds) == len(set(kinds))
