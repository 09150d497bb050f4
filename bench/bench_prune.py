"""How long `escalate db prune` takes on a store that has run for months, and how long each of its
transactions holds its locks.

    python bench/bench_prune.py                 # 500,000 rows of each kind
    python bench/bench_prune.py --rows 100000

A throwaway PostgreSQL database (the store at scale; SQLite is the embedded trial's) is filled,
server-side, with ``--rows`` deliveries, assessments (1 KB of decision JSON each, ten per ticket, each
pointing at its delivery) and audit entries, spread evenly over the last 200 days (audit entries over
500), then pruned with the default windows (30, 90 and 365 days): first counted (``--dry-run``), then
deleted. Transactions are id ranges of ``--batch`` ids; the figure per transaction is the whole prune's
time over their number.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import database, machine, print_machine
from sqlalchemy import text

from worker.store import Store
from worker.store.retention import DEFAULT_BATCH, Windows, prune

PAD = "x" * 1000


def fill(store: Store, rows: int) -> None:
    tickets = max(rows // 10, 1)
    days = "(200 - g * 200.0 / :rows) * interval '1 day'"
    audit_days = "(500 - g * 500.0 / :rows) * interval '1 day'"
    statements = [
        f"""INSERT INTO deliveries (source, delivery_id, kind, subject, status, attempts, received_at)
            SELECT 'zendesk', 'd' || g, 'ticket', (g % :tickets)::text, 'processed', 1, now() - {days}
            FROM generate_series(1, :rows) g""",
        f"""INSERT INTO assessments (ticket_source, ticket_id, assessed_at, escalate, decision, trace,
                                     ruleset_version, delivery_ref)
            SELECT 'zendesk', (g % :tickets)::text, now() - {days}, false,
                   json_build_object('verdict', 'stay', 'pad', CAST(:pad AS text)), '{{}}'::json, 'r1', g
            FROM generate_series(1, :rows) g""",
        f"""INSERT INTO audit_log (at, target, action, subject, outcome, actor)
            SELECT now() - {audit_days}, 'zendesk', 'add_internal_note', (g % :tickets)::text, 'ok',
                   'escalate'
            FROM generate_series(1, :rows) g""",
    ]
    with store.engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement), {"rows": rows, "tickets": tickets, "pad": PAD})
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500_000, help="rows of each kind (default 500,000)")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    args = parser.parse_args()
    print_machine(machine())
    with database("postgresql") as url:
        store = Store.from_url(url)
        store.upgrade()
        started = time.perf_counter()
        fill(store, args.rows)
        print(
            f"store: {args.rows:,} deliveries, assessments and audit entries (PostgreSQL), "
            f"filled in {time.perf_counter() - started:.1f} s"
        )
        now = datetime.now(UTC)
        started = time.perf_counter()
        counted = prune(store.engine, Windows(), now=now, dry_run=True)
        print(f"dry run:  {counted} in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        deleted = prune(store.engine, Windows(), now=now, batch=args.batch)
        took = time.perf_counter() - started
        transactions = sum(-(-n // args.batch) for n in (args.rows,) * len(deleted))
        print(
            f"prune:    {deleted} in {took:.1f} s, {sum(deleted.values()) / took:,.0f} rows/s; at most "
            f"{transactions} transactions of {args.batch:,} ids, {1000 * took / transactions:.0f} ms each "
            "on average"
        )
        store.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
