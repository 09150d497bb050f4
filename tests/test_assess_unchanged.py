"""An event about a ticket that has not changed since its last assessment (a repeated trigger, the echo of
our own note) is not judged again; a changed ticket, an old assessment, or a retry of the same delivery
is. And the connector reuses users and organizations across cases for a short while."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connector.sandbox.zendesk_state import iso
from tests.conftest_service import sandbox_job_context
from worker.assess import assess_ticket
from worker.runtime import runtime_for
from worker.store import TicketRef

HOWTO = 104


@pytest.fixture
def ctx(sandbox_state, tmp_path):
    context = sandbox_job_context(sandbox_state, tmp_path)
    yield context
    context.store.dispose()


def touch(sandbox, ticket_id: int, when: datetime) -> None:
    """The ticket changed at ``when`` (as a customer's reply or a field change would change it)."""
    sandbox.zendesk_state.tickets[ticket_id]["updated_at"] = iso(when)


def reads(sandbox, ticket_id: int) -> list[str]:
    return [e["path"] for e in sandbox.zendesk_state.requests.matching("GET") if f"/{ticket_id}" in e["path"]]


def test_an_unchanged_ticket_and_the_echo_of_our_note_are_not_judged_again_a_changed_one_is(
    sandbox_state, ctx
):
    ref = TicketRef.zendesk(HOWTO)
    first = assess_ticket(ctx, HOWTO, delivery=("zendesk", "d1"))
    assert first["noted"] is True
    assessments = len(ctx.store.assessments(ref))
    sandbox_state.zendesk_state.requests.clear()

    # Our own note and tags changed the ticket: the event that echoes that change is known as ours.
    echo = assess_ticket(ctx, HOWTO, delivery=("zendesk", "d2"))
    again = assess_ticket(ctx, HOWTO, delivery=("zendesk", "d3"))

    assert echo == again == {"ticket_id": str(HOWTO), "verdict": first["verdict"], "unchanged": True}
    assert len(ctx.store.assessments(ref)) == assessments
    assert reads(sandbox_state, HOWTO) == [f"/api/v2/tickets/{HOWTO}.json"] * 2  # the ticket only

    touch(sandbox_state, HOWTO, datetime.now(UTC) + timedelta(seconds=5))
    changed = assess_ticket(ctx, HOWTO, delivery=("zendesk", "d4"))
    assert "unchanged" not in changed
    assert len(ctx.store.assessments(ref)) == assessments + 1


def test_a_retry_of_the_same_delivery_and_a_forced_assessment_are_judged(sandbox_state, ctx):
    ref = TicketRef.zendesk(HOWTO)
    assess_ticket(ctx, HOWTO, delivery=("zendesk", "d1"))
    count = len(ctx.store.assessments(ref))

    assert "unchanged" not in assess_ticket(ctx, HOWTO, delivery=("zendesk", "d1"))  # its job may have failed
    assert "unchanged" not in assess_ticket(ctx, HOWTO, delivery=("zendesk", "d3"), force=True)
    assert len(ctx.store.assessments(ref)) == count + 2


def test_an_old_assessment_is_renewed_even_for_an_unchanged_ticket(sandbox_state, ctx, monkeypatch):
    monkeypatch.setenv("ESCALATE_REASSESS_AFTER", "0")  # time alone moves SLAs: here, always judge
    ref = TicketRef.zendesk(HOWTO)
    for n in range(3):
        assert "unchanged" not in assess_ticket(ctx, HOWTO, delivery=("zendesk", f"d{n}"))
    assert len(ctx.store.assessments(ref)) == 3


def test_users_and_organizations_are_reused_across_cases_for_a_while(sandbox_state, ctx, monkeypatch):
    zendesk = runtime_for(ctx.settings).zendesk
    log = sandbox_state.zendesk_state.requests
    zendesk.fetch_bundle(HOWTO, history_days=0)
    first = len(log.matching("GET", "/api/v2/users/show_many")) + len(
        log.matching("GET", "/api/v2/organizations/show_many")
    )
    assert first >= 1
    log.clear()

    bundle = zendesk.fetch_bundle(HOWTO, history_days=0)

    assert log.matching("GET", "/api/v2/users/show_many") == []
    assert log.matching("GET", "/api/v2/organizations/show_many") == []
    assert bundle["users"] and bundle["organizations"]  # from the cache, the same records

    zendesk.directory.clear()
    zendesk.fetch_bundle(HOWTO, history_days=0)
    assert log.matching("GET", "/api/v2/users/show_many")


def test_a_changed_verdict_takes_away_the_tags_of_the_old_one(sandbox_state, ctx):
    ticket = sandbox_state.zendesk_state.tickets[HOWTO]
    ticket["tags"] = [*ticket["tags"], "escalate_suggested", "escalate_to_product", "escalate_severity_high"]
    kept = set(ticket["tags"]) - {"escalate_suggested", "escalate_to_product", "escalate_severity_high"}

    outcome = assess_ticket(ctx, HOWTO, delivery=("zendesk", "d1"))

    assert outcome["noted"] is True
    assert set(sandbox_state.zendesk_state.tickets[HOWTO]["tags"]) == kept  # kept in support: none of ours
