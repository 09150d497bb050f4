"""The other operator commands: the queue dashboard, the worker probe, and `escalate metrics serve`."""

from __future__ import annotations

import argparse
import base64
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from redis import Redis
from rq import Queue, SimpleWorker

from tests.conftest_service import _spare_port
from worker import cli_ops, ops_dashboard
from worker.config import Settings
from worker.ops_dashboard import DashboardError, create_dashboard

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "a-dashboard-password"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}


def failing() -> None:
    raise RuntimeError("boom: the reason a person should see")


@pytest.fixture
def queue_with_history(redis_url):
    connection = Redis.from_url(redis_url)
    queue = Queue("escalate", connection=connection)
    queue.enqueue(failing, job_id="zendesk-failed-1", description="zendesk evaluate_ticket ticket 7")
    SimpleWorker([queue], connection=connection).work(burst=True)
    queue.enqueue("os.path.join", "a", "b", job_id="zendesk-waiting-1", description="zendesk ticket 8")
    return queue


def test_the_dashboard_needs_redis_and_a_real_password(redis_url):
    with pytest.raises(DashboardError, match="REDIS_URL"):
        create_dashboard(Settings(), environ={"ESCALATE_DASHBOARD_PASSWORD": PASSWORD})
    with pytest.raises(DashboardError, match="ESCALATE_DASHBOARD_PASSWORD"):
        create_dashboard(Settings(redis_url=redis_url), environ={"ESCALATE_DASHBOARD_PASSWORD": "short"})


def test_the_built_in_page_is_behind_a_password_and_read_only(redis_url, queue_with_history, monkeypatch):
    monkeypatch.setattr(ops_dashboard, "_mount_rq_dashboard", lambda app, settings: None)
    app = create_dashboard(Settings(redis_url=redis_url), environ={"ESCALATE_DASHBOARD_PASSWORD": PASSWORD})
    assert app.config["ESCALATE_DASHBOARD_KIND"] == "built-in"
    client = app.test_client()
    assert client.get("/").status_code == 401
    assert "Basic" in client.get("/").headers["WWW-Authenticate"]
    wrong = {"Authorization": "Basic " + base64.b64encode(b"admin:guess").decode()}
    assert client.get("/", headers=wrong).status_code == 401
    page = client.get("/", headers=AUTH)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    html = page.get_data(as_text=True)
    assert "zendesk-failed-1" in html and "boom: the reason a person should see" in html
    status = client.get("/status.json", headers=AUTH).get_json()
    assert status["counts"]["queued"] == 1 and status["counts"]["failed"] == 1
    assert client.post("/", headers=AUTH).status_code == 403


def test_rq_dashboard_mounts_behind_the_same_password_when_installed(redis_url, queue_with_history):
    pytest.importorskip("rq_dashboard")
    app = create_dashboard(Settings(redis_url=redis_url), environ={"ESCALATE_DASHBOARD_PASSWORD": PASSWORD})
    assert app.config["ESCALATE_DASHBOARD_KIND"] == "rq-dashboard"
    client = app.test_client()
    assert client.get("/0/data/queues.json").status_code == 401
    queues = client.get("/0/data/queues.json", headers=AUTH).get_json()["queues"]
    assert {q["name"]: q["failed_job_registry_count"] for q in queues}["escalate"] == 1
    failed = client.get("/0/data/jobs/escalate/failed/8/asc/1.json", headers=AUTH).get_json()["jobs"]
    assert [j["id"] for j in failed] == ["zendesk-failed-1"]
    # Read-only: rq-dashboard's requeue and delete are POSTs.
    assert client.post("/job/zendesk-failed-1/requeue", headers=AUTH).status_code == 403
    acting = create_dashboard(
        Settings(redis_url=redis_url), allow_actions=True, environ={"ESCALATE_DASHBOARD_PASSWORD": PASSWORD}
    ).test_client()
    assert acting.post("/job/zendesk-failed-1/requeue", headers=AUTH).status_code == 200


# -- the worker probe ---------------------------------------------------------------------------


def probe(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> int:
    monkeypatch.setenv("REDIS_URL", redis_url)
    return cli_ops.cmd_probe_worker(argparse.Namespace(max_age=cli_ops.WORKER_HEARTBEAT_MAX_AGE))


def test_the_worker_probe_passes_only_while_this_hosts_worker_beats(monkeypatch, redis_url):
    connection = Redis.from_url(redis_url)
    assert probe(monkeypatch, redis_url) == 1  # nothing registered from this host
    worker = SimpleWorker([Queue("escalate", connection=connection)], connection=connection)
    worker.register_birth()
    worker.heartbeat()
    assert worker.hostname == socket.gethostname()
    assert probe(monkeypatch, redis_url) == 0
    worker.register_death()
    assert probe(monkeypatch, redis_url) == 1


def test_the_worker_probe_does_not_blame_the_worker_for_redis(monkeypatch):
    assert probe(monkeypatch, f"redis://127.0.0.1:{_spare_port()}/0") == 0


# -- metrics serve ------------------------------------------------------------------------------


@pytest.mark.slow
def test_metrics_serve_shows_the_directory_and_can_require_a_token(tmp_path):
    directory = tmp_path / "metrics"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from worker import metrics; metrics.JOBS.labels('evaluate_ticket', 'processed').inc(3)",
        ],
        env=env,
        check=True,
        timeout=60,
    )
    port = _spare_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "metrics", "serve", "--bind", f"127.0.0.1:{port}"],
        env={**env, "ESCALATE_METRICS_TOKEN": "metrics-token-123"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
                break
            except requests.ConnectionError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read()
                time.sleep(0.2)
        assert answer.status_code == 401
        answer = requests.get(
            f"http://127.0.0.1:{port}/metrics",
            headers={"Authorization": "Bearer metrics-token-123"},
            timeout=5,
        )
        assert 'escalate_jobs_total{kind="evaluate_ticket",outcome="processed"} 3.0' in answer.text
    finally:
        server.terminate()
        server.wait(timeout=10)
