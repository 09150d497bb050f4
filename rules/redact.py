"""Secrets out of ticket text before it leaves the helpdesk (POLICY.md §6).

``redact(text)`` replaces passwords, API keys and tokens, private keys and card numbers with
``[REDACTED <kind>]`` and says which kinds it found. It is tuned against false positives on ordinary support
text: a bare word such as "password" or "token" is never enough; a secret needs a recognisable shape (a
vendor prefix, a JWT, a PEM block, a Luhn-valid card number in a card's number range), a key-ish word
*followed by a value* (``password: …``, ``api_key=…``), or a long random-looking string right after such a
word. UUIDs, ticket ids, dates and version numbers are left alone unless they are the value of a key.

Pure: no imports from connector or worker, no I/O.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

PASSWORD = "password"
API_KEY = "api_key"
TOKEN = "token"
PRIVATE_KEY = "private_key"
CARD_NUMBER = "card_number"


@dataclass(frozen=True)
class Finding:
    start: int
    end: int
    kind: str


def redact(text: str) -> tuple[str, list[str]]:
    """``text`` with every secret found replaced by ``[REDACTED kind]``, and the kinds, in order of first
    appearance."""
    accepted: list[Finding] = []  # kept sorted by start, never overlapping
    # Detectors run most specific first; a later finding overlapping an accepted one is dropped, so an
    # ``api_key=sk_live_…`` is reported once, as what its shape says it is.
    for detector in DETECTORS:
        for finding in detector(text):
            if finding.end > finding.start:
                _accept(accepted, finding)
    out, last = [], 0
    for finding in accepted:
        out.append(text[last : finding.start])
        out.append(f"[REDACTED {finding.kind}]")
        last = finding.end
    out.append(text[last:])
    return "".join(out), list(dict.fromkeys(f.kind for f in accepted))


def _accept(accepted: list[Finding], finding: Finding) -> None:
    i = bisect.bisect_left(accepted, finding.start, key=lambda f: f.start)
    before_clear = i == 0 or accepted[i - 1].end <= finding.start
    after_clear = i == len(accepted) or finding.end <= accepted[i].start
    if before_clear and after_clear:
        accepted.insert(i, finding)


# --- shapes that are secrets wherever they appear ---------------------------------------------------------

_PEM = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
    # Without its END line (pasted in part), the block runs over base64 and header lines only.
    r"(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
    r"|(?:\s*[A-Za-z0-9+/=]{16,}|\s*[A-Za-z-]+:[^\n]*)*)",
    re.DOTALL,
)
# Credentials in a URL's userinfo: scheme://user:password@host.
_URL_PASSWORD = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:([^/\s@]+)@")
# A JWT: base64url JSON header and payload (both start ``{"`` = ``eyJ``), then a signature.
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # AWS access key ids (long-term AKIA, temporary ASIA).
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), API_KEY),
    # Stripe secret and restricted keys; publishable ``pk_`` keys are public by design.
    (re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}\b"), API_KEY),
    # GitHub tokens: classic (ghp, gho, ghu, ghs, ghr) and fine-grained.
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"), TOKEN),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{40,}\b"), TOKEN),
    # Slack tokens (xoxb, xoxp, xoxa, xoxr, xoxs, xoxe) and incoming-webhook URLs.
    (re.compile(r"\bxox[abeoprs]-[A-Za-z0-9-]{10,}"), TOKEN),
    (re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+"), TOKEN),
    # Google API keys.
    (re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"), API_KEY),
)
_BEARER = re.compile(r"\bBearer\s+([A-Za-z0-9._~+/-]*[0-9][A-Za-z0-9._~+/-]*=*)", re.IGNORECASE)
_BASIC = re.compile(r"\bAuthorization:\s*Basic\s+([A-Za-z0-9+/]{8,}={0,2})", re.IGNORECASE)


def _pem(text: str) -> Iterator[Finding]:
    for m in _PEM.finditer(text):
        yield Finding(m.start(), m.end(), PRIVATE_KEY)


def _url_password(text: str) -> Iterator[Finding]:
    for m in _URL_PASSWORD.finditer(text):
        yield Finding(m.start(1), m.end(1), PASSWORD)


def _jwt(text: str) -> Iterator[Finding]:
    for m in _JWT.finditer(text):
        yield Finding(m.start(), m.end(), TOKEN)


def _shapes(text: str) -> Iterator[Finding]:
    for pattern, kind in _SHAPES:
        for m in pattern.finditer(text):
            yield Finding(m.start(), m.end(), kind)


def _auth_headers(text: str) -> Iterator[Finding]:
    for m in _BEARER.finditer(text):
        # Real bearer tokens are long and hold digits; "Bearer tokens expire" holds neither.
        if len(m.group(1)) >= 16:
            yield Finding(m.start(1), m.end(1), TOKEN)
    for m in _BASIC.finditer(text):
        yield Finding(m.start(1), m.end(1), PASSWORD)


# --- key-ish words followed by a value --------------------------------------------------------------------

# The kind named in our own placeholder is not a key: redacting twice changes nothing.
_NOT_OURS = r"(?<!\[REDACTED )"
# Not preceded by a letter, so ``db_password`` and ``DB_PASSWORD`` count but ``mypassword`` does not.
_KEY_WORDS: tuple[tuple[str, str], ...] = (
    (PASSWORD, r"pass(?:word|wd|wort|code|phrase)|pwd|pw"),
    (
        API_KEY,
        r"api[ _-]?key|x-api-key|api[ _-]?secret|secret[ _-]?access[ _-]?key|access[ _-]?key(?:[ _-]?id)?"
        r"|secret[ _-]?key|client[ _-]?secret|app[ _-]?secret|private[ _-]?key|consumer[ _-]?secret",
    ),
    (
        TOKEN,
        r"(?:access|auth|refresh|session|id|bearer|api|csrf|reset|personal[ _-]access)?[ _-]?token"
        r"|secret",
    ),
)
# ``key: value``, ``key=value``, ``"key": "value"``; the value may sit alone on the next line.
_VALUE = (
    r"""(?:"(?P<dq>[^"\n]{1,200})"|'(?P<sq>[^'\n]{1,200})'"""
    # Unquoted: up to a space or a delimiter; ``&`` only ends it before another ``key=`` (a query string).
    r"""|(?P<bare>(?:[^\s,;'"<>&]|&(?!\w+=)){1,200}))"""
)
_SEPARATOR = r"""["']?[ \t]*(?::|=|=>)[ \t]*(?P<nl>\n[ \t]*)?"""
_KEY_VALUE = [
    (kind, re.compile(rf"(?<![A-Za-z]){_NOT_OURS}(?:{words}){_SEPARATOR}{_VALUE}", re.IGNORECASE))
    for kind, words in _KEY_WORDS
]
# "my password is hunter2": weaker evidence, so the value must look like a password.
_PASSWORD_IS = re.compile(
    rf"(?<![A-Za-z]){_NOT_OURS}pass(?:word|code|phrase)\s+(?:is|was|would be|will be|should be|=)\s+"
    rf"(?:(?:now|still|just)\s+)?{_VALUE}",
    re.IGNORECASE,
)
# Values that are words of a sentence, masks or placeholders, not secrets.
_SENTENCE_WORDS = """
    a an the this that it its is was be been being are were not no none null nil n/a na unknown empty blank
    yes true false ok set unset required optional missing invalid incorrect wrong correct expired reset
    changed updated removed hidden redacted masked sent field prompt policy protected manager page link
    screen form box dialog i we you he she they my our your their his her me us them
"""
_NOT_A_VALUE = frozenset(_SENTENCE_WORDS.split())
_MASK = re.compile(r"^[*•x.#-]+$", re.IGNORECASE)
_SENTENCE_END = ".,;:!?"
_CLOSING = {")": "(", "]": "[", "}": "{"}


def _key_values(text: str) -> Iterator[Finding]:
    for kind, pattern in _KEY_VALUE:
        for m in pattern.finditer(text):
            finding = _value_finding(m, kind, strict=False)
            if finding:
                yield finding
    for m in _PASSWORD_IS.finditer(text):
        finding = _value_finding(m, PASSWORD, strict=True)
        if finding:
            yield finding


def _value_finding(m: re.Match[str], kind: str, strict: bool) -> Finding | None:
    group = next(g for g in ("dq", "sq", "bare") if m.group(g) is not None)
    start, end = m.start(group), m.end(group)
    value = m.group(group)
    if group == "bare":
        # "(password: hunter2)": the bracket closes the sentence's bracket, not the password.
        while value and value[-1] in _CLOSING and value.count(_CLOSING[value[-1]]) < value.count(value[-1]):
            value, end = value[:-1], end - 1
    if m.groupdict().get("nl") and m.string[end:].split("\n", 1)[0].strip():
        # "Password:" ending a line, then a sentence: the next line is prose, not the password.
        return None
    # Judge the value without sentence punctuation ("is wrong." is a word), but redact that punctuation
    # with it: a password may end in "!" or ".", and one leaked character is one too many.
    core = value.rstrip(_SENTENCE_END) if group == "bare" else value
    # A separator is strong evidence for a password; keys and tokens must still look generated.
    if not _is_value(core, quoted=group != "bare", strict=strict or kind != PASSWORD):
        return None
    return Finding(start, end, kind)


def _is_value(value: str, quoted: bool, strict: bool) -> bool:
    if not value.strip() or _MASK.match(value) or "[REDACTED" in value:
        return False
    if value.lower() in _NOT_A_VALUE:
        return False
    # A link after "reset password:" is the reset page; a token in its query is caught by its own key.
    if value.lower().startswith(("http://", "https://")):
        return False
    if strict and not quoted:
        return len(value) >= 4 and _looks_generated(value)
    return True


def _looks_generated(value: str) -> bool:
    """A word in a sentence has no digit, no symbol and no inner capital; passwords usually have one."""
    if any(c.isdigit() for c in value):
        return True
    if any(not c.isalnum() and c not in "-'" for c in value):
        return True
    return any(c.isupper() for c in value[1:]) and any(c.islower() for c in value)


# --- long random strings near a key-ish word ---------------------------------------------------------------

# "here is the key 9f86d08188…" — no separator, so the value must be long and random-looking, and
# within a few words of the key word.
_KEY_WORD = re.compile(
    rf"(?<![A-Za-z]){_NOT_OURS}(?:api[ _-]?key|key|secret|token|credentials?|password|signature)s?\b",
    re.IGNORECASE,
)
_NEAR = 30
# The next long token on the same line, at most _NEAR characters on (checked against the key word's end).
_NEXT_CANDIDATE = re.compile(rf"[^\n]{{0,{_NEAR}}}?(?<![A-Za-z0-9+/_=-])([A-Za-z0-9+/_=-]{{20,}})")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_HEX = re.compile(r"^[0-9a-fA-F]+$")


def _near_key(text: str) -> Iterator[Finding]:
    for key in _KEY_WORD.finditer(text):
        pos = key.end()
        while (m := _NEXT_CANDIDATE.match(text, pos)) and m.start(1) - key.end() <= _NEAR:
            if _random_looking(m.group(1)):
                yield Finding(m.start(1), m.end(1), API_KEY)
                break
            pos = m.end(1)


def _random_looking(value: str) -> bool:
    # A UUID names a thing (an order, a request, a page); it is only a secret as the value of a key.
    # Stripe publishable keys are public by design; paths are not keys.
    if _UUID.match(value) or value.startswith(("pk_live_", "pk_test_")) or value.count("/") > 2:
        return False
    if _HEX.match(value):
        return len(value) >= 32 and _entropy(value) >= 3.0 and _has_letters_and_digits(value)
    classes = sum(
        (any(c.islower() for c in value), any(c.isupper() for c in value), any(c.isdigit() for c in value))
    )
    return len(value) >= 24 and classes == 3 and _entropy(value) >= 4.0


def _has_letters_and_digits(value: str) -> bool:
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


def _entropy(value: str) -> float:
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


# --- card numbers -----------------------------------------------------------------------------------------

# 13–19 digits, optionally grouped by single spaces or dashes; not part of a longer number, a decimal, a
# phone number (+…), a "#123…" reference or a path.
_CARD = re.compile(r"(?<![\d.+/\-#])(?:\d[ -]?){12,18}\d(?![\d.]|-\d)")
# "order #4111…", "invoice number: …": a number that is introduced as something else is not a card.
# ("account" is not in the list: "card on account: 4111…" is a card.)
_INTRODUCED = re.compile(
    r"(?:order|invoice|ticket|case|tracking|reference|ref|po|serial)\s*"
    r"(?:no\.?|number|num|nr|id|#)?\s*[:#]?\s*$",
    re.IGNORECASE,
)


def _cards(text: str) -> Iterator[Finding]:
    for m in _CARD.finditer(text):
        raw = m.group(0)
        if _card_shaped(raw) and not _INTRODUCED.search(text[max(0, m.start() - 30) : m.start()]):
            yield Finding(m.start(), m.end(), CARD_NUMBER)


def _card_shaped(raw: str) -> bool:
    digits = re.sub(r"[ -]", "", raw)
    separators = set(re.sub(r"\d", "", raw))
    if len(separators) > 1:
        return False
    groups = re.split(r"[ -]", raw)
    # Printed cards group by four (Amex 4-6-5, Diners 4-6-4); a phone or order number seldom does.
    if len(groups) > 1 and (len(groups[0]) != 4 or not all(3 <= len(g) <= 6 for g in groups[1:])):
        return False
    return 13 <= len(digits) <= 19 and _issuer_plausible(digits) and _luhn_ok(digits)


def _issuer_plausible(digits: str) -> bool:
    """Major networks' number ranges (ISO/IEC 7812 issuer prefixes) with their lengths."""
    n, two, four = len(digits), int(digits[:2]), int(digits[:4])
    return (
        (digits[0] == "4" and n in (13, 16, 19))
        or (51 <= two <= 55 and n == 16)
        or (2221 <= four <= 2720 and n == 16)
        or (two in (34, 37) and n == 15)
        or (two in (30, 36, 38, 39) and 14 <= n <= 19)
        or (two == 35 and 16 <= n <= 19)
        or (digits[0] == "6" and 16 <= n <= 19)
        or (two in (50, 56, 57, 58) and 13 <= n <= 19)
    )


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = int(char)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


DETECTORS: tuple[Callable[[str], Iterator[Finding]], ...] = (
    _pem,
    _url_password,
    _jwt,
    _shapes,
    _auth_headers,
    _key_values,
    _near_key,
    _cards,
)
