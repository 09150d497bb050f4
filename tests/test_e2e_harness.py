"""The end-to-end harness (no tests here): the whole service wired to real servers on this machine.

Used by tests/test_e2e_*.py and tests/test_reliability_*.py: the web app and its intake (the Flask app
the endpoints run in, with a real Redis or inline), the store (SQLite or PostgreSQL), the sandbox
Zendesk and Jira, and the two kinds of worker the tests use:

- ``run_simple_worker``: RQ's SimpleWorker in this process, burst, running the real job
  (``worker.jobs.process_event``) with the context the job builds from the environment — fast, for
  the tests that step through retries and reschedules one worker run at a time;
- ``WorkerProcess``: the real ``escalate worker`` command in a subprocess (RQ's SimpleWorker with its
  scheduler, as deployed; ``--fork`` is the forking Worker), for the tests that kill it or check the
  command end to end. Its environment comes from the sandbox's ``environment()`` like a deployment's
  would.

Subprocess workers use a copy of the shipped rules with the lexical matcher (``lexical_rules``): each
worker process would otherwise load the embedding model at start (seconds per process). The decisions
for the tickets used here are the same with either matcher; in-process tests run the default (semantic)
one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

from connector.http.zendesk_webhook import TRIGGER_EVENT_TYPE
from connector.sandbox.seed import API_USER_ID
from connector.sandbox.server import Sandbox
from tests.conftest_service import as_body, make_settings, sandbox_connector_settings, zendesk_headers
from worker import jobs
from worker.app import Service, build_service, create_app
from worker.store import Store

ROOT = Path(__file__).resolve().parent.parent
WEBHOOK = "/webhooks/zendesk"
# The sandbox tickets the tests use (connector/sandbox/seed.py TICKETS): an outage (engineering,
# critical, created automatically), a security report (security, critical, restricted level) and a
# how-to question (kept in support: a note, no issue).
OUTAGE, SECURITY, HOWTO = 101, 102, 104


def store_url(store: Store) -> str:
    return store.engine.url.render_as_string(hide_password=False)


def lexical_rules(directory: Path) -> Path:
    """The shipped ruleset with ``similarity.matcher: lexical`` (see the module docstring)."""
    rules = yaml.safe_load((ROOT / "rules" / "default_rules.yaml").read_text("utf-8"))
    rules["similarity"]["matcher"] = "lexical"
    path = directory / "rules_lexical.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False, allow_unicode=True), "utf-8")
    return path


@dataclass
class Escalate:
    """The service on real servers: what a test delivers to, runs workers against and inspects."""

    sandbox: Sandbox
    service: Service
    app: Any
    env: dict[str, str] = field(default_factory=dict)
    # Issues the sandbox Jira already had when the test began (its seed): not ours to count.
    seeded: frozenset[str] = frozenset()

    @property
    def store(self) -> Store:
        return self.service.store

    @property
    def rq(self) -> Queue:
        return self.service.queue.rq  # type: ignore[union-attr]

    def deliver(self, ticket_id: int, invocation_id: str = "8350205582", client: Any = None) -> Any:
        """A signed trigger webhook for ``ticket_id``, as Zendesk sends it (a fresh signature each time)."""
        body = as_body({"type": TRIGGER_EVENT_TYPE, "version": 1, "ticket_id": str(ticket_id)})
        client = client or self.app.test_client()
        return client.post(WEBHOOK, data=body, headers=zendesk_headers(body, invocation_id=invocation_id))

    # -- what happened in the sandbox --------------------------------------------------------------

    def issues(self) -> list[dict[str, Any]]:
        """The Jira issues created since the test began, whoever created them."""
        return [i for i in self.sandbox.jira_state.dump()["issues"] if i["key"] not in self.seeded]

    def our_notes(self, ticket_id: int) -> list[dict[str, Any]]:
        """Internal notes the service wrote on the ticket (the seed has agents' notes too)."""
        notes = self.sandbox.zendesk_state.internal_notes(ticket_id)
        return [n for n in notes if n["author_id"] == API_USER_ID]

    def creates(self) -> list[dict[str, Any]]:
        """Every issue-create request Jira answered (v3 on Cloud, v2 on Server)."""
        log = self.sandbox.jira_state.requests
        return [e for e in log.matching("POST", "/rest/api/") if e["path"].rstrip("/").endswith("/issue")]

    # -- the queue -----------------------------------------------------------------------------------

    def release_scheduled(self) -> list[str]:
        """Move every scheduled job to the queue now: what the scheduler does once their time comes."""
        registry = ScheduledJobRegistry(queue=self.rq)
        released = registry.get_job_ids()
        for job_id in released:
            registry.remove(job_id)
            self.rq.enqueue_job(Job.fetch(job_id, connection=self.rq.connection))
        return released

    def scheduled_in(self, job_id: str) -> float:
        registry = ScheduledJobRegistry(queue=self.rq)
        assert job_id in registry.get_job_ids(), f"{job_id} is not scheduled"
        from datetime import UTC, datetime

        return (registry.get_scheduled_time(job_id) - datetime.now(UTC)).total_seconds()

    def abandon_started(self) -> None:
        """Clean up the started registry as if the dead worker's heartbeat had long expired: its jobs
        are retried (or failed as abandoned), which RQ's maintenance does on its own after the job
        timeout; the test moves the clock instead of waiting."""
        StartedJobRegistry(queue=self.rq).cleanup(timestamp=time.time() + 24 * 3600)


def build(
    sandbox: Sandbox,
    store: Store,
    tmp_path: Path,
    *,
    redis_url: str | None,
    rules: Path | None = None,
    **settings: Any,
) -> Escalate:
    """The web side on ``store`` (and Redis, or inline without), and the environment of a worker;
    ``settings`` are further ``Settings`` values (e.g. ``jsm_project_key``)."""
    settings = make_settings(
        tmp_path,
        redis_url=redis_url,
        database_url=store_url(store),
        rules_path=str(rules) if rules else None,
        **sandbox_connector_settings(sandbox),
        **settings,
    )
    service = build_service(settings, store=store)
    app = create_app(settings, service=service)
    env = {
        **os.environ,
        **sandbox.environment(),
        "DATABASE_URL": store_url(store),
        "ESCALATE_QUEUE": settings.queue_name,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
    if rules:
        env["ESCALATE_RULES"] = str(rules)
    # Over HTTP, so the sandbox seeds what it seeds lazily before its first request (its service desk).
    with urllib.request.urlopen(f"{sandbox.jira_url}/_sandbox/state", timeout=10) as answer:
        seeded = frozenset(i["key"] for i in json.load(answer)["issues"])
    return Escalate(sandbox, service, app, env, seeded)


# -- workers -------------------------------------------------------------------------------------------


def use_worker_environment(monkeypatch: Any, system: Escalate) -> None:
    """This process's environment becomes the worker's, so the job builds its context from it
    (``worker.jobs.worker_context``) exactly as a worker process does."""
    names = ("REDIS_URL", "DATABASE_URL", "ESCALATE_QUEUE", "ESCALATE_RULES", *system.sandbox.environment())
    for name in names:
        if name in system.env:
            monkeypatch.setenv(name, system.env[name])
    monkeypatch.setattr(jobs, "_context", None)


def run_simple_worker(system: Escalate) -> None:
    """One burst of RQ's SimpleWorker in this process (no scheduler: the test releases scheduled jobs)."""
    SimpleWorker([system.rq], connection=system.rq.connection).work(burst=True)


def drop_worker_context() -> None:
    """Close the in-process job context's database connections (after a test's worker runs)."""
    if jobs._context is not None:
        jobs._context.store.dispose()
    jobs._context = None


class WorkerProcess:
    """``escalate worker`` in a subprocess of its own session, so that killing it is exact."""

    def __init__(self, env: dict[str, str], *, burst: bool, log: Path) -> None:
        self.log = log
        argv = [sys.executable, "-c", "import sys; from worker.cli import main; sys.exit(main())", "worker"]
        if burst:
            argv.append("--burst")
        self._out = log.open("ab")
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._out.close()

    def output(self) -> str:
        return self.log.read_text("utf-8", "replace")[-4000:]

    def descendants(self) -> list[int]:
        """The worker's children and theirs: the work horse (its own process group) and the scheduler."""
        found: list[int] = []
        todo = [self.process.pid]
        while todo:
            pid = todo.pop()
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
            except FileNotFoundError:
                continue
            for task in tasks:
                try:
                    children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
                except FileNotFoundError:
                    continue
                for child in map(int, children):
                    found.append(child)
                    todo.append(child)
        return found

    def kill(self) -> None:
        """SIGKILL the worker and every process it started, parent first so that none of them can
        react (the work horse runs in its own process group, so a group kill would miss it)."""
        children = self.descendants()
        for pid in [self.process.pid, *children]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._out.close()
        for pid in children:  # reaped by init once orphaned; make sure they are gone before going on
            wait_until(lambda pid=pid: not Path(f"/proc/{pid}").exists() or _zombie(pid), timeout=10)

    def stop(self) -> None:
        """Ends this process if a failed test left it running (its own handle, no broad signal)."""
        if self.process.poll() is None:
            self.kill()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return True


def run_worker_process(system: Escalate, log: Path, timeout: float = 120) -> None:
    """``escalate worker --burst`` until the queue is empty; fails the test with its output if it fails."""
    worker = WorkerProcess(system.env, burst=True, log=log)
    try:
        code = worker.wait(timeout)
    finally:
        worker.stop()
    assert code == 0, worker.output()


def wait_until(predicate: Callable[[], Any], *, timeout: float = 30, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:g} s")
        time.sleep(interval)


def actions(store: Store, ticket_id: int, target: str | None = None) -> list[str]:
    """The audited actions on a ticket, oldest first (their names)."""
    return [a.action for a in reversed(store.actions(target=target, subject=str(ticket_id), limit=200))]


def labels_of(issue: dict[str, Any]) -> set[str]:
    return set(issue["labels"])


def one(items: Iterable[Any]) -> Any:
    found = list(items)
    assert len(found) == 1, f"expected exactly one, got {len(found)}: {found!r}"[:2000]
    return found[0]
