"""The ruleset: every number, phrase list and destination target the rules use, loaded from YAML.

The vocabulary (which keys exist, which trigger and hold ids there are, which destinations) is defined
here in code; the values live in the rules file. A bad file fails at load with the file, the line and the
field, never later on a webhook.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rules.phrases import PhraseSet

DEFAULT_RULES_PATH = Path(__file__).with_name("default_rules.yaml")


class Destination(StrEnum):
    SECURITY = "security"
    ENGINEERING = "engineering"
    LEADERSHIP = "leadership"
    PRODUCT = "product"
    SUPPORT_L2 = "support_l2"


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"


class Family(StrEnum):
    TECHNICAL_BARRIER = "technical_barrier"
    DIAGNOSTIC_CEILING = "diagnostic_ceiling"
    WIDESPREAD_HARM = "widespread_harm"
    SECURITY = "security"
    BUSINESS_STAKES = "business_stakes"
    STALLED_PROGRESS = "stalled_progress"
    RECURRING_PATTERN = "recurring_pattern"


# Every trigger the engine knows, with its family and whether it is hard (overrides hold reasons).
TRIGGERS: dict[str, tuple[Family, bool]] = {
    "confirmed_defect": (Family.TECHNICAL_BARRIER, False),
    "data_loss": (Family.TECHNICAL_BARRIER, True),
    "custom_deployment": (Family.DIAGNOSTIC_CEILING, False),
    "needs_deep_access": (Family.DIAGNOSTIC_CEILING, False),
    "multi_org_same_symptom": (Family.WIDESPREAD_HARM, False),
    "outage": (Family.WIDESPREAD_HARM, True),
    "security_threat": (Family.SECURITY, True),
    "churn_risk": (Family.BUSINESS_STAKES, False),
    "sla_risk_strategic": (Family.BUSINESS_STAKES, False),
    "leadership_requested": (Family.BUSINESS_STAKES, False),
    "legal_threat": (Family.BUSINESS_STAKES, False),
    "public_exposure": (Family.BUSINESS_STAKES, False),
    "sla_breached": (Family.STALLED_PROGRESS, False),
    "open_too_long": (Family.STALLED_PROGRESS, False),
    "troubleshooting_stalled": (Family.STALLED_PROGRESS, False),
    "repeated_reports": (Family.RECURRING_PATTERN, False),
    "resurfaced": (Family.RECURRING_PATTERN, False),
    "severity_rising": (Family.RECURRING_PATTERN, False),
}

HOLD_REASONS = (
    "documented_fix",
    "configuration_error",
    "coaching",
    "documented_limitation",
    "resolved_at_support_before",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OrganizationFields(_Strict):
    arr: str = "arr"
    pipeline_arr: str = "pipeline_arr"
    renewal_date: str = "renewal_date"
    sla_tier: str = "sla_tier"


class TicketFields(_Strict):
    # Custom field ids (as text) of the helpdesk; null where the desk has no such field.
    product_area: str | None = None
    bug_confirmed: str | None = None

    @field_validator("product_area", "bug_confirmed", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


class Fields(_Strict):
    organization: OrganizationFields = OrganizationFields()
    ticket: TicketFields = TicketFields()
    currency: str = "USD"


class Tags(_Strict):
    strategic: list[str] = ["strategic"]
    reference_account: list[str] = ["reference_account"]
    custom_deployment: list[str] = ["custom_deployment", "on_prem"]
    bug_confirmed: list[str] = ["bug_confirmed"]
    escalated: list[str] = ["escalated", "jira_escalated"]
    fixed: list[str] = ["fixed", "patched"]
    feature_request: list[str] = ["feature_request"]


class Thresholds(_Strict):
    high_value_arr: float = Field(100_000, ge=0)
    strategic_arr: float = Field(250_000, ge=0)
    sla_at_risk_hours: float = Field(2, gt=0)
    open_too_long_days: float = Field(7, gt=0)
    max_agent_replies: int = Field(5, ge=1)
    widespread_organizations: int = Field(2, ge=2)
    widespread_hours: float = Field(24, gt=0)
    recurring_reports: int = Field(3, ge=2)
    lookback_days: float = Field(14, gt=0)
    resolved_at_support_min: int = Field(3, ge=1)
    product_request_organizations: int = Field(3, ge=1)
    critical_high_value_organizations: int = Field(2, ge=1)


class Phrases(_Strict):
    """Phrase lists. A plain entry matches as words, case-insensitively; ``re:`` starts a regex."""

    data_loss: PhraseSet
    outage: PhraseSet
    security: PhraseSet
    security_active: PhraseSet
    churn: PhraseSet
    leadership_request: PhraseSet
    legal: PhraseSet
    public_exposure: PhraseSet
    howto: PhraseSet
    defect: PhraseSet
    deep_access: PhraseSet
    blocked: PhraseSet
    degraded: PhraseSet
    feature_request: PhraseSet
    negation: list[str] = ["no", "not", "without", "never", "isn't", "wasn't", "nothing", "zero"]


class CatalogKind(StrEnum):
    WORKAROUND = "workaround"
    CONFIGURATION = "configuration"
    LIMITATION = "limitation"


class CatalogEntry(_Strict):
    id: str
    kind: CatalogKind
    title: str
    phrases: PhraseSet
    article: str

    @field_validator("article")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("article must be an http(s) URL")
        return value


class JiraTarget(_Strict):
    project: str = Field(min_length=1)
    issue_type: str = Field(min_length=1)
    labels: list[str] = []
    security_level: str | None = None
    priority_by_severity: dict[Severity, str] = {}


class ZendeskTarget(_Strict):
    group_id: str | None = None

    @field_validator("group_id", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


class Target(_Strict):
    jira: JiraTarget | None = None
    zendesk: ZendeskTarget | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Target:
        if self.jira is None and self.zendesk is None:
            raise ValueError("a destination needs a jira or a zendesk target")
        return self


class AutoRule(_Strict):
    """An escalation matching every given key is created without waiting for an agent's click."""

    destination: Destination | None = None
    severity: Severity | None = None


class Deadlines(_Strict):
    critical_hours: float = Field(4, gt=0)
    # high: end of the next business day; medium: this many business days.
    medium_business_days: int = Field(5, ge=1)
    business_day_end_hour: int = Field(17, ge=1, le=24)
    timezone: str = "UTC"


class Cadence(_Strict):
    check_in_hours: float = Field(gt=0)
    customer_update_hours: tuple[float, float]


class Similarity(_Strict):
    matcher: Literal["auto", "semantic", "lexical"] = "auto"
    semantic_threshold: float | None = Field(None, gt=0, lt=1)
    lexical_threshold: float | None = Field(None, gt=0, lt=1)


class Grouping(_Strict):
    """Escalations to these destinations gather every ticket reporting the same symptom (one problem, one
    issue); the others (an account's churn risk, a security report) stay one ticket each."""

    destinations: list[Destination] = [Destination.ENGINEERING, Destination.PRODUCT]


class RegressionAction(StrEnum):
    REOPEN = "reopen"  # transition the resolved issue back and gather the new report under it
    NEW_LINKED = "new_linked"  # open a new issue, linked to the resolved one


class Regressions(_Strict):
    """The same symptom as a resolved escalation: a regression."""

    action: RegressionAction = RegressionAction.REOPEN
    # How long after its resolution an escalation's symptom still counts as "fixed".
    lookback_days: float = Field(180, gt=0)


class Ruleset(_Strict):
    version: str
    fields: Fields = Fields()
    tags: Tags = Tags()
    thresholds: Thresholds = Thresholds()
    phrases: Phrases
    catalog: list[CatalogEntry] = []
    destinations: dict[Destination, Target]
    automatic: list[AutoRule] = []
    disabled_triggers: list[str] = []
    deadlines: Deadlines = Deadlines()
    follow_through: dict[Severity, Cadence]
    similarity: Similarity = Similarity()
    support_comment_prefix: str = "[support]"
    grouping: Grouping = Grouping()
    regressions: Regressions = Regressions()

    @field_validator("disabled_triggers")
    @classmethod
    def _known_triggers(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(TRIGGERS))
        if unknown:
            raise ValueError(f"unknown trigger id(s) {unknown}; known: {sorted(TRIGGERS)}")
        return value

    @field_validator("catalog")
    @classmethod
    def _unique_ids(cls, value: list[CatalogEntry]) -> list[CatalogEntry]:
        ids = [e.id for e in value]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate catalog id(s) {dupes}")
        return value

    @model_validator(mode="after")
    def _every_destination_has_a_target(self) -> Ruleset:
        missing = [d.value for d in Destination if d not in self.destinations]
        if missing:
            raise ValueError(f"destinations lacks a target for {missing}")
        missing_cadence = [s.value for s in Severity if s not in self.follow_through]
        if missing_cadence:
            raise ValueError(f"follow_through lacks a cadence for {missing_cadence}")
        return self

    def enabled(self, trigger_id: str) -> bool:
        return trigger_id not in self.disabled_triggers

    def is_automatic(self, destination: Destination, severity: Severity | None) -> bool:
        return any(
            (r.destination in (None, destination)) and (r.severity in (None, severity))
            for r in self.automatic
        )

    @cached_property
    def catalog_by_kind(self) -> dict[CatalogKind, list[CatalogEntry]]:
        grouped: dict[CatalogKind, list[CatalogEntry]] = {k: [] for k in CatalogKind}
        for entry in self.catalog:
            grouped[entry.kind].append(entry)
        return grouped


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the file, the line and the field."""


def load_ruleset(path: str | Path | None = None) -> Ruleset:
    path = Path(path) if path else DEFAULT_RULES_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{path}: cannot read rules file: {exc.strerror or exc}") from exc
    return parse_ruleset(text, source=str(path))


def parse_ruleset(text: str, source: str = "<rules>") -> Ruleset:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise RulesError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    if not isinstance(data, dict):
        raise RulesError(f"{source}:1: the rules file must be a mapping of sections")
    try:
        return Ruleset.model_validate(data)
    except ValidationError as exc:
        raise RulesError(_describe(exc, root, source)) from None


def _describe(exc: ValidationError, root: yaml.Node | None, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        entry = _ENTRY.search(err["msg"])
        if entry:  # a list validated as a whole names its bad entry in the message
            loc += (int(entry.group(1)),)
        field = ".".join(str(p) for p in loc) or "(top level)"
        line = _line_of(root, loc)
        lines.append(f"{source}:{line}: {field}: {err['msg']}")
    return "\n".join(lines)


_ENTRY = re.compile(r"\bentry (\d+):")


def _line_of(node: yaml.Node | None, loc: Sequence[Any]) -> int:
    """The 1-based line of the deepest YAML node that ``loc`` reaches."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        child = _child(node, part)
        if child is None:
            break
        node = child
        line = node.start_mark.line + 1
    return line


def _child(node: yaml.Node | None, part: Any) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if str(key.value) == str(part):
                return value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        return node.value[part]
    return None
