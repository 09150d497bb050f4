"""The store's retention (worker/store/retention.py): what goes, what stays, on SQLite and PostgreSQL; the
`escalate db prune` command; the daily job RQ's cron scheduler runs (worker/housekeeping.py)."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import pytest
from rq import Queue, SimpleWorker
from sqlalchemy import func, select, update

from worker import cli_jobs, followthrough, housekeeping, jobs
from worker.app import create_app
from worker.config import Settings
from worker.queue import redis_connection
from worker.store import DeliveryStatus, EscalationDraft, EscalationState, Store, TicketRef
from worker.store.retention import ASSESSMENTS, AUDIT, DELIVERIES, Windows, prune

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=400)
DECISION = {"escalate": False, "destination": None, "severity": None}
NOTE = "add_internal_note"


def age(store: Store, table, column: str, ids: list[int], when: datetime = OLD) -> None:
    """Move rows back in time, as if written ``when``."""
    with store.engine.begin() as connection:
        connection.execute(update(table).where(table.c.id.in_(ids)).values({column: when}))


def ids(store: Store, table) -> set[int]:
    with store.engine.connect() as connection:
        return set(connection.scalars(select(table.c.id)))


def delivery(store: Store, name: str, status: DeliveryStatus | None) -> int:
    store.start_delivery("zendesk", name, kind="ticket", subject="1")
    if status is not None:
        store.finish_delivery("zendesk", name, status)
    return store.get_delivery("zendesk", name).id


def assessment(store: Store, ticket: int) -> int:
    return store.record_assessment(TicketRef.zendesk(ticket), DECISION, ruleset_version="r1").id


def action(store: Store, subject: str, escalation_id: int | None = None, name: str = NOTE) -> int:
    return store.record_action("zendesk", name, subject, escalation_id=escalation_id).id


# -- what goes and what stays ------------------------------------------------------------------------


def test_old_processed_deliveries_go_and_unfinished_ones_stay(store):
    processed = delivery(store, "d-processed", DeliveryStatus.PROCESSED)
    failed = delivery(store, "d-failed", DeliveryStatus.FAILED)
    unfinished = delivery(store, "d-received", None)
    recent = delivery(store, "d-recent", DeliveryStatus.PROCESSED)
    age(store, DELIVERIES, "received_at", [processed, failed, unfinished])

    counts = prune(store.engine, Windows(), now=NOW)

    assert counts["deliveries"] == 1
    assert ids(store, DELIVERIES) == {failed, unfinished, recent}
    # The dedupe ledger still knows the recent delivery as processed.
    assert not store.start_delivery("zendesk", "d-recent", kind="ticket", subject="1")


def test_a_tickets_latest_assessment_and_an_escalations_first_stay(store):
    ticket = TicketRef.zendesk(7)
    older = [assessment(store, 7) for _ in range(3)]
    latest = assessment(store, 7)
    started = assessment(store, 8)
    store.get_or_create_escalation(
        TicketRef.zendesk(8), "engineering", EscalationDraft(assessment_id=started)
    )
    superseded_start = assessment(store, 8)
    last_of_8 = assessment(store, 8)
    recent = assessment(store, 9)
    recent_latest = assessment(store, 9)
    age(store, ASSESSMENTS, "assessed_at", [*older, latest, started, superseded_start, last_of_8])

    counts = prune(store.engine, Windows(), now=NOW)

    assert counts["assessments"] == 4  # three of ticket 7's, one of ticket 8's
    assert ids(store, ASSESSMENTS) == {latest, started, last_of_8, recent, recent_latest}
    # An unchanged ticket is still answered from its latest assessment.
    assert store.assessment_stamp(ticket).id == latest


def test_audit_entries_of_open_escalations_and_each_latest_action_stay(store):
    open_one, _ = store.get_or_create_escalation(TicketRef.zendesk(1), "engineering")
    closed, _ = store.get_or_create_escalation(TicketRef.zendesk(2), "engineering")
    store.transition_escalation(closed.id, EscalationState.DISMISSED)
    ledger = [action(store, "1", open_one.id, "jira_remote_link") for _ in range(2)]
    closed_entries = [action(store, "2", closed.id, "jira_remote_link") for _ in range(3)]
    notes = [action(store, "3") for _ in range(3)]
    tags = action(store, "3", name="set_tags")
    recent = action(store, "4")
    age(store, AUDIT, "at", [*ledger, *closed_entries, *notes, tags])

    counts = prune(store.engine, Windows(), now=NOW)

    assert counts["audit"] == 4  # two of the closed escalation's, two of ticket 3's notes
    assert ids(store, AUDIT) == {*ledger, closed_entries[-1], notes[-1], tags, recent}
    # A retried job still finds what it did on the open escalation, and the last note is still known.
    assert store.ledger_has("jira_remote_link", "1", escalation_id=open_one.id)
    stamp = store.record_assessment(TicketRef.zendesk(3), DECISION, ruleset_version="r1", last_action=NOTE)
    assert stamp.last_action is not None


def test_a_window_of_zero_keeps_that_kind_for_ever(store):
    kept = delivery(store, "d-old", DeliveryStatus.PROCESSED)
    age(store, DELIVERIES, "received_at", [kept])

    counts = prune(store.engine, Windows(deliveries=0), now=NOW)

    assert "deliveries" not in counts
    assert ids(store, DELIVERIES) == {kept}


def test_a_dry_run_counts_what_a_prune_then_deletes(store):
    old = [assessment(store, 5) for _ in range(4)]
    age(store, ASSESSMENTS, "assessed_at", old)

    counted = prune(store.engine, Windows(), now=NOW, dry_run=True)
    assert counted["assessments"] == 3
    assert ids(store, ASSESSMENTS) == set(old)

    assert prune(store.engine, Windows(), now=NOW) == counted
    assert ids(store, ASSESSMENTS) == {old[-1]}


def test_small_batches_delete_exactly_what_one_batch_does(store):
    old = [assessment(store, t) for t in (1, 2, 1, 2, 1, 2, 1)]
    age(store, ASSESSMENTS, "assessed_at", old)

    counts = prune(store.engine, Windows(), now=NOW, batch=2)

    assert counts["assessments"] == 5
    assert ids(store, ASSESSMENTS) == {old[-2], old[-1]}


def test_rows_inside_their_window_stay(store):
    row = assessment(store, 6)
    assessment(store, 6)
    age(store, ASSESSMENTS, "assessed_at", [row], NOW - timedelta(days=89))
    assert prune(store.engine, Windows(), now=NOW)["assessments"] == 0
    assert prune(store.engine, Windows(assessments=30), now=NOW)["assessments"] == 1


# -- windows from the environment ---------------------------------------------------------------------


def test_windows_come_from_options_then_the_environment_then_the_defaults(monkeypatch):
    monkeypatch.setenv("ESCALATE_KEEP_AUDIT_DAYS", "730")
    monkeypatch.setenv("ESCALATE_KEEP_DELIVERIES_DAYS", "7")
    assert Windows.from_env(deliveries=3) == Windows(deliveries=3, assessments=90, audit=730)


@pytest.mark.parametrize(
    ("value", "message"),
    [("a week", "must be a whole number of days"), ("-1", "must be 0 .keep for ever. or a number of days")],
)
def test_a_bad_window_is_refused(monkeypatch, value, message):
    monkeypatch.setenv("ESCALATE_KEEP_ASSESSMENTS_DAYS", value)
    with pytest.raises(ValueError, match=f"ESCALATE_KEEP_ASSESSMENTS_DAYS {message}"):
        Windows.from_env()
    with pytest.raises(ValueError, match="the audit window must be 0"):
        Windows.from_env(assessments=1, audit=-5)


# -- the command ------------------------------------------------------------------------------------


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli_jobs.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def database_env(store: Store, monkeypatch) -> None:
    monkeypatch.setenv("DATABASE_URL", store.engine.url.render_as_string(hide_password=False))


def test_escalate_db_prune_reports_then_deletes(store, monkeypatch, capsys):
    old = [assessment(store, 5) for _ in range(3)]
    age(store, ASSESSMENTS, "assessed_at", old)
    database_env(store, monkeypatch)
    monkeypatch.setenv("ESCALATE_KEEP_AUDIT_DAYS", "0")

    assert run_cli(["db", "prune", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "assessments: would delete 2 older than 90 days" in out
    assert "audit: kept for ever" in out
    assert ids(store, ASSESSMENTS) == set(old)

    assert run_cli(["db", "prune", "--assessments-days", "365", "--batch", "1"]) == 0
    assert "assessments: deleted 2 older than 365 days" in capsys.readouterr().out
    assert ids(store, ASSESSMENTS) == {old[-1]}


def test_escalate_db_prune_refuses_a_bad_window_before_touching_the_database(monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("ESCALATE_KEEP_DELIVERIES_DAYS", "soon")
    assert run_cli(["db", "prune"]) == 2
    assert "ESCALATE_KEEP_DELIVERIES_DAYS must be a whole number of days" in capsys.readouterr().err


# -- the daily job ----------------------------------------------------------------------------------


def test_the_cron_scheduler_runs_the_prune_daily(redis_url):
    connection = redis_connection(redis_url)
    scheduler = followthrough.cron_scheduler(connection, "escalate")
    prune_job = next(j for j in scheduler.get_jobs() if j.name == "escalate-prune")
    assert prune_job.cron == housekeeping.PRUNE_CRON
    due = prune_job.next_enqueue_time.astimezone(UTC)
    assert (due.hour, due.minute) == (3, 17)
    assert timedelta(0) < due - datetime.now(UTC) <= timedelta(days=1)


def test_the_prune_job_runs_in_a_worker_against_the_workers_database(store, redis_url, monkeypatch):
    old = [assessment(store, 5) for _ in range(3)]
    age(store, ASSESSMENTS, "assessed_at", old)
    database_env(store, monkeypatch)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setattr(jobs, "_context", None)
    queue = Queue("escalate", connection=redis_connection(redis_url))
    job = queue.enqueue(housekeeping.prune_store)
    try:
        SimpleWorker([queue], connection=queue.connection).work(burst=True)
    finally:
        if jobs._context is not None:
            jobs._context.store.dispose()
    assert job.get_status(refresh=True) == "finished", job.latest_result()
    assert job.return_value()["assessments"] == 2
    with store.engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(ASSESSMENTS)) == 1


# -- inline mode ------------------------------------------------------------------------------------


def test_inline_prune_runs_at_once_then_once_per_period(store):
    old = [assessment(store, 5) for _ in range(3)]
    age(store, ASSESSMENTS, "assessed_at", old)
    daily = housekeeping.InlinePrune()
    assert daily.maybe_run(store) == {"deliveries": 0, "assessments": 2, "audit": 0}
    age(store, ASSESSMENTS, "assessed_at", [assessment(store, 5)])
    assert daily.maybe_run(store) is None  # not a day yet
    assert housekeeping.InlinePrune(every=0).maybe_run(store)["assessments"] == 1


def test_the_inline_service_prunes_its_store_from_the_ticker(tmp_path, monkeypatch):
    monkeypatch.setenv("ESCALATE_FOLLOWTHROUGH_INTERVAL", "1")
    url = f"sqlite:///{tmp_path / 'inline.sqlite3'}"
    before = Store.from_url(url)  # the rows are old before the service and its ticker start
    before.upgrade()
    old = [assessment(before, 5) for _ in range(3)]
    age(before, ASSESSMENTS, "assessed_at", old)
    before.dispose()
    service = create_app(Settings(database_url=url, zendesk_webhook_secret="s")).extensions["escalate"]
    store = service.store
    deadline = time.monotonic() + 20
    try:
        while ids(store, ASSESSMENTS) != {old[-1]} and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        service.queue.close()  # the ticker stops at its next tick
    assert ids(store, ASSESSMENTS) == {old[-1]}
