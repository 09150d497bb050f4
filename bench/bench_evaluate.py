"""Cases per second through the whole brain (adapter → triggers → similarity → package), with histories of
0, 1,000 and 10,000 tickets, on one core, and the process's peak memory.

    OMP_NUM_THREADS=1 python bench/bench_evaluate.py [--matcher semantic|lexical] [--cases 300]
        [--encoder onnx-int8|torch] [--layers N --threshold T]

new/s: tickets never seen before (their embedding computed); again/s: the same tickets re-judged (an
update that left the text alone); parse/s: reading a bundle whose history holds that many tickets;
index s: parsing and embedding the history once, as the symptom index does. ``--layers`` runs the semantic
model cut to its first N layers (bench/tune_similarity.py --layers measures them; give the threshold it tunes
for that cut, since the default is tuned for the default cut only).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rules.adapters.zendesk import case_from_bundle
from rules.evaluate import default_ruleset, evaluate
from rules.similarity import ENCODERS, SemanticMatcher, load_matcher

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)
AREAS = [
    "CSV export",
    "PDF invoice",
    "SSO login",
    "webhook delivery",
    "mobile app",
    "search index",
    "email notifications",
    "calendar sync",
    "report builder",
    "API pagination",
    "bulk import",
    "billing page",
]
FAULTS = [
    "times out",
    "fails with an error",
    "shows stale data",
    "is very slow",
    "crashes on open",
    "returns a 500 error",
    "drops some records",
    "shows the wrong totals",
    "never finishes",
    "loses the last change",
]
FRAMES = [
    "{area} {fault}",
    "Our {area} {fault} since yesterday",
    "{area}: {fault} for several users",
    "Urgent - the {area} {fault}",
    "Since the update the {area} {fault} every time",
]


def text(rng: random.Random) -> tuple[str, str]:
    area, fault = rng.choice(AREAS), rng.choice(FAULTS)
    subject = rng.choice(FRAMES).format(area=area, fault=fault)
    body = (
        f"Hello, {subject.lower()}. We tried again in another browser and it still {fault}. "
        f"Ticket ref {rng.randrange(10**6)}. Please help."
    )
    return subject, body


def ticket(tid: int, rng: random.Random, hours_ago: float) -> dict:
    subject, body = text(rng)
    return {
        "id": tid,
        "subject": subject,
        "description": body,
        "status": rng.choice(["open", "solved", "new"]),
        "priority": rng.choice(["low", "normal", "high"]),
        "type": rng.choice(["problem", "incident", "question"]),
        "organization_id": rng.randrange(1, 400),
        "requester_id": rng.randrange(1000, 9000),
        "tags": [],
        "created_at": (NOW - timedelta(hours=hours_ago)).isoformat(),
    }


def organizations() -> list[dict]:
    return [
        {
            "id": i,
            "name": f"Org {i}",
            "tags": [],
            "organization_fields": {"arr": i * 1000, "sla_tier": "business"},
        }
        for i in range(1, 400)
    ]


def run(history_size: int, cases: int, matcher, seed: int = 7) -> dict:
    """Three figures per history size:

    - new: a ticket never seen before (its embedding is computed), history already indexed (parsed and
      embedded, as the service's symptom index holds it);
    - again: the same tickets judged again (an update that did not change the text: embedding cached);
    - parse: the adapter alone, reading the history from a bundle on every case (the CLI's path).
    """
    rng = random.Random(seed)
    raw_history = [ticket(100000 + i, rng, rng.uniform(1, 24 * 14)) for i in range(history_size)]
    orgs = organizations()
    index = case_from_bundle({"ticket": {"id": 0}, "history": raw_history, "organizations": orgs}, now=NOW)
    raw_cases = [ticket(i + 1, rng, rng.uniform(0, 48)) for i in range(cases + 1)]
    rules = default_ruleset()

    def judge(raw: dict) -> bool:
        case = replace(
            case_from_bundle({"ticket": raw}, now=NOW),
            history=index.history,
            organizations=index.organizations,
        )
        return evaluate(case, rules, matcher).escalate

    start = time.perf_counter()
    judge(raw_cases[0])  # embeds the history once
    warm = time.perf_counter() - start
    new = _rate(judge, raw_cases[1:])
    again = _rate(judge, raw_cases[1:])
    parse = _rate(
        lambda raw: case_from_bundle({"ticket": raw, "history": raw_history, "organizations": orgs}, now=NOW),
        raw_cases[1:],
    )
    return {
        "history": history_size,
        "cases": cases,
        "new": new,
        "again": again,
        "parse": parse,
        "index_s": warm,
    }


def _rate(func, items: list) -> float:
    start = time.perf_counter()
    for item in items:
        func(item)
    return len(items) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--matcher", default="semantic", choices=["semantic", "lexical"])
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--histories", default="0,1000,10000")
    parser.add_argument(
        "--encoder", choices=ENCODERS, help="the semantic matcher's encoder (default: the module's choice)"
    )
    parser.add_argument("--layers", type=int, help="run the semantic model's first N layers only")
    parser.add_argument("--threshold", type=float, help="the semantic threshold (default: the module's)")
    args = parser.parse_args()
    if args.matcher == "semantic":
        import torch

        torch.set_num_threads(1)  # the ONNX encoder runs on one thread of its own
    matcher = load_matcher(args.matcher, encoder=args.encoder, semantic_threshold=args.threshold)
    if args.matcher == "semantic" and args.layers is not None:
        matcher = SemanticMatcher(matcher.threshold, encoder=args.encoder, layers=args.layers)
    with open("/proc/cpuinfo") as info:
        cpu = next(
            (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
            platform.processor(),
        )
    print(
        f"machine: {cpu}; {os.cpu_count()} cores; Python {platform.python_version()}; one thread; "
        f"matcher {matcher.name}, threshold {matcher.threshold}"
    )
    print(f"{'history':>8} {'cases':>6} {'new/s':>8} {'again/s':>8} {'parse/s':>8} {'index s':>8}")
    for size in (int(s) for s in args.histories.split(",")):
        r = run(size, args.cases, matcher)
        print(
            f"{r['history']:>8} {r['cases']:>6} {r['new']:>8.1f} {r['again']:>8.1f} {r['parse']:>8.1f} "
            f"{r['index_s']:>8.2f}"
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (max RSS, model included): {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
