"""The symptom index with 100,000 tickets: insert rate, load and incremental sync time, query time
(p50/p95/p99) and memory.

    python bench/bench_symptom_index.py [--tickets 100000] [--queries 1000] [--threads 1] [--postgres]
                                        [--embed-sample 1000]

Tickets are synthetic: 384-dimensional unit vectors drawn around one "symptom" centre per 20 tickets, so a
query finds about as many same-symptom tickets as a busy desk has (cosine ~0.7 within a symptom, ~0 across,
against the matcher's 0.62 threshold), created over the 14-day window. They are written as the index writes
them (float32 bytes through ``Store.upsert_symptoms``), so the insert rate is the store's; how fast the
model embeds new tickets (what bounds indexing them) is measured on a sample with ``--embed-sample``.

The index is then loaded, queried and synced in a fresh process, as a new worker would: its memory is that
process's resident set before and after the load (torch imported, the model not loaded). A query is what
assessment does per ticket: the matrix-vector product over every ticket, the threshold and window, the
ranking ("query"), then reading the candidates' rows and scoring them exactly ("+ rows", ``matches``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rules.similarity import SemanticMatcher  # noqa: E402
from worker.store import Store  # noqa: E402
from worker.store.followup import SymptomEntry  # noqa: E402
from worker.symptom_index import SYNC_OVERLAP, SymptomIndex  # noqa: E402

DIMS = SemanticMatcher.dimensions
PER_SYMPTOM = 20
NOISE = 0.65  # cosine within a symptom ≈ 1 / (1 + NOISE²) ≈ 0.70
BATCH = 1000
NEW_ROWS = 1000
WINDOW = timedelta(days=14)
POSTGRES_ADMIN_URL = os.environ.get("ESCALATE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def centres_for(tickets: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return unit(rng.standard_normal((max(tickets // PER_SYMPTOM, 1), DIMS)).astype(np.float32))


def around(centres: np.ndarray, which: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal((len(which), DIMS)).astype(np.float32) * (NOISE / np.sqrt(DIMS))
    return unit(centres[which] + noise)


def entries(start: int, count: int, centres: np.ndarray, now: datetime, rng: np.random.Generator, name: str):
    which = (np.arange(start, start + count) // PER_SYMPTOM) % len(centres)
    vectors = around(centres, which, rng)
    ages = rng.uniform(0, WINDOW.total_seconds(), count)
    for i in range(count):
        tid = start + i
        created = now - timedelta(seconds=float(ages[i]))
        yield SymptomEntry(
            source="zendesk",
            ticket_id=str(100_000_000 + tid),
            subject=f"Symptom {which[i]}: report {tid}",
            description=f"Customer report {tid} of symptom {which[i]}, reworded. " * 4,
            text_hash=uuid.uuid4().hex + uuid.uuid4().hex,
            matcher=name,
            embedding=vectors[i].tobytes(),
            organization_id=str(5000 + tid % 2000),
            requester_id=str(900_000 + tid),
            status="open" if tid % 3 else "solved",
            tags=("synthetic",),
            created_at=created,
            updated_at=created,
        )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def database(postgres: bool) -> tuple[str, Callable[[], None]]:
    if not postgres:
        directory = tempfile.mkdtemp(prefix="escalate-bench-")
        return f"sqlite:///{directory}/index.sqlite3", lambda: None
    from sqlalchemy import text

    from worker.store.engine import make_engine

    name = f"escalate_bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return admin.url.set(database=name).render_as_string(hide_password=False), drop


# -- the fresh process: load, query, sync -----------------------------------------------------------------


def measure(args: argparse.Namespace) -> dict:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    store = Store.from_url(args.measure)
    matcher = SemanticMatcher()  # the model loads on first use only: never, for synthetic vectors
    centres = centres_for(args.tickets, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    now = datetime.now(UTC)
    report: dict = {"rss_before_mb": rss_mb(), "threads": torch.get_num_threads()}

    index = SymptomIndex(matcher)
    started = time.perf_counter()
    index.sync(store)
    report["load_s"] = time.perf_counter() - started
    report["rss_after_mb"], report["index_arrays_mb"], report["rows"] = (
        rss_mb(),
        index.nbytes / 2**20,
        len(index),
    )

    since = now - WINDOW
    query_ms, matches_ms, hits = [], [], []
    for q in range(args.queries):
        vector = around(centres, np.array([q * 7 % len(centres)]), rng)[0]
        t0 = time.perf_counter()
        found = index.query("", vector=vector, since=since)
        t1 = time.perf_counter()
        query_ms.append((t1 - t0) * 1000)
        hits.append(len(found))
    for q in range(min(args.queries, 300)):
        vector = around(centres, np.array([q * 11 % len(centres)]), rng)[0]
        t0 = time.perf_counter()
        index.matches(store, "", vector=vector, since=since)
        matches_ms.append((time.perf_counter() - t0) * 1000)
    report.update(query_ms=query_ms, matches_ms=matches_ms, hits=hits)

    store.upsert_symptoms(list(entries(args.tickets, NEW_ROWS, centres, now, rng, matcher.name)))
    started = time.perf_counter()
    report["synced_rows"] = index.sync(store)
    report["sync_ms"] = (time.perf_counter() - started) * 1000
    report["peak_mb"] = peak_mb()
    store.dispose()
    return report


# -- the bench ---------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's, the cores)"
    )
    parser.add_argument(
        "--postgres", action="store_true", help="a throwaway database on the local PostgreSQL"
    )
    parser.add_argument(
        "--embed-sample", type=int, default=0, help="also embed this many texts with the model"
    )
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # the fresh process's database URL
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args)))
        return

    url, drop = database(args.postgres)
    store = Store.from_url(url)
    store.upgrade()
    try:
        report = {"backend": store.engine.dialect.name}
        matcher = SemanticMatcher()
        centres, rng, now = (
            centres_for(args.tickets, args.seed),
            np.random.default_rng(args.seed),
            datetime.now(UTC),
        )
        started = time.perf_counter()
        for start in range(0, args.tickets, BATCH):
            count = min(BATCH, args.tickets - start)
            store.upsert_symptoms(list(entries(start, count, centres, now, rng, matcher.name)))
        report["insert_s"] = time.perf_counter() - started
        # A new process reads the rows stamped from SYNC_OVERLAP before its previous read: wait past it,
        # as the bulk of a real index was written long before.
        time.sleep(SYNC_OVERLAP.total_seconds() + 1)
        command = [sys.executable, __file__, "--measure", url, "--tickets", str(args.tickets)]
        command += ["--queries", str(args.queries), "--seed", str(args.seed)]
        if args.threads:
            command += ["--threads", str(args.threads)]
        child = subprocess.run(command, capture_output=True, text=True, check=True)
        report.update(json.loads(child.stdout.strip().splitlines()[-1]))
        if args.embed_sample:
            report.update(embed_sample(store, matcher, args.embed_sample, now))
    finally:
        store.dispose()
        drop()
    print_report(args, report)


def embed_sample(store: Store, matcher: SemanticMatcher, count: int, now: datetime) -> dict:
    texts = [
        {
            "id": 200_000_000 + i,
            "subject": f"Export of report {i % 97} fails with timeout",
            "description": f"When we export report {i} to CSV it spins, then times out after {i % 60}s.",
            "created_at": now.isoformat(),
            "updated_at": now.isoformat(),
            "status": "open",
        }
        for i in range(count)
    ]
    matcher.load()
    index = SymptomIndex(matcher)
    index.sync(store)
    started = time.perf_counter()
    index.add(store, texts)
    return {"embed_insert_per_s": count / (time.perf_counter() - started), "peak_with_model_mb": peak_mb()}


def print_report(args: argparse.Namespace, r: dict) -> None:
    q, m = r["query_ms"], r["matches_ms"]
    python = f"Python {platform.python_version()}, numpy {np.__version__}"
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {python}")
    print(f"store: {r['backend']}; {r['rows']:,} tickets in the index; {r['threads']} torch thread(s)")
    print(
        f"insert (store, precomputed vectors): {args.tickets / r['insert_s']:,.0f} tickets/s "
        f"({r['insert_s']:.1f} s for {args.tickets:,})"
    )
    if "embed_insert_per_s" in r:
        print(
            f"insert with the model embedding each new ticket: {r['embed_insert_per_s']:,.0f} tickets/s "
            f"(sample of {args.embed_sample:,}); peak with the model loaded {r['peak_with_model_mb']:.0f} MB"
        )
    print(
        f"load into a new process: {r['load_s']:.2f} s; incremental sync of {r['synced_rows']:,} new rows: "
        f"{r['sync_ms']:.0f} ms"
    )
    print(
        f"query ({len(q)}, {statistics.mean(r['hits']):.0f} matches on average): "
        f"p50 {percentile(q, 50):.1f} ms, p95 {percentile(q, 95):.1f} ms, p99 {percentile(q, 99):.1f} ms"
    )
    print(
        f"query + rows + exact scores ({len(m)}): p50 {percentile(m, 50):.1f} ms, "
        f"p95 {percentile(m, 95):.1f} ms, p99 {percentile(m, 99):.1f} ms"
    )
    index_mb = r["rss_after_mb"] - r["rss_before_mb"]
    print(
        f"memory of the index: {index_mb:.0f} MB (arrays {r['index_arrays_mb']:.0f} MB); the process: "
        f"{r['rss_before_mb']:.0f} MB before the load (torch imported), {r['rss_after_mb']:.0f} MB after, "
        f"peak {r['peak_mb']:.0f} MB"
    )
    ok_query = percentile(q, 95) <= 20
    ok_memory = index_mb <= 500
    print(
        f"targets: p95 query ≤ 20 ms: {'met' if ok_query else 'MISSED'}; index ≤ 500 MB: "
        f"{'met' if ok_memory else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
