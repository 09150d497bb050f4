"""Facts derived once per evaluation and shared by the triggers, holds, severity, impact and package."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cached_property

from rules.adapters.coerce import day, number
from rules.case import Case, Organization, SlaStage, Ticket
from rules.phrases import PhraseHit, PhraseMatcher
from rules.ruleset import Ruleset
from rules.similarity import SymptomMatcher


class SlaPosition(StrEnum):
    COMPLIANT = "compliant"
    AT_RISK = "at_risk"
    BREACHED = "breached"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Related:
    """A history ticket with the same symptom as the case's ticket."""

    ticket: Ticket
    score: float

    @property
    def reporter(self) -> str:
        """Who reported it independently: the organization, or the requester where there is none."""
        return (
            f"org:{self.ticket.organization_id}"
            if self.ticket.organization_id
            else (f"user:{self.ticket.requester_id}")
        )


class Facts:
    def __init__(self, case: Case, rules: Ruleset, matcher: SymptomMatcher):
        self.case = case
        self.rules = rules
        self.matcher = matcher
        self.ticket = case.ticket
        self.now = case.now

    # --- text -------------------------------------------------------------------------------------
    @cached_property
    def customer_text(self) -> str:
        return self.case.customer_text()

    @cached_property
    def all_text(self) -> str:
        return self.case.all_text()

    def find(self, phrases: PhraseMatcher, text: str | None = None) -> list[PhraseHit]:
        return phrases.find(self.all_text if text is None else text, self.rules.phrases.negation)

    # --- organizations ----------------------------------------------------------------------------
    @property
    def organization(self) -> Organization | None:
        return self.case.organization

    def arr(self, org: Organization | None) -> float | None:
        return number(org.fields.get(self.rules.fields.organization.arr)) if org else None

    def pipeline_arr(self, org: Organization | None) -> float | None:
        return number(org.fields.get(self.rules.fields.organization.pipeline_arr)) if org else None

    def sla_tier(self, org: Organization | None) -> str | None:
        value = org.fields.get(self.rules.fields.organization.sla_tier) if org else None
        return str(value) if value not in (None, "") else None

    def renewal_date(self, org: Organization | None) -> str | None:
        value = day(org.fields.get(self.rules.fields.organization.renewal_date)) if org else None
        return value.isoformat() if value else None

    def org_name(self, org_id: str | None) -> str:
        org = self.case.organizations.get(org_id) if org_id else None
        return (org.name if org and org.name else None) or (
            f"organization {org_id}" if org_id else "no organization"
        )

    def has_tag(self, org: Organization | None, tags: list[str]) -> bool:
        return bool(org and org.tags & {t.lower() for t in tags})

    @cached_property
    def is_high_value(self) -> bool:
        arr = self.arr(self.organization)
        return arr is not None and arr >= self.rules.thresholds.high_value_arr

    # --- SLA --------------------------------------------------------------------------------------
    @cached_property
    def active_breaches(self) -> list[datetime]:
        return sorted(
            m.breach_at for m in self.ticket.sla_metrics if m.stage is SlaStage.ACTIVE and m.breach_at
        )

    @cached_property
    def sla_position(self) -> SlaPosition:
        """POLICY §4: breached when an active metric's breach_at has passed; at risk within 2 hours."""
        if not self.active_breaches:
            return SlaPosition.UNKNOWN if not self.ticket.sla_metrics else SlaPosition.COMPLIANT
        earliest = self.active_breaches[0]
        if earliest < self.now:
            return SlaPosition.BREACHED
        if earliest - self.now <= timedelta(hours=self.rules.thresholds.sla_at_risk_hours):
            return SlaPosition.AT_RISK
        return SlaPosition.COMPLIANT

    # --- same symptom -----------------------------------------------------------------------------
    def _product_area(self, ticket: Ticket) -> str | None:
        field_id = self.rules.fields.ticket.product_area
        value = ticket.custom_fields.get(field_id) if field_id else None
        return str(value).lower() if value not in (None, "") else None

    def _in_window(self, ticket: Ticket, days: float) -> bool:
        created = ticket.created_at
        return created is None or created >= self.now - timedelta(days=days)

    @cached_property
    def related_all_time(self) -> list[Related]:
        """Every history ticket reporting the same symptom, best match first.

        Tickets in different product areas (where both name one) are never the same symptom.
        """
        area = self._product_area(self.ticket)
        candidates = [
            t for t in self.case.history if t.text and (area is None or self._product_area(t) in (None, area))
        ]
        if not candidates or not self.ticket.text:
            return []
        found = self.matcher.matches(self.ticket.text, [t.text for t in candidates])
        return [Related(candidates[i], score) for i, score in found]

    @cached_property
    def related(self) -> list[Related]:
        """Same-symptom tickets within the lookback window (the default 14 days)."""
        days = self.rules.thresholds.lookback_days
        return [r for r in self.related_all_time if self._in_window(r.ticket, days)]

    def reporters(self, related: list[Related]) -> set[str]:
        """Independent reporters of the symptom, this ticket included."""
        own = Related(self.ticket, 1.0).reporter
        return {own, *(r.reporter for r in related)}

    def affected_org_ids(self) -> list[str]:
        ids = [self.ticket.organization_id] + [r.ticket.organization_id for r in self.related]
        return list(dict.fromkeys(i for i in ids if i))

    def within_hours(self, related: list[Related], hours: float) -> list[Related]:
        cutoff = self.now - timedelta(hours=hours)
        return [r for r in related if r.ticket.created_at is not None and r.ticket.created_at >= cutoff]

    # --- activity ---------------------------------------------------------------------------------
    @cached_property
    def public_agent_replies(self) -> list:
        return [c for c in self.case.comments if c.public and self.case.is_staff_comment(c)]

    @cached_property
    def is_defect(self) -> bool:
        """Looks like something broken rather than a request or a question."""
        if self.rules.enabled("confirmed_defect") and self.confirmed_defect_reason:
            return True
        if self.find(self.rules.phrases.feature_request) or self.ticket.tags & set(
            self.rules.tags.feature_request
        ):
            return bool(self.find(self.rules.phrases.defect, self.customer_text))
        return self.ticket.type in ("problem", "incident") or bool(
            self.find(self.rules.phrases.defect, self.customer_text)
        )

    @cached_property
    def confirmed_defect_reason(self) -> str | None:
        tags = self.ticket.tags & {t.lower() for t in self.rules.tags.bug_confirmed}
        if tags:
            return f"tag {sorted(tags)[0]}"
        field_id = self.rules.fields.ticket.bug_confirmed
        value = self.ticket.custom_fields.get(field_id) if field_id else None
        if value is True or (isinstance(value, str) and value.lower() in ("true", "yes", "1", "confirmed")):
            return f"custom field {field_id} set"
        return None
