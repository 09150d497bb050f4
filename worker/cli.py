"""The `escalate` command. Each area registers its own subcommands; this module only assembles them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from worker import cli_evaluate

Register = Callable[[argparse._SubParsersAction], None]


def _registrars() -> list[Register]:
    import worker.cli_followup as cli_followup  # issue 6: backfill, followthrough
    from connector.sandbox import cli as sandbox_cli
    from worker import cli_jobs, cli_ops, cli_service  # cli_ops: issue 7 (doctor, metrics, dashboard)

    return [
        cli_evaluate.register,
        sandbox_cli.register,
        cli_jobs.register,
        cli_service.register,
        cli_ops.register,
        cli_followup.register,  # issue 6: backfill, followthrough
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="escalate",
        description="Decide which tickets must leave support, and hand them over as a complete package.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in _registrars():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
