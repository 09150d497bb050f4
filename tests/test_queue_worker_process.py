"""`escalate worker` for real: an RQ worker with its scheduler, configured from the environment; jobs run in
its own process by default and in a fork per job with ``--fork``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from rq.job import JobStatus

from connector.http.zendesk_webhook import TRIGGER_EVENT_TYPE
from tests.conftest_service import as_body, service_of, zendesk_headers
from worker.store import DeliveryStatus

# The worker process gets a stand-in pipeline (the real one calls Zendesk and Jira): it audits one
# action through the context the job built, so the test sees the job ran in the worker, with its store.
BOOTSTRAP = textwrap.dedent(
    """
    import argparse, os, sys, types

    def handle_event(event, ctx):
        ctx.store.record_action(
            "zendesk", "noop", str(event["ticket_id"]), delivery_id=event["delivery_id"],
            detail={"parent": os.getppid()},
        )
        return {"ok": True}

    module = types.ModuleType("worker.pipeline")
    module.handle_event = handle_event
    sys.modules["worker.pipeline"] = module

    from worker import cli_jobs

    parser = argparse.ArgumentParser()
    cli_jobs.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["worker", "--burst", *sys.argv[1:]])
    sys.exit(args.func(args))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("options", [[], ["--fork"]], ids=["in-process", "fork-per-job"])
def test_the_worker_command_runs_queued_jobs(redis_app, redis_url, tmp_path, options):
    service = service_of(redis_app)
    body = as_body({"type": TRIGGER_EVENT_TYPE, "ticket_id": "42"})
    client = redis_app.test_client()
    assert client.post("/webhooks/zendesk", data=body, headers=zendesk_headers(body)).status_code == 202

    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DATABASE_URL": service.settings.database_url,
        "ESCALATE_QUEUE": service.queue.name,
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    }
    done = subprocess.run(
        [sys.executable, "-c", BOOTSTRAP, *options],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    job = service.queue.rq.fetch_job("zendesk-8350205582")
    assert job.get_status() == JobStatus.FINISHED
    assert service.store.get_delivery("zendesk", "8350205582").status is DeliveryStatus.PROCESSED
    [action] = service.store.actions()
    assert (action.action, action.subject, action.delivery_id) == ("noop", "42", "8350205582")
    # In the worker's own process (its parent: this test), or in a fork of it (its parent: the worker).
    ran_in_worker = action.detail["parent"] == os.getpid()
    assert ran_in_worker is (options == [])
