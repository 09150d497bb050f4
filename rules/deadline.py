"""POLICY.md §6: the hard deadline of a request, by severity, unless an SLA breach comes sooner."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from rules.ruleset import Deadlines, Severity


def _end_of_day(moment: datetime, hour: int) -> datetime:
    if hour == 24:
        return moment.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return moment.replace(hour=hour, minute=0, second=0, microsecond=0)


def add_business_days(moment: datetime, days: int) -> datetime:
    current = moment
    while days > 0:
        current += timedelta(days=1)
        if current.weekday() < 5:
            days -= 1
    return current


def hard_deadline(
    severity: Severity, now: datetime, rules: Deadlines, sla_breach_at: datetime | None = None
) -> tuple[datetime, str]:
    """The deadline and what set it."""
    local = now.astimezone(ZoneInfo(rules.timezone))
    if severity is Severity.CRITICAL:
        deadline, why = (
            now + timedelta(hours=rules.critical_hours),
            f"critical: {rules.critical_hours:g} hours",
        )
    elif severity is Severity.HIGH:
        deadline = _end_of_day(add_business_days(local, 1), rules.business_day_end_hour)
        why = "high: end of the next business day"
    else:
        deadline = _end_of_day(
            add_business_days(local, rules.medium_business_days), rules.business_day_end_hour
        )
        why = f"medium: {rules.medium_business_days} business days"
    # An already-passed breach cannot be a deadline; the severity's own deadline stands then.
    if sla_breach_at is not None and now < sla_breach_at < deadline:
        return sla_breach_at, "the SLA breach comes sooner"
    return deadline, why
