"""Forgiving conversions for helpdesk payloads: odd values become None, never an exception."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any


def text_id(value: Any) -> str | None:
    """Ids arrive as ints or strings ("123"); both become "123". Blank, bool or nested become None."""
    if value is None or isinstance(value, bool | dict | list):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def lower(value: Any) -> str | None:
    return value.strip().lower() or None if isinstance(value, str) else None


def timestamp(value: Any) -> datetime | None:
    """An ISO-8601 time as an aware UTC datetime; a naive time is taken as UTC."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str) and value.strip():
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def day(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    stamp = timestamp(value)
    return stamp.date() if stamp else None


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def number(value: Any) -> float | None:
    """ARR and the like: 120000, "120000", "$120,000", "120k" → 120000.0; anything else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return None
    cleaned = value.strip().lower().replace(",", "").replace("$", "").replace("usd", "").strip()
    multiplier = 1.0
    if cleaned.endswith("k"):
        multiplier, cleaned = 1_000.0, cleaned[:-1]
    elif cleaned.endswith("m"):
        multiplier, cleaned = 1_000_000.0, cleaned[:-1]
    match = _NUMBER.fullmatch(cleaned.strip())
    return float(match.group()) * multiplier if match else None


def mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def sequence(value: Any) -> list:
    return value if isinstance(value, list) else []


def strings(value: Any) -> frozenset[str]:
    return frozenset(v.strip().lower() for v in sequence(value) if isinstance(v, str) and v.strip())
