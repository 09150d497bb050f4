"""The Store on SQLite and PostgreSQL: migrations, deliveries, assessments, escalations, audit log."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from datetime import UTC
from typing import Any, TypeVar

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert, inspect, text
from sqlalchemy.exc import IntegrityError

from worker.store import (
    DeliveryStatus,
    EscalationDraft,
    EscalationState,
    InvalidTransition,
    Store,
    TicketAlreadyEscalated,
    TicketRef,
    migrate,
)
from worker.store.engine import normalise_url
from worker.store.models import Base, EscalationTicket

T = TypeVar("T")

TICKET = TicketRef.zendesk(42)
DECISION = {"ticket_id": "42", "escalate": True, "destination": "engineering", "severity": "high"}


# -- migrations ----------------------------------------------------------------------------------


def test_migrations_build_exactly_the_models(store):
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    assert migrate.current_revision(store.engine) == migrate.head_revision()


def test_migrations_go_down_and_up_again(tmp_path):
    store = Store.from_url(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    store.upgrade()
    store.upgrade()  # at head: nothing to do
    migrate.downgrade(store.engine, "base")
    assert set(inspect(store.engine).get_table_names()) == {"alembic_version"}
    store.upgrade()
    assert {"deliveries", "assessments", "escalations", "escalation_tickets", "audit_log"} <= set(
        inspect(store.engine).get_table_names()
    )
    store.dispose()


def test_default_sqlite_directory_is_created(tmp_path):
    store = Store.from_url(f"sqlite:///{tmp_path / 'var' / 'escalate.sqlite3'}")
    store.upgrade()
    assert (tmp_path / "var" / "escalate.sqlite3").exists()
    store.dispose()


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("postgresql://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
        ("sqlite:///x.db", "sqlite"),
    ],
)
def test_database_urls_select_the_installed_driver(url, driver):
    assert normalise_url(url).drivername == driver


# -- deliveries ----------------------------------------------------------------------------------


def test_a_delivery_is_recorded_once(store):
    assert store.record_delivery("zendesk", "inv-1", kind="evaluate_ticket", subject="42")
    assert not store.record_delivery("zendesk", "inv-1", kind="evaluate_ticket", subject="42")
    assert store.record_delivery("jira", "inv-1", kind="issue_commented", subject="ENG-1")  # other sender
    delivery = store.get_delivery("zendesk", "inv-1")
    assert delivery.status is DeliveryStatus.RECEIVED
    assert delivery.received_at.tzinfo is UTC


def test_a_processed_delivery_is_not_started_again(store):
    assert store.start_delivery("zendesk", "inv-2", kind="evaluate_ticket", subject="42")  # records it
    store.finish_delivery("zendesk", "inv-2", DeliveryStatus.FAILED, error="TransientError: 502")
    assert store.get_delivery("zendesk", "inv-2").error == "TransientError: 502"
    assert store.start_delivery("zendesk", "inv-2", kind="evaluate_ticket", subject="42")
    store.finish_delivery("zendesk", "inv-2", DeliveryStatus.PROCESSED)
    assert not store.start_delivery("zendesk", "inv-2", kind="evaluate_ticket", subject="42")
    delivery = store.get_delivery("zendesk", "inv-2")
    assert (delivery.status, delivery.attempts, delivery.error) == (DeliveryStatus.PROCESSED, 2, None)
    assert delivery.processed_at is not None


def test_a_forgotten_delivery_can_be_recorded_again(store):
    store.record_delivery("zendesk", "inv-3", kind="evaluate_ticket", subject="42")
    store.forget_delivery("zendesk", "inv-3")
    assert store.record_delivery("zendesk", "inv-3", kind="evaluate_ticket", subject="42")


def at_once(call: Callable[[], T], times: int = 10) -> list[T]:
    """``call`` from ``times`` threads released together; their results."""
    barrier = threading.Barrier(times)
    results: list[T] = []

    def run() -> None:
        barrier.wait()
        results.append(call())

    threads = [threading.Thread(target=run) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_records_of_one_delivery_make_one_row(store):
    results = at_once(lambda: store.record_delivery("zendesk", "same", kind="evaluate_ticket", subject="42"))
    assert sorted(results) == [False] * 9 + [True]


def test_concurrent_starts_of_one_delivery_count_every_attempt(store):
    """Starting is one upsert: ten workers starting one delivery at once make one row that counts ten
    attempts (a lost update would count fewer), and none of them starts it once it is processed."""
    started = at_once(lambda: store.start_delivery("zendesk", "race", kind="evaluate_ticket", subject="42"))
    assert started == [True] * 10
    assert store.get_delivery("zendesk", "race").attempts == 10
    store.finish_delivery("zendesk", "race", DeliveryStatus.PROCESSED)
    assert not store.start_delivery("zendesk", "race", kind="evaluate_ticket", subject="42")
    assert store.get_delivery("zendesk", "race").attempts == 10


def test_finishing_an_unknown_delivery_changes_nothing(store):
    store.finish_delivery("zendesk", "never-started", DeliveryStatus.PROCESSED)
    assert store.get_delivery("zendesk", "never-started") is None


# -- assessments ---------------------------------------------------------------------------------


def test_assessments_are_kept_and_the_latest_is_found(store):
    store.record_delivery("zendesk", "inv-4", kind="evaluate_ticket", subject="42")
    first = store.record_assessment(
        TICKET,
        {**DECISION, "escalate": False, "destination": None},
        ruleset_version="r1",
        trace=[{"rule": "coaching", "matched": True}],
        matcher="lexical",
    )
    second = store.record_assessment(
        TICKET, DECISION, ruleset_version="r2", matcher="semantic", delivery=("zendesk", "inv-4")
    )
    latest = store.latest_assessment(TICKET)
    assert latest.id == second.id
    assert (latest.escalate, latest.destination, latest.severity) == (True, "engineering", "high")
    assert latest.decision == DECISION
    assert (latest.ruleset_version, latest.matcher) == ("r2", "semantic")
    assert [a.id for a in store.assessments(TICKET)] == [second.id, first.id]
    assert store.assessments(TICKET)[1].trace == [{"rule": "coaching", "matched": True}]
    assert store.latest_assessment(TicketRef.zendesk(43)) is None
    with store.engine.connect() as connection:  # the assessment points at the delivery that made it
        refs = dict(connection.execute(text("SELECT id, delivery_ref FROM assessments")).all())
        delivery = connection.execute(text("SELECT id FROM deliveries WHERE delivery_id = 'inv-4'")).scalar()
    assert refs == {first.id: None, second.id: delivery}


# -- escalations ---------------------------------------------------------------------------------


def test_an_escalation_goes_through_its_lifecycle(store):
    assessment = store.record_assessment(TICKET, DECISION, ruleset_version="r1")
    created, is_new = store.get_or_create_escalation(
        TICKET, "engineering", EscalationDraft(severity="high", assessment_id=assessment.id)
    )
    assert is_new
    assert created.state is EscalationState.SUGGESTED
    assert created.tickets == (TICKET,)
    with store.lock_escalation(created.id) as lock:
        lock.set_jira_key("ENG-7")
        assert lock.transition(EscalationState.CREATED)
        assert not lock.transition(EscalationState.CREATED)  # repeating is a no-op
    for state in (
        EscalationState.ACKNOWLEDGED,
        EscalationState.RESOLVED,
        EscalationState.CUSTOMER_UPDATED,
        EscalationState.CLOSED,
    ):
        assert store.transition_escalation(created.id, state).state is state
    closed = store.escalation_by_jira_key("ENG-7")
    assert closed.state is EscalationState.CLOSED
    assert not closed.is_open
    assert closed.assessment_id == assessment.id


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ((), EscalationState.RESOLVED),
        ((EscalationState.DISMISSED,), EscalationState.CREATED),
        ((EscalationState.CREATED, EscalationState.CLOSED), EscalationState.ACKNOWLEDGED),
    ],
)
def test_forbidden_transitions_are_refused(store, path, target):
    record, _ = store.get_or_create_escalation(TICKET, "engineering")
    for state in path:
        store.transition_escalation(record.id, state)
    with pytest.raises(InvalidTransition):
        store.transition_escalation(record.id, target)


def test_one_open_escalation_per_ticket_and_destination(store):
    first, new = store.get_or_create_escalation(TICKET, "engineering")
    again, new_again = store.get_or_create_escalation(TICKET, "engineering")
    assert new and not new_again
    assert again.id == first.id
    other, other_new = store.get_or_create_escalation(TICKET, "security")
    assert other_new and other.id != first.id
    assert store.open_escalation(TICKET, "engineering").id == first.id
    # Once closed (or dismissed), the ticket may be escalated to the same destination again.
    store.transition_escalation(first.id, EscalationState.DISMISSED, reason="duplicate of ENG-1")
    assert store.open_escalation(TICKET, "engineering") is None
    third, third_new = store.get_or_create_escalation(TICKET, "engineering")
    assert third_new and third.id != first.id
    assert [e.id for e in store.escalations_for_ticket(TICKET)] == [first.id, other.id, third.id]
    assert [e.id for e in store.escalations_for_ticket(TICKET, open_only=True)] == [other.id, third.id]
    assert {e.id for e in store.escalations_in()} == {other.id, third.id}
    assert store.escalations_in([EscalationState.DISMISSED])[0].reason == "duplicate of ENG-1"


def test_the_database_itself_refuses_a_second_open_escalation(store):
    record, _ = store.get_or_create_escalation(TICKET, "engineering")
    second, _ = store.get_or_create_escalation(TicketRef.zendesk(99), "engineering")
    with pytest.raises(IntegrityError), store.engine.begin() as connection:
        connection.execute(
            insert(EscalationTicket).values(
                escalation_id=second.id,
                ticket_source="zendesk",
                ticket_id="42",
                destination="engineering",
                is_open=True,
                role="related",
                linked_at=record.created_at,
            )
        )


def test_several_tickets_under_one_escalation(store):
    record, _ = store.get_or_create_escalation(TICKET, "engineering")
    other = TicketRef.zendesk(43)
    with store.lock_escalation(record.id) as lock:
        assert lock.link_ticket(other)
        assert not lock.link_ticket(other)
    assert store.open_escalation(other, "engineering").id == record.id
    assert store.open_escalation(TICKET, "engineering").tickets == (TICKET, other)

    elsewhere, _ = store.get_or_create_escalation(TicketRef.zendesk(44), "engineering")
    with store.lock_escalation(elsewhere.id) as lock, pytest.raises(TicketAlreadyEscalated):
        lock.link_ticket(other)
    assert store.open_escalation(TicketRef.zendesk(44), "engineering").tickets == (TicketRef.zendesk(44),)

    store.transition_escalation(record.id, EscalationState.DISMISSED)
    assert store.open_escalation(other, "engineering") is None  # closing frees every linked ticket


def test_a_ticket_joins_an_escalation_with_its_audit_entry(store):
    record, _ = store.get_or_create_escalation(TICKET, "engineering")
    other = TicketRef.zendesk(43)
    joinable = {EscalationState.SUGGESTED, EscalationState.CREATED}
    audit = {"target": "escalate", "action": "symptom_join", "subject": "43", "detail": {"score": 0.8}}

    joined = store.join_escalation(record.id, other, states=joinable, audit=audit)
    assert joined is not None and joined.id == record.id
    assert joined.tickets == (TICKET, other)
    assert store.open_escalation(other, "engineering").id == record.id  # the link is open
    entries = store.actions(escalation_id=record.id, action="symptom_join")
    assert [(e.subject, e.detail) for e in entries] == [("43", {"score": 0.8})]

    assert store.join_escalation(record.id, other, states=joinable, audit=audit) is None  # linked already
    assert len(store.actions(escalation_id=record.id, action="symptom_join")) == 1

    elsewhere, _ = store.get_or_create_escalation(TicketRef.zendesk(44), "engineering")
    assert store.join_escalation(elsewhere.id, other, states=joinable, audit=audit) is None
    assert store.escalation(elsewhere.id).tickets == (TicketRef.zendesk(44),)
    assert store.actions(escalation_id=elsewhere.id, action="symptom_join") == []

    assert (
        store.join_escalation(elsewhere.id, TicketRef.zendesk(45), states={EscalationState.CREATED}) is None
    )
    assert store.escalation(elsewhere.id).tickets == (TicketRef.zendesk(44),)
    with pytest.raises(KeyError):
        store.join_escalation(10**9, other, states=joinable)


def test_a_new_escalation_opens_once_however_many_jobs_try_at_once(store):
    draft = EscalationDraft(severity="high", reason="outage")
    opened = store.open_new_escalation(TICKET, "engineering", draft)
    assert opened is not None and opened.tickets == (TICKET,)
    assert (opened.state, opened.severity, opened.reason) == (EscalationState.SUGGESTED, "high", "outage")
    assert store.escalation(opened.id) == opened
    assert store.open_new_escalation(TICKET, "engineering", draft) is None  # open already
    assert store.open_new_escalation(TICKET, "security", draft) is not None  # another destination

    store.transition_escalation(opened.id, EscalationState.DISMISSED)
    again = store.open_new_escalation(TICKET, "engineering", draft)
    assert again is not None and again.id != opened.id

    other = TicketRef.zendesk(77)
    results = at_once(lambda: store.open_new_escalation(other, "engineering", draft))
    [winner] = [r for r in results if r is not None]
    assert store.open_escalation(other, "engineering").id == winner.id
    with store.engine.connect() as connection:  # the refused ones left no escalation without its ticket
        orphans = connection.execute(
            text("SELECT count(*) FROM escalations e WHERE NOT EXISTS "
                 "(SELECT 1 FROM escalation_tickets t WHERE t.escalation_id = e.id)")
        ).scalar_one()
    assert orphans == 0


def test_joins_wait_for_the_escalations_lock_and_see_what_was_done_meanwhile(store):
    """A join waits while a job holds the escalation: one that closed it meanwhile is not joined; one that
    linked another ticket meanwhile shows in the joined escalation's tickets. Many at once all join."""
    joinable = {EscalationState.SUGGESTED, EscalationState.CREATED}
    record, _ = store.get_or_create_escalation(TICKET, "engineering")
    results: list[Any] = []

    def join(ticket_id: int) -> threading.Thread:
        thread = threading.Thread(
            target=lambda: results.append(
                store.join_escalation(record.id, TicketRef.zendesk(ticket_id), states=joinable)
            )
        )
        thread.start()
        return thread

    with store.lock_escalation(record.id) as lock:
        waiting = join(43)
        time.sleep(0.3)  # SQLite: the waiter is queued on the write lock; PostgreSQL: on the row lock
        assert results == []
        lock.link_ticket(TicketRef.zendesk(44))
    waiting.join(10)
    [joined] = results
    assert joined is not None and joined.tickets == (TICKET, TicketRef.zendesk(44), TicketRef.zendesk(43))

    many = [f"{n}" for n in range(50, 60)]
    joins = at_once(lambda: store.join_escalation(record.id, TicketRef.zendesk(many.pop()), states=joinable))
    assert all(j is not None for j in joins)
    assert len(store.escalation(record.id).tickets) == 13

    results.clear()
    with store.lock_escalation(record.id) as lock:
        waiting = join(45)
        time.sleep(0.3)
        lock.transition(EscalationState.DISMISSED)
    waiting.join(10)
    assert results == [None]
    assert TicketRef.zendesk(45) not in store.escalation(record.id).tickets
    assert store.open_escalation(TicketRef.zendesk(45), "engineering") is None


def test_an_escalations_done_subjects_come_by_action(store):
    record, _ = store.get_or_create_escalation(TICKET, "engineering")
    other, _ = store.get_or_create_escalation(TicketRef.zendesk(44), "engineering")
    for subject in ("42", "43", "43"):  # a retried link is audited twice: one subject
        store.record_action("jira", "jira_remote_link", subject, escalation_id=record.id)
    store.record_action("jira", "jira_join_comment", "43", escalation_id=record.id)
    store.record_action("jira", "jira_remote_link", "44", escalation_id=other.id)
    store.record_action("jira", "jira_impact_property", str(record.id), escalation_id=record.id)

    done = store.ledger_subjects({"jira_remote_link", "jira_join_comment"}, escalation_id=record.id)
    assert done == {"jira_remote_link": {"42", "43"}, "jira_join_comment": {"43"}}
    assert store.ledger_subjects({"jira_join_comment"}, escalation_id=other.id) == {
        "jira_join_comment": set()
    }


def test_concurrent_joins_all_land(store):
    record, _ = store.get_or_create_escalation(TICKET, "engineering")
    barrier = threading.Barrier(6)

    def join(n: int) -> None:
        barrier.wait()
        store.join_escalation(record.id, TicketRef.zendesk(100 + n), states={EscalationState.SUGGESTED})

    threads = [threading.Thread(target=join, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(store.escalation(record.id).tickets) == {
        TICKET,
        *(TicketRef.zendesk(100 + n) for n in range(6)),
    }


def test_concurrent_creators_make_one_escalation(store):
    ids: list[int] = []
    created: list[bool] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        record, is_new = store.get_or_create_escalation(TICKET, "engineering")
        ids.append(record.id)
        created.append(is_new)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 1
    assert created.count(True) == 1


def test_the_lock_makes_the_second_worker_see_the_first_ones_issue(store):
    """Two jobs for one ticket: only one creates the Jira issue; the other waits and finds its key."""
    issues_created: list[str] = []
    seen: list[str | None] = []
    barrier = threading.Barrier(2)

    def job(name: str) -> None:
        barrier.wait()
        with store.lock_open_escalation(TICKET, "engineering", create=EscalationDraft()) as lock:
            current = lock.record
            seen.append(current.jira_key)
            if current.jira_key is None:
                time.sleep(0.3)  # the slow call to Jira, under the lock
                issues_created.append(name)
                lock.set_jira_key("ENG-1")
                lock.transition(EscalationState.CREATED)
                lock.record_action("jira", "create_issue", "ENG-1", detail={"ticket": TICKET.id})

    threads = [threading.Thread(target=job, args=(f"job-{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(issues_created) == 1
    assert sorted(seen, key=str) == ["ENG-1", None]
    [action] = store.actions(target="jira")
    assert (action.action, action.subject, action.detail) == ("create_issue", "ENG-1", {"ticket": "42"})


def test_a_failed_block_changes_nothing(store):
    record, _ = store.get_or_create_escalation(TICKET, "engineering")
    with pytest.raises(RuntimeError), store.lock_escalation(record.id) as lock:
        lock.set_jira_key("ENG-9")
        lock.transition(EscalationState.CREATED)
        lock.record_action("jira", "create_issue", "ENG-9")
        raise RuntimeError("Jira answered 500 after the issue was created")
    unchanged = store.open_escalation(TICKET, "engineering")
    assert (unchanged.state, unchanged.jira_key) == (EscalationState.SUGGESTED, None)
    assert store.actions() == []


def test_lock_without_draft_finds_nothing(store):
    with store.lock_open_escalation(TICKET, "engineering") as lock:
        assert lock is None
    with pytest.raises(KeyError), store.lock_escalation(12345):
        pass


# -- audit log -----------------------------------------------------------------------------------


def test_actions_are_audited(store):
    record, _ = store.get_or_create_escalation(TICKET, "engineering")
    store.record_action(
        "zendesk",
        "add_internal_note",
        "42",
        escalation_id=record.id,
        delivery_id="inv-1",
        detail={"tags": ["escalated"]},
    )
    store.record_action("jira", "create_issue", "ENG-1", outcome="failed", error="PermanentError: 400")
    newest, oldest = store.actions()
    assert (newest.target, newest.outcome, newest.error) == ("jira", "failed", "PermanentError: 400")
    assert (oldest.action, oldest.actor, oldest.detail) == (
        "add_internal_note",
        "worker",
        {"tags": ["escalated"]},
    )
    assert [a.action for a in store.actions(escalation_id=record.id)] == ["add_internal_note"]
    assert [a.action for a in store.actions(subject="ENG-1")] == ["create_issue"]
    assert oldest.at.tzinfo is UTC


def test_reads_need_no_transaction_and_may_not_write(store):
    from worker.store.models import Delivery

    ref = TicketRef.zendesk(7)
    store.record_assessment(ref, {"escalate": False}, ruleset_version="v1")
    assert store.latest_assessment(ref) is not None  # a read session sees what a write session committed
    if store.engine.dialect.name != "postgresql":
        return  # SQLite's BEGIN costs no round trip: reads keep their transaction there
    with pytest.raises(RuntimeError, match="read-only store session"), store._session() as session:
        session.add(Delivery(source="zendesk", delivery_id="x", kind="evaluate_ticket", subject="7"))
    assert store.get_delivery("zendesk", "x") is None


# -- the job's connection and the Core reads ------------------------------------------------------


def _checkouts(store: Store) -> list[int]:
    """A counter of connections taken from the store's pool."""
    from sqlalchemy import event

    taken = [0]

    @event.listens_for(store.engine.pool, "checkout")
    def _taken(*_args):
        taken[0] += 1

    return taken


def test_a_job_takes_one_connection_for_its_reads_and_one_statement_writes(store):
    taken = _checkouts(store)
    store.record_assessment(TICKET, DECISION, ruleset_version="v1")
    store.latest_assessment(TICKET)
    outside = taken[0]
    assert outside == 2  # one a verb, without a job's connection

    taken[0] = 0
    with store.pinned():
        assert store.start_delivery("zendesk", "job-1", kind="evaluate_ticket", subject="42")
        store.record_assessment(TICKET, DECISION, ruleset_version="v2", delivery=("zendesk", "job-1"))
        assert store.assessment_stamp(TICKET).ruleset_version == "v2"
        store.record_action("zendesk", "assessment_note", "42")
        assert [a.action for a in store.actions(subject="42")] == ["assessment_note"]
        store.finish_delivery("zendesk", "job-1", DeliveryStatus.PROCESSED)
        pinned = taken[0]
        # A block that reads then writes keeps its own connection and transaction.
        _, created = store.get_or_create_escalation(TICKET, "engineering")
        assert created and taken[0] == pinned + 1
    if store.engine.dialect.name == "postgresql":
        assert pinned == 1
    else:  # SQLite: a held connection would keep its read snapshot, so every verb takes its own
        assert pinned == 6
    assert store.get_delivery("zendesk", "job-1").status is DeliveryStatus.PROCESSED  # committed
    assert store.latest_assessment(TICKET).ruleset_version == "v2"


def test_a_failed_statement_leaves_the_job_connection_usable(store):
    with store.pinned():
        store.record_assessment(TICKET, DECISION, ruleset_version="v1")
        with pytest.raises(IntegrityError):  # no such escalation: the foreign key refuses it
            store.record_action("jira", "create_issue", "ENG-1", escalation_id=999)
        store.record_action("jira", "create_issue", "ENG-2")
        assert store.latest_assessment(TICKET).ruleset_version == "v1"
    assert [a.subject for a in store.actions()] == ["ENG-2"]


def test_the_stamp_of_an_assessment_carries_its_verdict_not_its_decision(store):
    assert store.assessment_stamp(TICKET) is None
    store.record_assessment(TICKET, {**DECISION, "verdict": "old"}, ruleset_version="r1")
    kept = store.record_assessment(
        TICKET, {**DECISION, "verdict": "Escalate to engineering"}, ruleset_version="r2", trace={"d": "x"}
    )
    assert kept == store.latest_assessment(TICKET)  # what the write returns is what a read finds
    stamp = store.assessment_stamp(TICKET)
    assert (stamp.id, stamp.assessed_at, stamp.ruleset_version) == (kept.id, kept.assessed_at, "r2")
    assert (stamp.trace, stamp.verdict) == ({"d": "x"}, "Escalate to engineering")
    store.record_assessment(TicketRef.zendesk(43), {"escalate": False}, ruleset_version="r1")
    assert store.assessment_stamp(TicketRef.zendesk(43)).verdict is None  # a decision without one


def test_an_assessment_read_or_kept_can_bring_the_latest_entry_of_an_action_on_its_ticket(store):
    """One statement instead of two: the stamp and the kept assessment carry the latest entry of the
    asked action on their own ticket, not another action's, not another ticket's."""
    other = TicketRef.zendesk(43)
    store.record_assessment(TICKET, DECISION, ruleset_version="r1")
    assert store.assessment_stamp(TICKET, last_action="note").last_action is None  # none yet
    kept = store.record_assessment(TICKET, DECISION, ruleset_version="r1", last_action="note")
    assert kept.last_action is None
    store.record_action("zendesk", "note", TICKET.id, detail={"n": 1})
    second = store.record_action("zendesk", "note", TICKET.id, detail={"n": 2})
    store.record_action("zendesk", "tags", TICKET.id, detail={"n": 3})  # another action
    store.record_action("zendesk", "note", other.id, detail={"n": 4})  # another ticket
    store.record_action("jsm", "note", TICKET.id, detail={"n": 5})  # another desk's ticket of that id
    stamp = store.assessment_stamp(TICKET, last_action="note")
    assert (stamp.last_action.at, stamp.last_action.detail) == (second.at, {"n": 2})
    kept = store.record_assessment(TICKET, DECISION, ruleset_version="r1", last_action="note")
    assert kept.last_action.detail == {"n": 2}
    assert dataclasses.replace(kept, last_action=None) == store.latest_assessment(TICKET)
    assert store.assessment_stamp(TICKET).last_action is None  # not asked: not read


def test_escalations_of_tickets_come_with_all_their_tickets_oldest_first(store):
    a, b, c, d = (TicketRef.zendesk(n) for n in (1, 2, 3, 4))
    jsm = TicketRef.of("jsm", "SUP-1")
    first, _ = store.get_or_create_escalation(a, "engineering")
    with store.lock_escalation(first.id) as lock:
        lock.link_ticket(b)
        lock.link_ticket(jsm)
    second, _ = store.get_or_create_escalation(b, "product")
    store.transition_escalation(second.id, EscalationState.DISMISSED)
    store.get_or_create_escalation(d, "engineering")  # not asked about

    found = store.escalations_of_tickets([b, jsm, c, a])
    assert set(found) == {a, b, jsm}  # c is under none
    assert [e.id for e in found[b]] == [first.id, second.id]
    assert found[b][0].tickets == (a, b, jsm)  # linked order, every ticket, whichever were asked
    assert found[b][1].state is EscalationState.DISMISSED and found[b][1].tickets == (b,)
    assert found[a] == [found[b][0]] == found[jsm]
    assert found[a][0] == store.escalation(first.id)  # the same record the ORM read builds
    assert store.escalations_of_tickets([]) == {}

    # Only escalations to some destinations, but for one ticket's own, whatever their destination.
    security, _ = store.get_or_create_escalation(c, "security")
    narrowed = store.escalations_of_tickets([a, b, c], destinations={"product"}, own=a)
    assert {ref: [e.id for e in es] for ref, es in narrowed.items()} == {
        a: [first.id],  # a's own engineering escalation, with all its tickets
        b: [first.id, second.id],  # b is under a's, and under a product one; c's is security
    }
    assert narrowed[b][0].tickets == (a, b, jsm)
    # A look-alike's escalation comes with the asked tickets only; the ticket's own with all of them.
    e, f = TicketRef.zendesk(5), TicketRef.zendesk(6)
    elsewhere, _ = store.get_or_create_escalation(e, "product")
    with store.lock_escalation(elsewhere.id) as lock:
        lock.link_ticket(f)
    looked = store.escalations_of_tickets([a, f], destinations={"product"}, own=a)
    assert [x.tickets for x in looked[f]] == [(f,)]
    assert looked[a][0].tickets == (a, b, jsm)
    assert store.escalations_of_tickets([f])[f][0].tickets == (e, f)  # unfiltered: all of them
    assert set(store.escalations_of_tickets([c], destinations={"engineering"})) == set()  # c: security
    assert [e.id for e in store.escalations_of_tickets([c], destinations={"engineering"}, own=c)[c]] == [
        security.id
    ]
    # A link found both ways (the ticket's own escalation, to an asked destination) comes once.
    both = store.escalations_of_tickets([a, b], destinations={"engineering"}, own=a)
    assert both[a][0].tickets == (a, b, jsm) and [x.id for x in both[b]] == [first.id]


def test_an_escalation_brings_its_tickets_in_the_order_they_were_linked(store):
    """Not by id, as text or as number: 30 first, then 200, 1000 and 4, from every way of asking."""
    first, *later = (TicketRef.zendesk(n) for n in (30, 200, 1000, 4))
    escalation, _ = store.get_or_create_escalation(first, "engineering")
    with store.lock_escalation(escalation.id) as lock:
        for ref in later:
            lock.link_ticket(ref)
    linked = (first, *later)
    assert store.escalations_of_tickets([later[-1]])[later[-1]][0].tickets == linked
    own = store.escalations_of_tickets([first, *later], destinations={"product"}, own=first)
    assert own[first][0].tickets == linked
    looked = store.escalations_of_tickets([later[2], later[0]], destinations={"engineering"}, own=None)
    assert looked[later[0]][0].tickets == (later[0], later[2])  # a look-alike's: the asked ones, linked order
    assert store.escalation(escalation.id).tickets == linked


def test_the_escalations_of_a_tickets_look_alikes_are_found_by_index_at_scale(store):
    """What every assessment reads must not grow with the escalations ever made: on PostgreSQL, with
    20,000 escalations and 60,000 links, the plan reads the links by index and never scans either table
    (the OR it once had read them all: 12 ms a job)."""
    from sqlalchemy.dialects import postgresql

    from worker.store import statements

    if store.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's plans; SQLite's planner is another matter")
    escalations = (
        "INSERT INTO escalations (destination, state, severity, created_at, updated_at, state_changed_at)"
        " SELECT (ARRAY['engineering','product','security'])[g % 3 + 1], 'suggested', 'high', now(),"
        " now(), now() FROM generate_series(1, 20000) g"
    )
    links = (
        "INSERT INTO escalation_tickets (escalation_id, ticket_source, ticket_id, destination, is_open,"
        " role, linked_at) SELECT e.id, 'zendesk', ((e.id * 7 + k) % 20000)::text, e.destination, false,"
        " 'primary', now() FROM escalations e, generate_series(0, 2) k"
    )
    with store.engine.begin() as connection:
        for sql in (escalations, links, "ANALYZE escalations", "ANALYZE escalation_tickets"):
            connection.execute(text(sql))
    asked = [str(n) for n in range(100, 125)]
    values = {"source_0": "zendesk", "ids_0": asked, "destinations": ["engineering", "product"]}
    values |= {"own_source": "zendesk", "own_id": "100"}
    for filtered in (True, False):
        query = statements.escalations_under(1, filtered, True).compile(dialect=postgresql.dialect())
        with store.engine.connect() as connection:
            plan = "\n".join(r[0] for r in connection.exec_driver_sql(f"EXPLAIN {query}", values))
        assert "Seq Scan" not in plan, plan
    own, other = TicketRef.zendesk(100), TicketRef.zendesk(101)
    found = store.escalations_of_tickets([own, other], destinations={"engineering"}, own=own)
    mine = store.escalations_of_tickets([own])[own]  # unfiltered: all of its escalations
    assert [e.id for e in found[own]] == [e.id for e in mine] and mine
    assert all(e.destination == "engineering" or e in mine for e in found.get(other, []))


def test_a_young_tables_generic_plan_filters_look_alikes_without_casting_the_list_per_row(store):
    """Until autovacuum first analyzes the links (a new install, an outage's first minute), a prepared
    statement's generic plan may read them by source and filter by the asked ids. The ids are then bound
    as text[], the column's comparison type, so the filter does not cast the whole list again for every
    link it reads (a varchar(64)[] bind did: 6.5 ms a job against 3.3 in bench/bench_pipeline.py)."""
    import re

    from sqlalchemy.dialects import postgresql

    from worker.store import statements

    if store.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's plans; SQLite's planner is another matter")
    escalations = (
        "INSERT INTO escalations (destination, state, severity, created_at, updated_at, state_changed_at)"
        " SELECT 'engineering', 'suggested', 'high', now(), now(), now() FROM generate_series(1, 300)"
    )
    links = (
        "INSERT INTO escalation_tickets (escalation_id, ticket_source, ticket_id, destination, is_open,"
        " role, linked_at) SELECT e.id, 'zendesk', (e.id * 3 + k)::text, e.destination, false, 'primary',"
        " now() FROM escalations e, generate_series(0, 2) k"
    )
    query = str(statements.escalations_under(1, True, True).compile(dialect=postgresql.psycopg.dialect()))
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", query)))
    numbered = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m.group(1)) + 1}", query)
    values = {"source_0": "'zendesk'", "ids_0": "ARRAY['10', '11', '12']", "own_source": "'zendesk'",
              "own_id": "'10'", "destinations": "ARRAY['engineering']"}
    with store.engine.connect() as connection:  # no ANALYZE: the planner knows nothing of the rows
        for sql in (escalations, links, f"PREPARE look_alikes AS {numbered}", "SET plan_cache_mode = "
                    "force_generic_plan"):
            connection.exec_driver_sql(sql)
        execute = f"EXPLAIN EXECUTE look_alikes({', '.join(values[n] for n in names)})"
        plan = "\n".join(r[0] for r in connection.exec_driver_sql(execute))
        connection.rollback()
    assert re.search(r"ANY \(+\$\d", plan), plan  # the generic plan, with the list as a parameter
    assert "character varying(64)[]" not in plan and "character varying(20)[]" not in plan, plan


def test_tracking_is_made_on_first_use_and_each_update_sets_only_its_fields(store):
    escalation, _ = store.get_or_create_escalation(TICKET, "engineering")
    assert store.tracking(escalation.id).missed_intervals == 0  # no row yet: the defaults
    made = store.update_tracking(escalation.id, jira_status="To Do", rollup={"tickets": 1})
    assert (made.jira_status, made.rollup, made.missed_intervals) == ("To Do", {"tickets": 1}, 0)
    later = store.update_tracking(escalation.id, missed_intervals=2, rollup={"tickets": 3})
    assert (later.jira_status, later.rollup, later.missed_intervals) == ("To Do", {"tickets": 3}, 2)
    assert store.tracking(escalation.id) == later  # what the write returns is what a read finds
    with pytest.raises(TypeError, match="unknown tracking field"):
        store.update_tracking(escalation.id, state="closed")
    assert store.trackings([escalation.id])[escalation.id] == later


def test_a_rollup_is_written_only_when_it_moved(store):
    escalation, _ = store.get_or_create_escalation(TICKET, "engineering")

    def updated_at() -> Any:
        with store.engine.connect() as connection:
            query = text("SELECT updated_at FROM escalation_tracking WHERE escalation_id = :id")
            return connection.execute(query, {"id": escalation.id}).scalar_one()

    rollup = {"tickets": 3, "arr": 1200.5, "organizations": ["Acme", "Globex"], "severity_floor": None}
    assert store.set_rollup(escalation.id, rollup)  # the row made on first use
    written = store.tracking(escalation.id)
    assert (written.rollup, written.missed_intervals) == (rollup, 0)
    first = updated_at()
    assert not store.set_rollup(escalation.id, dict(rollup))  # the same: nothing written
    assert not store.set_rollup(escalation.id, dict(reversed(rollup.items())))  # built in another order
    assert updated_at() == first
    assert store.set_rollup(escalation.id, {**rollup, "tickets": 4})
    assert store.tracking(escalation.id).rollup["tickets"] == 4
    store.update_tracking(escalation.id, missed_intervals=2)
    assert not store.set_rollup(escalation.id, {**rollup, "tickets": 4})
    assert store.tracking(escalation.id).missed_intervals == 2  # the other fields are left alone


def test_a_pooled_connection_is_pinged_only_after_sitting_idle_and_a_dead_one_is_replaced(store, monkeypatch):
    """One job, one checkout: pinging each would be a round trip a job. A connection back within
    ``PING_AFTER_IDLE`` is used as it is; one idle longer is pinged, and one the server dropped meanwhile
    is replaced before anyone uses it."""
    from sqlalchemy.pool import NullPool

    from worker.store import engine as engine_module

    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no server to lose the connection")
    pings: list[int] = []
    real_ping = store.engine.dialect.do_ping
    monkeypatch.setattr(store.engine.dialect, "do_ping", lambda c: pings.append(1) or real_ping(c))

    def backend() -> int:
        with store.engine.connect() as connection:
            return connection.execute(text("SELECT pg_backend_pid()")).scalar_one()

    store.engine.dispose()  # from here the pool holds one connection, the one each checkout gets
    first = backend()
    pings.clear()
    assert backend() == first and pings == []  # back at once: not pinged
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE", 0.05)
    time.sleep(0.1)
    assert backend() == first and pings == [1]  # idle a while: pinged, alive, kept
    killer = engine_module.make_engine(store.engine.url, poolclass=NullPool)
    with killer.connect() as other:  # the server drops the pooled connection while it sits idle
        other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    killer.dispose()
    time.sleep(0.1)
    assert backend() != first  # the ping failed: a new connection, and the statement ran


def test_symptom_changes_read_the_highest_id_and_the_rows_written_since(store):
    from datetime import datetime, timedelta

    from worker.store.followup import SymptomEntry

    def entry(ticket_id: str) -> SymptomEntry:
        return SymptomEntry("zendesk", ticket_id, "CSV export fails", "", "h" + ticket_id, "m", None)

    before = datetime.now(UTC) - timedelta(seconds=1)
    assert store.symptom_changes(before) == (0, [])
    first = store.upsert_symptoms([entry("1"), entry("2")])
    middle = max(r.indexed_at for r in first)
    third = store.upsert_symptoms([entry("3")])
    highest, stamps = store.symptom_changes(before)
    assert highest == third[0].id == max(r.id for r in first + third)
    assert sorted(stamps) == [(r.id, r.indexed_at) for r in first + third]
    assert all(at.tzinfo is UTC for _, at in stamps)
    assert store.symptom_changes(middle) == (highest, [(third[0].id, third[0].indexed_at)])


def test_jobs_indexing_the_same_tickets_in_any_order_at_once_never_deadlock(store):
    """Two jobs backfilling one history (the same rows, in the order each fetched them) took their row
    locks in opposite orders and PostgreSQL killed one as a deadlock."""
    import random

    from worker.store.followup import SymptomEntry

    ids = [str(n) for n in range(40)]

    def upsert(order: list[str]) -> int:
        entries = [SymptomEntry("zendesk", i, "CSV export fails", "", "h" + i, "m", None) for i in order]
        return len(store.upsert_symptoms(entries))

    shuffle = random.Random(7)
    for _ in range(15):
        orders = [shuffle.sample(ids, len(ids)) for _ in range(4)]
        barrier = threading.Barrier(len(orders))
        failures: list[BaseException] = []

        def run(order: list[str], barrier: threading.Barrier = barrier, failures: list = failures) -> None:
            barrier.wait()
            try:
                upsert(order)
            except Exception as exc:  # the deadlock, reported below
                failures.append(exc)

        threads = [threading.Thread(target=run, args=(order,)) for order in orders]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM symptom_index")).scalar_one() == len(ids)


def test_a_job_whose_connection_dies_fails_and_the_next_job_gets_a_live_one(store):
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite keeps no connection across a job")
    from sqlalchemy.exc import OperationalError

    with pytest.raises(OperationalError), store.pinned():  # e.g. PostgreSQL restarted mid-job
        store.record_assessment(TICKET, DECISION, ruleset_version="v1")
        pid = store._pinned.get().exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with store.engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        store.latest_assessment(TICKET)  # the job fails here: RQ retries it
    with store.pinned():  # the dead connection was dropped: the retry runs on a live one
        store.record_assessment(TICKET, DECISION, ruleset_version="v2")
        assert store.latest_assessment(TICKET).ruleset_version == "v2"


def _kill_backend(store: Store, connection: Any) -> None:
    pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    with store.engine.connect() as other:
        other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


def _cut_a_query_short(store: Store, connection: Any) -> None:
    """The state a job's timeout leaves when it lands between psycopg's send and receive: a query sent,
    its answer never read."""
    connection.connection.dbapi_connection.pgconn.send_query(b"SELECT pg_sleep(0.1)")


@pytest.mark.parametrize("breaks", [_kill_backend, _cut_a_query_short], ids=["server-dropped", "cut-short"])
def test_a_job_whose_connection_broke_records_its_failure_and_ends_cleanly(store, breaks):
    """The job's failure record goes through: the delivery says failed, with the reason, instead of staying
    "processing" with a later statement's error as the reason; the job's end raises nothing more."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite keeps no connection across a job")
    from sqlalchemy.exc import OperationalError

    with store.pinned():
        assert store.start_delivery("zendesk", "broken", kind="evaluate_ticket", subject="42")
        breaks(store, store._pinned.get())
        if breaks is _kill_backend:
            with pytest.raises(OperationalError):  # the statement that meets the dead connection fails
                store.latest_assessment(TICKET)
        store.finish_delivery("zendesk", "broken", DeliveryStatus.FAILED, error="OperationalError: gone")
        assert store.latest_assessment(TICKET) is None  # and the job's reads go on
    delivery = store.get_delivery("zendesk", "broken")
    assert (delivery.status, delivery.error) == (DeliveryStatus.FAILED, "OperationalError: gone")
    with store.pinned():
        store.record_assessment(TICKET, DECISION, ruleset_version="v2")
        assert store.latest_assessment(TICKET).ruleset_version == "v2"


def test_a_decision_reads_back_as_the_standard_librarys_json_would_give_it(store):
    """The JSON columns go through orjson (store/engine.py): what comes back is what ``json`` would give."""
    import json

    import numpy as np

    decision = {
        **DECISION,
        "verdict": 'Escalate: "checkout" fails for Zoë — 500 ✓',
        "scores": {1: np.float64(0.8125), "2": 0.5},  # a matcher's float64, keys that are not strings
        "ids": [2**62, -1, 0],
        "nothing": None,
    }
    store.record_assessment(TICKET, decision, ruleset_version="r1", trace={"seen": ["a", 1.5, True]})
    kept = store.latest_assessment(TICKET)
    assert kept.decision == json.loads(json.dumps(decision))
    assert kept.trace == {"seen": ["a", 1.5, True]}
    with pytest.raises(Exception, match="not JSON serializable"):  # as json.dumps refuses it
        store.record_assessment(TICKET, {**DECISION, "bad": {1, 2}}, ruleset_version="r1")
    assert store.latest_assessment(TICKET).id == kept.id


def test_jobs_setting_an_index_state_at_once_all_succeed(store):
    """A threaded worker's first jobs mark the index filled together: none may fail on the key."""
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def mark(n: int) -> None:
        start.wait()
        try:
            store.set_index_state("filled", {"since": f"2026-11-{n + 10}T00:00:00+00:00"})
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=mark, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.index_state("filled")["since"] in {f"2026-11-{n + 10}T00:00:00+00:00" for n in range(8)}
    store.set_index_state("filled", {"since": "2026-10-01T00:00:00+00:00"})
    assert store.index_state("filled") == {"since": "2026-10-01T00:00:00+00:00"}
