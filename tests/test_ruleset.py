"""The rules file: the shipped one is valid, and a bad one fails at load naming file, line and field."""

from __future__ import annotations

import pytest

from rules.ruleset import DEFAULT_RULES_PATH, TRIGGERS, Destination, RulesError, load_ruleset, parse_ruleset

SHIPPED = DEFAULT_RULES_PATH.read_text()


def broken(old: str, new: str) -> str:
    assert old in SHIPPED, old
    return SHIPPED.replace(old, new, 1)


def line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def test_shipped_ruleset_loads_and_targets_every_destination() -> None:
    rules = load_ruleset()
    assert set(rules.destinations) == set(Destination)
    assert rules.destinations[Destination.SECURITY].jira.security_level
    kinds = {e.kind.value for e in rules.catalog}
    assert kinds == {"workaround", "configuration", "limitation"}
    assert not set(rules.disabled_triggers) - set(TRIGGERS)


@pytest.mark.parametrize(
    ("old", "new", "field", "needle"),
    [
        (
            "  high_value_arr: 100000",
            "  high_value_arr: lots",
            "thresholds.high_value_arr",
            "high_value_arr: lots",
        ),
        (
            "  max_agent_replies: 5",
            "  max_agent_replys: 5",
            "thresholds.max_agent_replys",
            "max_agent_replys",
        ),
        (
            "    kind: limitation\n    title: Exports",
            "    kind: maybe\n    title: Exports",
            "catalog.4.kind",
            "kind: maybe",
        ),
        ('    - "re:\\\\b50[234] errors?\\\\b"', '    - "re:(unclosed"', "phrases.outage.7", "re:(unclosed"),
        (
            "disabled_triggers: []",
            "disabled_triggers: [no_such_trigger]",
            "disabled_triggers",
            "disabled_triggers: [no_such",
        ),
        (
            "article: https://help.example.com/hc/articles/1042",
            "article: ftp://help.example.com/1042",
            "catalog.0.article",
            "ftp://",
        ),
    ],
)
def test_bad_rules_name_file_line_and_field(old, new, field, needle) -> None:
    text = broken(old, new)
    with pytest.raises(RulesError) as err:
        parse_ruleset(text, source="custom.yaml")
    message = str(err.value)
    assert message.startswith(f"custom.yaml:{line_of(text, needle)}: {field}"), message


def test_missing_destination_is_refused() -> None:
    text = broken("  product:\n    jira: {project: PROD", "  productt:\n    jira: {project: PROD")
    with pytest.raises(RulesError, match=r"custom\.yaml:.*destinations"):
        parse_ruleset(text, source="custom.yaml")


def test_yaml_syntax_error_names_the_line() -> None:
    text = SHIPPED.replace("version:", "version: [", 1)
    with pytest.raises(RulesError, match=r"^custom\.yaml:\d+: not valid YAML"):
        parse_ruleset(text, source="custom.yaml")


def test_unreadable_file(tmp_path) -> None:
    with pytest.raises(RulesError, match="cannot read rules file"):
        load_ruleset(tmp_path / "nope.yaml")


def test_thresholds_are_data(tmp_path, lexical_matcher) -> None:
    """Raising the churn ARR line in the file changes the decision; no code change."""
    import json
    from pathlib import Path

    from rules.evaluate import evaluate_bundle

    custom = tmp_path / "rules.yaml"
    custom.write_text(broken("  high_value_arr: 100000", "  high_value_arr: 500000"))
    bundle = json.loads((Path(__file__).parent / "fixtures/policy/trigger__churn_risk.json").read_text())
    assert evaluate_bundle(bundle, matcher=lexical_matcher).escalate is True
    assert evaluate_bundle(bundle, rules=load_ruleset(custom), matcher=lexical_matcher).escalate is False
