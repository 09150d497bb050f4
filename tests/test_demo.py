"""`escalate demo` (the README's first command) on both desks: the same eleven cases, the same decisions,
and the escalations the rules carry out without a click."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from connector.sandbox.jsm_state import ENVIRONMENT as JSM_ENVIRONMENT
from worker.demo import JSM_L2, run_demo

pytestmark = pytest.mark.slow


def columns(rows: list[dict]) -> list[tuple[str, str, str]]:
    return [(r["decision"], r["why"], r["done"]) for r in rows]


def test_the_demo_judges_zendesk_tickets_and_jsm_requests_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in {**JSM_ENVIRONMENT, **JSM_L2}:
        monkeypatch.setenv(name, "")  # the JSM demo sets these; this restores them afterwards
    out = io.StringIO()
    console = Console(file=out, width=200)

    zendesk = run_demo(tmp_path / "zendesk.sqlite3", console, desk="zendesk")
    jsm = run_demo(tmp_path / "jsm.sqlite3", console, desk="jsm")

    assert [r["ticket"] for r in jsm] == [f"DESK-{n}" for n in range(1, 12)]
    assert columns(jsm) == columns(zendesk)
    decisions = {r["ticket"]: r["decision"] for r in jsm}
    assert decisions["DESK-1"] == "engineering / critical"
    assert decisions["DESK-2"] == "security / critical"
    assert decisions["DESK-4"] == "keep in support"
    assert [r["done"] for r in jsm][:2] == ["engineering: ENG-1", "security: SEC-1"]
    # Every case got its assessment note; the two carried out also say where they went.
    assert all(r["notes"] >= 1 for r in jsm + zendesk)
    assert [r["notes"] for r in jsm] == [r["notes"] for r in zendesk]
    assert out.getvalue().count("3 escalation(s) carried out") == 2
    assert "confirms by labelling the request escalate_create" in out.getvalue()  # JSM has no sidebar
