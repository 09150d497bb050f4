"""`escalate backfill --days N` and `escalate followthrough check|cron` (issue 6).

The main CLI calls ``register(subparsers)``; every command sets ``func``, called with the parsed arguments
and returning the exit status.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any


def register(subparsers: Any) -> None:
    backfill = subparsers.add_parser(
        "backfill", help="fill the symptom index from Zendesk's incremental export (resumable)"
    )
    backfill.add_argument("--days", type=float, default=None, help="how far back (default: lookback window)")
    backfill.add_argument("--restart", action="store_true", help="start over instead of resuming")
    backfill.add_argument("--per-page", type=int, default=1000, help="tickets per export page (at most 1000)")
    backfill.add_argument("--quiet", action="store_true", help="no progress bar; print the summary as JSON")
    backfill.set_defaults(func=cmd_backfill)

    follow = subparsers.add_parser("followthrough", help="chase stalled escalations and overdue updates")
    commands = follow.add_subparsers(dest="followthrough_command", required=True, metavar="COMMAND")
    check = commands.add_parser("check", help="run one follow-through pass now, in this process")
    check.add_argument("--now", help="the check's clock, ISO 8601 (default: the current time)")
    check.set_defaults(func=cmd_check)
    cron = commands.add_parser("cron", help="run RQ's cron scheduler enqueueing the check (needs REDIS_URL)")
    cron.add_argument("--interval", type=int, default=None, help="seconds between checks (default 300)")
    cron.set_defaults(func=cmd_cron)


def _context() -> Any:
    from worker.config import Settings
    from worker.jobs import JobContext
    from worker.queue import InlineQueue, RedisQueue
    from worker.store import Store

    settings = Settings.from_env()
    store = Store.from_url(settings.database_url)
    if settings.auto_migrate:
        store.upgrade()
    queue: Any = (
        RedisQueue.from_url(settings.redis_url, settings.queue_name)
        if settings.redis_url
        else InlineQueue(lambda: context)
    )
    context = JobContext(settings=settings, store=store, queue=queue)
    return context


def cmd_backfill(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from worker.backfill import backfill
    from worker.runtime import runtime_for

    ctx = _context()
    rt = runtime_for(ctx.settings)
    days = args.days if args.days is not None else rt.rules.thresholds.lookback_days
    now = datetime.now(UTC)
    if args.quiet:
        result = backfill(
            ctx.store,
            rt.zendesk,
            rt.matcher,
            days=days,
            now=now,
            restart=args.restart,
            per_page=args.per_page,
        )
        print(json.dumps(result, default=str))
        return 0
    console = Console(stderr=True)
    span = max(days * 86400, 1.0)
    with Progress(
        TextColumn("[bold]symptom index[/]"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[seen]} tickets read, {task.fields[indexed]} indexed"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("backfill", total=span, seen=0, indexed=0)

        def on_page(state: dict[str, Any]) -> None:
            through = state.get("through")
            done = span
            if through and not state.get("done"):
                start = datetime.fromisoformat(state["start_time"])
                done = min(max((datetime.fromisoformat(through) - start).total_seconds(), 0.0), span)
            progress.update(task, completed=done, seen=state.get("seen", 0), indexed=state.get("indexed", 0))

        result = backfill(
            ctx.store,
            rt.zendesk,
            rt.matcher,
            days=days,
            now=now,
            restart=args.restart,
            per_page=args.per_page,
            on_page=on_page,
        )
    console.print(
        f"{result['seen']} tickets read over {result['pages']} page(s), {result['indexed']} indexed, "
        f"{result['pruned']} pruned; {ctx.store.count_symptoms()} in the index"
        + ("; filled." if result["done"] else "; run again to continue.")
    )
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from worker.followthrough import run

    now = datetime.fromisoformat(args.now.replace("Z", "+00:00")).astimezone(UTC) if args.now else None
    print(json.dumps(run(_context(), now=now), default=str, indent=2))
    return 0


def cmd_cron(args: argparse.Namespace) -> int:
    from worker.config import Settings
    from worker.followthrough import cron_scheduler, interval_seconds
    from worker.queue import redis_connection

    settings = Settings.from_env()
    if settings.redis_url is None:
        print("REDIS_URL is not set: inline mode runs the check in the web process.", file=sys.stderr)
        return 2
    interval = args.interval if args.interval is not None else (interval_seconds() or 300)
    cron_scheduler(redis_connection(settings.redis_url), settings.queue_name, interval=interval).start()
    return 0
