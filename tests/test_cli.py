"""`escalate evaluate` and `escalate rules check` as a user runs them: a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def escalate(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        capture_output=True,
        text=True,
        input=stdin,
        cwd=ROOT,
        timeout=120,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin"},
    )


def test_evaluate_prints_the_json_decision() -> None:
    out = escalate("evaluate", str(EXAMPLES / "outage.json"), "--matcher", "lexical")
    assert out.returncode == 0, out.stderr
    decision = json.loads(out.stdout)
    assert decision["escalate"] is True
    assert decision["destination"] == "engineering"
    assert decision["severity"] == "critical"
    assert decision["package"]["summary"]


@pytest.mark.parametrize("fmt", ["markdown", "jira-wiki", "adf"])
def test_evaluate_renders_the_package(fmt) -> None:
    out = escalate(
        "evaluate", str(EXAMPLES / "security_report.json"), "--format", fmt, "--matcher", "lexical"
    )
    assert out.returncode == 0, out.stderr
    assert "ESCALATION:" in out.stdout
    if fmt == "adf":
        assert json.loads(out.stdout)["type"] == "doc"


def test_now_flag_changes_the_clock(tmp_path) -> None:
    late = escalate(
        "evaluate",
        str(EXAMPLES / "howto_question.json"),
        "--now",
        "2027-01-30T00:00:00Z",
        "--matcher",
        "lexical",
    )
    assert late.returncode == 0, late.stderr
    assert json.loads(late.stdout)["evaluated_at"] == "2027-01-30T00:00:00Z"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_text("{not json"), "invalid JSON at line 1"),
        (lambda p: p.write_text('{"comments": []}'), "no 'ticket' object"),
        (lambda p: p.write_text("[1, 2]"), "must be a JSON object"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, setup, message) -> None:
    bundle = tmp_path / "bundle.json"
    setup(bundle)
    out = escalate("evaluate", str(bundle), "--matcher", "lexical")
    assert out.returncode == 2
    assert out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1
    assert message in out.stderr


def test_bad_now_exits_2() -> None:
    out = escalate("evaluate", str(EXAMPLES / "outage.json"), "--now", "yesterday")
    assert out.returncode == 2
    assert "--now" in out.stderr


def test_rules_check(tmp_path) -> None:
    ok = escalate("rules", "check")
    assert ok.returncode == 0 and "ok" in ok.stdout
    bad = tmp_path / "rules.yaml"
    bad.write_text(
        (ROOT / "rules/default_rules.yaml").read_text().replace("critical_hours: 4", "critical_hours: -1")
    )
    out = escalate("rules", "check", str(bad))
    assert out.returncode == 2
    assert f"{bad}:" in out.stderr and "deadlines.critical_hours" in out.stderr
