"""`escalate evaluate` and `escalate rules check`: the brain from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from rules.adapters.coerce import timestamp
from rules.adapters.jsm import case_from_jsm_bundle
from rules.adapters.zendesk import BundleError, case_from_bundle
from rules.case import Case
from rules.evaluate import evaluate, matcher_for
from rules.package_document import assessment_document, package_document
from rules.ruleset import RulesError, load_ruleset
from rules.similarity import load_matcher

FORMATS = ("json", "markdown", "jira-wiki", "adf")


class UsageError(Exception):
    """Bad input from the command line: one clear line, exit status 2."""


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser(
        "evaluate", help="judge one case bundle (Zendesk or JSM) and print the decision or the package"
    )
    ev.add_argument("bundle", help="case bundle JSON file (DESIGN.md), or - for standard input")
    ev.add_argument("--now", help="evaluation time, ISO 8601 (default: the bundle's `now`, else the clock)")
    ev.add_argument("--rules", help="rules file (default: $ESCALATE_RULES, else the shipped ruleset)")
    ev.add_argument("--format", choices=FORMATS, default="json")
    ev.add_argument("--matcher", choices=("auto", "semantic", "lexical"), help="override the rules' matcher")
    ev.set_defaults(func=_guarded(run_evaluate))

    rules = sub.add_parser("rules", help="work with rules files")
    rules_sub = rules.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    check = rules_sub.add_parser("check", help="validate a rules file; names the line of every problem")
    check.add_argument("file", nargs="?", help="rules file (default: the shipped ruleset)")
    check.set_defaults(func=_guarded(run_rules_check))


def _guarded(func):  # type: ignore[no-untyped-def]
    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (UsageError, BundleError) as exc:
            print(f"escalate: {exc}", file=sys.stderr)
            return 2
        except RulesError as exc:
            print(str(exc), file=sys.stderr)
            return 2

    return run


def rules_path(explicit: str | None) -> str | None:
    import os

    return explicit or os.environ.get("ESCALATE_RULES") or None


def read_bundle(source: str) -> Any:
    try:
        raw = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{source}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{source}: cannot read: {exc}") from None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None


def run_evaluate(args: argparse.Namespace) -> int:
    bundle = read_bundle(args.bundle)
    now = None
    if args.now:
        now = timestamp(args.now)
        if now is None:
            raise UsageError(f"--now {args.now!r} is not an ISO 8601 time")
    rules = load_ruleset(rules_path(args.rules))
    matcher = load_matcher(args.matcher) if args.matcher else matcher_for(rules)
    case = case_from_any(bundle, now)
    decision = evaluate(case, rules, matcher).to_dict()
    print(render_decision(decision, args.format))
    return 0


def case_from_any(bundle: Any, now: datetime | None) -> Case:
    """A Zendesk bundle (``ticket``) or a JSM one (``request``, as ``JsmConnector.fetch_case`` writes it)."""
    if (
        isinstance(bundle, dict)
        and "ticket" not in bundle
        and (bundle.get("source") == "jsm" or "request" in bundle)
    ):
        return case_from_jsm_bundle(bundle, now=now)
    return case_from_bundle(bundle, now=now)


def render_decision(decision: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(decision, indent=2, ensure_ascii=False)
    from connector.render import render

    document = package_document(decision["package"]) if decision["package"] else assessment_document(decision)
    return render(document, fmt)


def run_rules_check(args: argparse.Namespace) -> int:
    rules = load_ruleset(args.file)
    source = args.file or "the shipped ruleset"
    print(
        f"{source}: ok (version {rules.version}; {len(rules.catalog)} catalog entries; "
        f"{len(rules.destinations)} destinations; matcher {rules.similarity.matcher})"
    )
    return 0
