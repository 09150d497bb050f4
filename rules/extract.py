"""Lift what a customer or agent already wrote out of free text: reproduction steps, expected and observed
outcomes, the environment, and short summaries of a comment."""

from __future__ import annotations

import re
from dataclasses import dataclass

_STEPS_HEADER = re.compile(
    r"^\s*(steps?\s+to\s+reproduce|to\s+reproduce|repro(duction)?\s+steps|how\s+to\s+reproduce|steps)\s*:?\s*$",
    re.IGNORECASE,
)
_STEP = re.compile(r"^\s*(?:\d{1,2}[.)]|[-*•]|step\s+\d{1,2}\s*[:.)-])\s+(.+?)\s*$", re.IGNORECASE)
_NUMBERED = re.compile(r"^\s*(?:\d{1,2}[.)]|step\s+\d{1,2}\s*[:.)-])\s+(.+?)\s*$", re.IGNORECASE)
_EXPECTED = re.compile(r"^\s*expected(?:\s+(?:result|outcome|behaviou?r))?\s*[:\-–]\s*(.+)$", re.IGNORECASE)
_OBSERVED = re.compile(
    r"^\s*(?:actual|observed|instead|what\s+happens)(?:\s+(?:result|outcome|behaviou?r))?\s*[:\-–]\s*(.+)$",
    re.IGNORECASE,
)
_ENV_KEYS = (
    "environment|browser|os|operating system|platform|device|app version|version|build|plan|plan tier|"
    "region|feature flags?|deployment|database|integration"
)
_ENVIRONMENT = re.compile(rf"^\s*({_ENV_KEYS})\s*[:=]\s*(.+)$", re.IGNORECASE)
_ENV_LABELS = {
    "os": "OS",
    "operating system": "OS",
    "app version": "App version",
    "feature flags": "Feature flags",
}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_QUOTED_REPLY = re.compile(r"^\s*(>|On .+ wrote:\s*$)", re.IGNORECASE)


@dataclass(frozen=True)
class Reproduction:
    steps: tuple[str, ...]
    expected: str | None
    observed: str | None
    environment: tuple[tuple[str, str], ...]


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if not _QUOTED_REPLY.match(line)]


def steps(text: str) -> list[str]:
    """Steps under a "Steps to reproduce" header, else the first run of 2+ numbered lines."""
    lines = _lines(text)
    for i, line in enumerate(lines):
        if _STEPS_HEADER.match(line):
            found = _run(lines[i + 1 :], _STEP)
            if found:
                return found
    for i in range(len(lines)):
        found = _run(lines[i:], _NUMBERED)
        if len(found) >= 2:
            return found
    return []


def _run(lines: list[str], pattern: re.Pattern[str]) -> list[str]:
    found: list[str] = []
    for line in lines:
        if not line.strip():
            if found:
                break
            continue
        m = pattern.match(line)
        if not m:
            break
        found.append(m.group(1))
    return found


def first_match(pattern: re.Pattern[str], text: str) -> str | None:
    for line in _lines(text):
        m = pattern.match(line)
        if m:
            return m.group(m.lastindex or 1).strip()
    return None


def environment(text: str) -> list[tuple[str, str]]:
    found: dict[str, str] = {}
    for line in _lines(text):
        m = _ENVIRONMENT.match(line)
        if m and m.group(1).lower() not in found:
            found[m.group(1).lower()] = m.group(2).strip()
    return [(_ENV_LABELS.get(k, k.capitalize()), v) for k, v in found.items()]


def reproduction(texts: list[str]) -> Reproduction:
    """Reproduction details from the first text that has each part (ticket description first)."""
    found_steps: list[str] = []
    expected = observed = None
    env: dict[str, str] = {}
    for text in texts:
        found_steps = found_steps or steps(text)
        expected = expected or first_match(_EXPECTED, text)
        observed = observed or first_match(_OBSERVED, text)
        for key, value in environment(text):
            env.setdefault(key, value)
    return Reproduction(tuple(found_steps), expected, observed, tuple(env.items()))


_PLEASANTRY = re.compile(
    r"^(hi|hello|hey|dear|thanks|thank you|many thanks|sorry|apologies|good (morning|afternoon|evening))\b",
    re.IGNORECASE,
)


def gist(text: str, limit: int = 200) -> str:
    """The first sentence that says something (greetings and thanks skipped), trimmed for a list item."""
    parts = _sentence_list(text)
    sentence = next((p for p in parts if not _PLEASANTRY.match(p) or len(p) > 80), parts[0] if parts else "")
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"


def rest(text: str, after: str, limit: int = 200) -> str:
    """What a comment says after its gist: the outcome an agent wrote down with the action."""
    parts = _sentence_list(text)
    tail = parts[parts.index(after) + 1 :] if after in parts else []
    sentence = " ".join(tail[:2])
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"


def _sentence_list(text: str) -> list[str]:
    flat = " ".join(line.strip() for line in _lines(text) if line.strip())
    return [p for p in _SENTENCE_END.split(flat) if p]


def sentences(text: str, count: int) -> str:
    flat = " ".join(line.strip() for line in _lines(text) if line.strip())
    parts = _SENTENCE_END.split(flat)
    return " ".join(parts[:count]).strip()
