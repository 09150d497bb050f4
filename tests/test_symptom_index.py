"""The symptom index: rows in the store shared by every process, an in-memory matrix per process kept in
sync, history for the rules built from it (judging like Zendesk's search does), and the resumable
backfill from the sandbox's incremental export, from code and from the command line."""

from __future__ import annotations

import contextlib
import json
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import requests
from rq.timeouts import JobTimeoutException, TimerDeathPenalty
from sqlalchemy import event
from sqlalchemy import text as sa_text

from connector.sandbox.seed import TICKETS
from rules.adapters.zendesk import case_from_bundle
from rules.evaluate import evaluate
from rules.ruleset import load_ruleset
from tests.conftest_service import sandbox_job_context
from worker import symptom_index
from worker.backfill import backfill
from worker.cli import main
from worker.jobs import JobContext
from worker.store import EscalationDraft, Store, TicketRef
from worker.store.followup import SymptomEntry
from worker.symptom_index import SymptomIndex, index_for

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


def raw(tid: int, subject: str, description: str, *, org: int = 501, hours_ago: float = 1, **extra) -> dict:
    created = (NOW - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "id": tid, "subject": subject, "description": description, "organization_id": org,
        "requester_id": 1000 + org - 500, "status": "open", "tags": ["export"], "created_at": created,
        "updated_at": created, "custom_fields": [{"id": 360000001, "value": "export"}], **extra,
    }  # fmt: skip


CSV = raw(1, "Export to CSV fails with timeout", "Exporting the monthly report to CSV times out after 30s.")
CSV_AGAIN = raw(
    2, "CSV download never finishes", "Our CSV export spins forever and then the request times out.", org=502
)
INVOICE = raw(
    3, "Invoice PDF shows wrong tax rate", "The VAT on our invoice PDF is 19% instead of 20%.", org=503
)


@pytest.fixture
def fresh(store):
    symptom_index.reset_indexes()
    return store


def test_a_copy_in_another_process_syncs_what_one_wrote(fresh, matcher):
    writer, reader = SymptomIndex(matcher), SymptomIndex(matcher)
    assert writer.add(fresh, [CSV, CSV_AGAIN, INVOICE]) == 3
    assert writer.add(fresh, [CSV, CSV_AGAIN]) == 0  # unchanged: not embedded or written again
    assert reader.sync(fresh) == 3 and len(reader) == 3

    hits = reader.query("CSV export times out\nThe export to CSV never completes, it times out.")
    assert [h.ticket.id for h in hits] == ["1", "2"] or [h.ticket.id for h in hits] == ["2", "1"]
    assert all(h.score >= matcher.threshold for h in hits)
    assert reader.query(INVOICE["subject"], exclude=TicketRef.zendesk(3)) == []

    solved = {**CSV, "status": "solved", "updated_at": NOW.strftime("%Y-%m-%dT%H:%M:%SZ")}
    assert writer.add(fresh, [solved]) == 1
    reader.sync(fresh)
    row = fresh.symptom_row(TicketRef.zendesk(1))
    assert row.status == "solved" and len(reader) == 3

    gone = {**CSV_AGAIN, "status": "deleted", "updated_at": NOW.strftime("%Y-%m-%dT%H:%M:%SZ")}
    writer.add(fresh, [gone])
    reader.sync(fresh)
    assert [h.ticket.id for h in reader.query(CSV["subject"] + "\n" + CSV["description"])] == ["1"]


def test_an_update_that_changes_nothing_the_index_keeps_is_not_written(fresh, matcher):
    writer, other = SymptomIndex(matcher), SymptomIndex(matcher)
    assert writer.add(fresh, [CSV]) == 1
    stored = fresh.symptom_row(TicketRef.zendesk(1))
    later = (NOW + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    # A comment or a new priority: a newer updated_at, nothing the index keeps.
    assert writer.add(fresh, [{**CSV, "priority": "high", "updated_at": later}]) == 0
    assert fresh.symptom_row(TicketRef.zendesk(1)).indexed_at == stored.indexed_at
    # Another process knows nothing of what this one wrote: it writes (as before it kept nothing).
    assert other.add(fresh, [{**CSV, "updated_at": later}]) == 1
    writer.sync(fresh)
    # The row was written elsewhere since: this copy no longer vouches for its fields either.
    even_later = (NOW + timedelta(minutes=9)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert writer.add(fresh, [{**CSV, "updated_at": even_later}]) == 1
    # What the index keeps changed (tags, status): written.
    stamp = [(NOW + timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%SZ") for m in (10, 11)]
    assert writer.add(fresh, [{**CSV, "tags": ["export", "vip"], "updated_at": stamp[0]}]) == 1
    assert fresh.symptom_row(TicketRef.zendesk(1)).tags == ("export", "vip")
    solved = {**CSV, "tags": ["export", "vip"], "status": "solved", "updated_at": stamp[1]}
    assert writer.add(fresh, [solved]) == 1 and fresh.symptom_row(TicketRef.zendesk(1)).status == "solved"


def test_a_query_scores_in_half_precision_on_one_torch_thread_and_leaves_the_count_alone(fresh, matcher):
    import numpy as np
    import torch

    index = SymptomIndex(matcher)
    index.add(fresh, [CSV, CSV_AGAIN, INVOICE])
    text = "CSV export times out\nThe export to CSV never completes, it times out."
    vector = index.vector(text)
    exact = {
        row.ticket_id: float(np.frombuffer(row.embedding, dtype=np.float32) @ vector)
        for row in (fresh.symptom_row(TicketRef.zendesk(n)) for n in (1, 2, 3))
    }
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        hits = index.query(text, vector=vector, threshold=-1.0)
        assert torch.get_num_threads() == 2  # the product's one thread was the product's only
    finally:
        torch.set_num_threads(before)
    assert {h.ticket.id for h in hits} == {"1", "2", "3"}
    assert all(abs(h.score - exact[h.ticket.id]) < 3e-3 for h in hits)  # float16 vectors, float32 sums


def _symptom_reads(store: Store) -> list[str]:
    """SELECTs on the index's table from now on (what a copy reads back from the database)."""
    seen: list[str] = []

    def note(_conn, _cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM symptom_index " in statement + " ":
            seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", note)
    return seen


def test_a_writer_keeps_what_it_wrote_and_matches_reuse_rows_until_rewritten(fresh, matcher):
    writer, reader = SymptomIndex(matcher), SymptomIndex(matcher)
    reads = _symptom_reads(fresh)
    assert writer.add(fresh, [CSV, CSV_AGAIN]) == 2
    assert len(writer) == 2 and len(reads) <= 2  # the sync before (max id, changes): not a read-back after
    text = "CSV export times out\nThe export to CSV never completes, it times out."
    assert {h.ticket.id for h in writer.query(text)} == {"1", "2"}
    del reads[:]
    mine = {row.ticket_id: row for _hit, row in writer.matches(fresh, text)}
    assert reads == []  # the writer matches what it wrote without reading it back
    assert list(mine.values()) == fresh.symptom_rows([row.id for row in mine.values()])  # as a read gives it

    reader.sync(fresh)
    first = {row.ticket_id: row.subject for _hit, row in reader.matches(fresh, text)}
    assert first == {"1": CSV["subject"], "2": CSV_AGAIN["subject"]}
    del reads[:]
    assert {row.ticket_id for _hit, row in reader.matches(fresh, text)} == {"1", "2"}
    assert reads == []  # the same rows again: from the copy's cache

    later = (NOW + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    reworded = {**CSV_AGAIN, "subject": "CSV export request times out", "updated_at": later}
    assert writer.add(fresh, [reworded]) == 1
    # Both rows are within the sync's overlap; only the rewritten one is read in full, then nothing.
    assert reader.sync(fresh) == 1 and reader.sync(fresh) == 0
    again = {row.ticket_id: row.subject for _hit, row in reader.matches(fresh, text)}
    assert again == {"1": CSV["subject"], "2": "CSV export request times out"}  # rewritten: read again


def test_syncs_between_wide_reads_read_only_the_last_second_and_a_late_row_still_arrives(
    fresh, matcher, monkeypatch
):
    writer, reader = SymptomIndex(matcher), SymptomIndex(matcher)
    writer.add(fresh, [CSV])
    reader.sync(fresh)  # loads; the next wide read is WIDE_SYNC_EVERY away
    monkeypatch.setattr(symptom_index, "WIDE_SYNC_EVERY", timedelta(hours=1))
    writer.add(fresh, [INVOICE])
    # A writer whose clock runs 10 s behind (or whose transaction committed late) stamps its row in the
    # past: outside the narrow margin of the syncs that follow, inside the wide read's overlap.
    with fresh.engine.begin() as connection:
        connection.execute(
            sa_text("UPDATE symptom_index SET indexed_at = :at WHERE ticket_id = '3'"),
            {"at": datetime.now(UTC) - timedelta(seconds=10)},
        )
    writer.add(fresh, [CSV_AGAIN])  # stamped now
    assert reader.sync(fresh) == 1 and len(reader) == 2  # the recent row only
    assert reader.sync(fresh) == 0
    monkeypatch.setattr(symptom_index, "WIDE_SYNC_EVERY", timedelta(0))
    assert reader.sync(fresh) == 1 and len(reader) == 3  # the wide read brings the late one
    assert reader.query(INVOICE["subject"] + "\n" + INVOICE["description"])[0].ticket.id == "3"


def test_an_emptied_index_is_no_longer_taken_as_filled(fresh, matcher):
    index = index_for(fresh, matcher)
    index.add(fresh, [CSV])
    symptom_index.mark_filled(fresh, NOW - timedelta(days=30))
    assert symptom_index.is_filled(fresh, NOW, 14, index=index)
    with fresh.engine.begin() as connection:  # restored from an older backup, or emptied
        connection.execute(sa_text("DELETE FROM symptom_index"))
        connection.execute(sa_text("DELETE FROM symptom_index_state"))
    index.sync(fresh)
    assert not symptom_index.is_filled(fresh, NOW, 14, index=index)


def test_the_window_and_the_threshold_narrow_a_query(fresh, matcher):
    old = raw(4, "CSV export times out", "The CSV export request times out every time.", hours_ago=24 * 20)
    index = index_for(fresh, matcher)
    index.add(fresh, [CSV, old])
    text = "Export to CSV fails with timeout"
    assert {h.ticket.id for h in index.query(text)} == {"1", "4"}
    assert {h.ticket.id for h in index.query(text, since=NOW - timedelta(days=14))} == {"1"}
    assert index.query(text, threshold=0.999) == []


def test_a_jobs_two_searches_for_one_text_are_one_until_the_copy_changes(fresh, matcher, monkeypatch):
    """History (a window) and group (all time) come from one search: the window's matches are those a
    windowed search finds, a change to the copy starts a new search, and a search cut short by the limit
    gives the window a search of its own."""
    old = raw(4, "CSV export times out", "The CSV export request times out every time.", hours_ago=24 * 20)
    index = index_for(fresh, matcher)
    index.add(fresh, [CSV, CSV_AGAIN, INVOICE, old])
    searches: list[datetime | None] = []
    query = index.query
    monkeypatch.setattr(index, "query", lambda *a, **k: searches.append(k.get("since")) or query(*a, **k))
    text, since = "Export to CSV fails with timeout", NOW - timedelta(days=14)

    def ids(found) -> list[str]:
        return [hit.ticket.id for hit, _row in found]

    window = index.matches(fresh, text, since=since)
    assert sorted(ids(window)) == ["1", "2"] and searches == [None]  # one all-time search
    assert sorted(ids(index.matches(fresh, text))) == ["1", "2", "4"] and searches == [None]  # kept
    assert ids(window) == ids(index._search(fresh, text, None, since, None, matcher.threshold, 200)[0])
    searches.clear()

    index.add(fresh, [raw(5, "CSV export keeps timing out", "Export to CSV times out.", org=505)])
    assert "5" in ids(index.matches(fresh, text)) and searches == [None]  # the copy changed: a new search

    searches.clear()
    assert sorted(ids(index.matches(fresh, text, since=since, limit=1))) in (["1"], ["2"], ["5"])
    assert searches == [None, since]  # two candidates for a limit of 1: the window searched on its own


def test_pruning_keeps_the_tickets_of_escalations(fresh, matcher):
    old = [raw(10 + i, f"Old report {i}", "The CSV export timed out.", hours_ago=24 * 30) for i in range(3)]
    index_for(fresh, matcher).add(fresh, [*old, CSV])
    fresh.get_or_create_escalation(TicketRef.zendesk(10), "engineering", EscalationDraft(severity="high"))
    assert fresh.prune_symptoms(NOW - timedelta(days=15)) == 2
    kept = {r.ticket_id for r in fresh.symptom_rows_since(None)}
    assert kept == {"10", "1"}


def test_a_preloaded_copy_is_what_job_processes_start_from(tmp_path, matcher):
    url = f"sqlite:///{tmp_path / 'preload.sqlite3'}"
    store = Store.from_url(url)
    store.upgrade()
    index_for(store, matcher).add(store, [CSV, INVOICE])
    symptom_index.reset_indexes()
    assert symptom_index.preload(url, matcher) == 2  # in the worker's main process, before it forks
    job_store = Store.from_url(url)  # what a job process builds for itself
    assert len(index_for(job_store, matcher)) == 2  # the parent's copy, before any read of its own
    store.dispose()
    job_store.dispose()


def _synthetic(count: int, dims: int, name: str) -> tuple[list[SymptomEntry], np.ndarray]:
    """``count`` rows with random unit vectors (embedding that many texts would take minutes)."""
    vectors = np.random.default_rng(7).standard_normal((count, dims)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    entries = [
        SymptomEntry(
            source="zendesk",
            ticket_id=str(50_000 + i),
            subject=f"Report {i}",
            description="",
            text_hash=f"{i:064x}",
            matcher=name,
            embedding=vectors[i].tobytes(),
            organization_id="501",
            requester_id="1001",
            status="open",
            tags=(),
            custom_fields={},
            created_at=NOW,
            updated_at=NOW,
        )
        for i in range(count)
    ]
    return entries, vectors


# A cut that lands in a garbage collector's callback (a weak reference's) is lost there, and reported.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_sync_interrupted_anywhere_leaves_no_copy_out_of_step(fresh, matcher, monkeypatch):
    """A job's timeout is raised inside its thread wherever it is (RQ's TimerDeathPenalty, as in
    ``escalate worker --threads``): a sync cut short at any point, then run again, gives a copy in which
    every row is found under its own ticket."""
    monkeypatch.setattr(symptom_index, "SYNC_PAGE", 300)  # many pages: many points to cut at
    # RQ's penalty sets the exception's message for the whole process: put it back afterwards.
    monkeypatch.setattr(JobTimeoutException, "__init__", JobTimeoutException.__init__)
    entries, vectors = _synthetic(2_000, matcher.dimensions, matcher.name)
    fresh.upsert_symptoms(entries)
    assert SymptomIndex(matcher).sync(fresh) == len(entries)
    started = time.perf_counter()
    assert SymptomIndex(matcher).sync(fresh) == len(entries)
    whole = time.perf_counter() - started  # a load once warm, as each below
    probes = range(0, len(entries), 97)
    every = symptom_index.FULL_RELOAD_EVERY
    for n, cut in enumerate(np.linspace(0.02, 0.98, 40) * whole):
        copy = SymptomIndex(matcher)
        if n % 2:  # a loaded copy due its full reload: the sync clears it and reads it all again
            copy.sync(fresh)
            monkeypatch.setattr(symptom_index, "FULL_RELOAD_EVERY", timedelta(0))
        # The cut surfaces as whatever the code it lands in makes of it: the timeout itself or, inside a
        # query, the failed rollback of a connection left mid-command, or a broken assertion of
        # SQLAlchemy's, or nothing (the pool logs and drops what a connection's reset raises); either
        # way the next sync must work.
        with contextlib.suppress(Exception), TimerDeathPenalty(float(cut)):
            copy.sync(fresh)
            for _ in range(500):  # finished early: the cut lands here (between two short sleeps)
                time.sleep(0.01)
        monkeypatch.setattr(symptom_index, "FULL_RELOAD_EVERY", every)  # the copy mends itself, if it can
        copy.sync(fresh)
        assert len(copy) == len(entries)
        for i in probes:
            best = copy.query("", vector=vectors[i], threshold=0.99, limit=1)
            assert [h.ticket.id for h in best] == [entries[i].ticket_id], f"cut after {cut:.3f} s"


# -- history from the index ----------------------------------------------------------------------------


def context(sandbox, tmp_path) -> JobContext:
    return sandbox_job_context(sandbox, tmp_path)


def judged(ctx: JobContext, ticket_id: int) -> dict:
    from worker.runtime import runtime_for

    rt = runtime_for(ctx.settings)
    bundle = symptom_index.fetch_bundle(ctx, ticket_id)
    decision = evaluate(case_from_bundle(bundle, now=NOW + timedelta(days=6)), rt.rules, rt.matcher).to_dict()
    return {
        "escalate": decision["escalate"],
        "destination": decision["destination"],
        "severity": decision["severity"],
        "triggers": sorted(t["id"] for t in decision["triggers"]),
        "holds": sorted(h["id"] for h in decision["hold_reasons"]),
        "related": sorted((r["ticket_id"], r["similarity"]) for r in decision["related_tickets"]),
        "breadth": {k: decision["impact"]["breadth"][k] for k in ("organizations", "tickets", "reporters")},
        "arr": decision["impact"]["revenue"]["arr_exposed"],
    }


def test_history_from_the_index_judges_like_zendesks_search(sandbox_state, tmp_path, monkeypatch):
    ctx = context(sandbox_state, tmp_path)
    seeded = sorted(TICKETS.values())
    monkeypatch.setenv(symptom_index.MODE_ENV, "zendesk")
    from_search = {t: judged(ctx, t) for t in seeded}
    searches = len(sandbox_state.zendesk_state.requests.matching("GET", "/api/v2/search/export"))
    assert searches == len(seeded)

    monkeypatch.setenv(symptom_index.MODE_ENV, "auto")  # the searches above filled the index
    from_index = {t: judged(ctx, t) for t in seeded}
    assert len(sandbox_state.zendesk_state.requests.matching("GET", "/api/v2/search/export")) == searches
    assert from_index == from_search
    assert any(d["related"] for d in from_index.values())  # the comparison is not vacuous
    ctx.store.dispose()


def test_a_case_holds_the_history_the_bundle_would_give_and_converts_each_row_once(
    sandbox_state, tmp_path, monkeypatch
):
    ctx = context(sandbox_state, tmp_path)
    monkeypatch.setenv(symptom_index.MODE_ENV, "index")
    seeded = sorted(TICKETS.values())
    for t in seeded:  # every seeded ticket indexed
        symptom_index.fetch_bundle(ctx, t)
    grouped = 0
    for t in seeded:
        ref = TicketRef.zendesk(t)
        case = symptom_index.case_of(ctx, ref)
        read = case_from_bundle(symptom_index.fetch_bundle(ctx, t))
        assert case.ticket == read.ticket
        assert case.history == read.history  # the adapter's own reading of raw_from_row's form
        grouped += bool(case.history)
        again = symptom_index.case_of(ctx, ref)
        assert all(a is b for a, b in zip(case.history, again.history, strict=True))  # converted once
    assert grouped  # the comparison is not vacuous

    # A rewritten row is converted anew.
    from worker.runtime import runtime_for

    rt = runtime_for(ctx.settings)
    refs = (TicketRef.zendesk(t) for t in seeded)
    ref = next(r for r in refs if symptom_index.case_of(ctx, r).history)
    before = symptom_index.case_of(ctx, ref).history[0]
    changed = rt.zendesk.get_ticket(int(before.id))
    later = (datetime.now(UTC) + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    changed = {**changed, "tags": [*changed.get("tags", []), "retagged"], "updated_at": later}
    assert index_for(ctx.store, rt.matcher).add(ctx.store, [changed]) == 1
    after = next(h for h in symptom_index.case_of(ctx, ref).history if h.id == before.id)
    assert after is not before and "retagged" in after.tags and "retagged" not in before.tags
    ctx.store.dispose()


# -- backfill ----------------------------------------------------------------------------------------------


def test_backfill_resumes_where_it_stopped_and_then_reads_only_changes(
    fresh, matcher, zendesk, sandbox_state
):
    pages = []
    first = backfill(fresh, zendesk, matcher, days=14, per_page=4, max_pages=1, on_page=pages.append)
    assert (first["pages"], first["seen"], first["done"]) == (1, 4, False)
    assert [p["seen"] for p in pages] == [4] and fresh.count_symptoms() == 4
    assert not symptom_index.is_filled(fresh, datetime.now(UTC), 14)

    second = backfill(fresh, zendesk, matcher, days=14)  # resumes from the stored cursor
    seeded = len(sandbox_state.zendesk_state.all_tickets())
    assert (second["seen"], second["done"]) == (seeded, True)
    assert fresh.count_symptoms() == seeded
    assert symptom_index.is_filled(fresh, datetime.now(UTC), 14)
    calls = sandbox_state.zendesk_state.requests.matching("GET", "/api/v2/incremental/tickets/cursor")
    assert sum("start_time=" in c["path"] or "start_time" in json.dumps(c) for c in calls) == 1

    sandbox_state.zendesk_state.add_ticket(
        requester_id=1009, subject="Webhooks stopped", description="None arrive."
    )
    third = backfill(fresh, zendesk, matcher, days=14)
    assert third["seen"] == seeded + 1 and fresh.count_symptoms() == seeded + 1

    again = backfill(fresh, zendesk, matcher, days=14, restart=True)
    assert again["seen"] == seeded + 1 and again["pages"] == 1


def test_the_incremental_export_answers_in_zendesks_shape(sandbox_state):
    env = sandbox_state.environment()
    auth = (f"{env['ZENDESK_EMAIL']}/token", env["ZENDESK_API_TOKEN"])
    url = f"{env['ZENDESK_URL']}/api/v2/incremental/tickets/cursor.json"
    start = int((datetime.now(UTC) - timedelta(days=30)).timestamp())
    page = requests.get(url, params={"start_time": start, "per_page": 5}, auth=auth, timeout=5).json()
    assert set(page) == {
        "tickets",
        "after_cursor",
        "after_url",
        "before_cursor",
        "before_url",
        "end_of_stream",
    }
    assert len(page["tickets"]) == 5 and page["end_of_stream"] is False
    stamps = [t["updated_at"] for t in page["tickets"]]
    assert stamps == sorted(stamps)
    rest = requests.get(page["after_url"], auth=auth, timeout=5).json()
    assert not {t["id"] for t in rest["tickets"]} & {t["id"] for t in page["tickets"]}
    recent = int(datetime.now(UTC).timestamp()) - 10
    assert requests.get(url, params={"start_time": recent}, auth=auth, timeout=5).status_code == 400
    assert requests.get(url, params={"start_time": start}, timeout=5).status_code == 401


def test_escalate_backfill_from_the_command_line(sandbox_state, tmp_path, monkeypatch, capsys):
    for name, value in sandbox_state.environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    monkeypatch.delenv("REDIS_URL", raising=False)
    symptom_index.reset_indexes()

    assert main(["backfill", "--days", "14", "--per-page", "5"]) == 0
    shown = capsys.readouterr().err
    assert "symptom index" in shown and "filled" in shown
    assert main(["backfill", "--days", "14", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["done"] is True and summary["seen"] == len(sandbox_state.zendesk_state.all_tickets())

    assert main(["followthrough", "check", "--now", "2026-11-20T15:00:00Z"]) == 0
    assert "index" in json.loads(capsys.readouterr().out)


def test_the_default_rules_name_the_grouping_and_regression_settings():
    rules = load_ruleset()
    assert [d.value for d in rules.grouping.destinations] == ["engineering", "product"]
    assert rules.regressions.action.value == "reopen"
