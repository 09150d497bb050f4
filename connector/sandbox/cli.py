"""``escalate sandbox``: start the local Zendesk and Jira and print how to point Escalate at them.

The main CLI (``worker/cli.py``) calls ``register(subparsers)``; the subcommand's handler is stored as
``func`` on the parsed arguments and returns the process exit code.
"""

from __future__ import annotations

import argparse
import threading

from connector.sandbox import server
from connector.sandbox.seed import L2_GROUP_ID, TICKETS


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "sandbox",
        help="run a local Zendesk and Jira with demo data",
        description="Run a local Zendesk and Jira (in-memory, seeded with demo data) until Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--zendesk-port", type=int, default=0, help="Zendesk port (default: any free port)")
    parser.add_argument("--jira-port", type=int, default=0, help="Jira port (default: any free port)")
    parser.add_argument(
        "--jira-deployment",
        choices=["Cloud", "Server"],
        default="Cloud",
        help="what Jira's serverInfo reports: Cloud (ADF, REST v3) or Server (wiki, REST v2)",
    )
    parser.add_argument(
        "--search-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep new Jira issues out of JQL results this long (Cloud's eventual consistency)",
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace, *, stop: threading.Event | None = None) -> int:
    sandbox = server.start(
        host=args.host,
        zendesk_port=args.zendesk_port,
        jira_port=args.jira_port,
        jira_deployment=args.jira_deployment,
        search_delay_s=args.search_delay,
    )
    try:
        print(f"Zendesk sandbox: {sandbox.zendesk_url}")
        print(f"Jira sandbox:    {sandbox.jira_url}  ({args.jira_deployment})")
        print("\nPoint Escalate at them with:")
        for name, value in sandbox.environment().items():
            print(f"  export {name}={value}")
        print(f"\nSupport L2 group id: {L2_GROUP_ID}")
        print("Demo tickets: " + ", ".join(f"{name}={tid}" for name, tid in TICKETS.items()))
        print("Inspect: GET <url>/_sandbox/state · reset: POST <url>/_sandbox/reset")
        print('Faults:  POST <url>/_sandbox/faults {"status": 429, "retry_after": 30, "count": 1}')
        print("\nRunning until Ctrl-C.", flush=True)
        (stop or threading.Event()).wait()
    except KeyboardInterrupt:
        print("\nStopping the sandbox.")
    finally:
        sandbox.stop()
    return 0
