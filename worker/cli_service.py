"""`escalate serve` and `escalate demo`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DEFAULT_GUNICORN_CONFIG = Path("deploy/gunicorn.conf.py")


def register(sub: argparse._SubParsersAction) -> None:
    serve = sub.add_parser("serve", help="run the web service (webhooks, sidebar, health) under gunicorn")
    serve.add_argument("--config", default=str(DEFAULT_GUNICORN_CONFIG), help="gunicorn config file")
    serve.add_argument("--bind", help="address:port (default: the config's, 0.0.0.0:$PORT)")
    serve.set_defaults(func=run_serve)

    demo = sub.add_parser("demo", help="run the sandbox's tickets through the whole service, inline")
    demo.add_argument("--database", default="var/demo.sqlite3", help="SQLite file for the demo's store")
    demo.add_argument(
        "--desk",
        choices=("zendesk", "jsm"),
        default="zendesk",
        help="the helpdesk the demo's tickets live in: Zendesk, or a Jira Service Management desk",
    )
    demo.set_defaults(func=run_demo)


def run_serve(args: argparse.Namespace) -> int:
    argv = ["gunicorn"]
    if Path(args.config).is_file():
        argv += ["-c", args.config]
    if args.bind:
        argv += ["--bind", args.bind]
    argv.append("worker.app:create_app()")
    os.execvp("gunicorn", argv)
    return 0  # not reached: exec replaces this process


def run_demo(args: argparse.Namespace) -> int:
    from worker.demo import run_demo as demo

    demo(Path(args.database), desk=args.desk)
    return 0
