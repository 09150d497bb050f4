"""Metrics across processes: gunicorn's workers and RQ's one-process-per-job work horses write to one
PROMETHEUS_MULTIPROC_DIR, and whoever serves /metrics adds them up, folding finished processes away."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from connector.http.zendesk_webhook import TRIGGER_EVENT_TYPE
from tests.conftest_service import ZENDESK_SECRET, _spare_port, as_body, wait_until_serving, zendesk_headers
from tests.test_metrics import lexical_rules
from worker.metrics_dir import MANIFEST, DirectoryCollector

ROOT = Path(__file__).resolve().parent.parent

# A process that counts like a job would, then exits (or waits for a line on stdin first).
COUNTING = textwrap.dedent(
    """
    import sys
    from worker import metrics
    n = int(sys.argv[1])
    for _ in range(n):
        metrics.JOBS.labels("evaluate_ticket", "processed").inc()
        metrics.JOB_SECONDS.labels("evaluate_ticket", "processed").observe(0.3)
    print("counted", flush=True)
    if len(sys.argv) > 2:
        sys.stdin.readline()
        metrics.JOBS.labels("evaluate_ticket", "processed").inc()
    """
)


def env_for(directory: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(ROOT), **extra}


def count_in(directory: Path, n: int) -> None:
    subprocess.run(
        [sys.executable, "-c", COUNTING, str(n)],
        env=env_for(directory),
        check=True,
        capture_output=True,
        timeout=60,
    )


def totals(directory: Path) -> dict[str, float]:
    found: dict[str, float] = {}
    for family in DirectoryCollector(str(directory)).collect():
        for sample in family.samples:
            if sample.labels.get("le") in (None, "0.5", "+Inf"):
                key = sample.name + (f"{{le={sample.labels['le']}}}" if "le" in sample.labels else "")
                found[key] = found.get(key, 0) + sample.value
    return found


def db_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.db"))


def test_finished_processes_are_folded_and_still_counted(tmp_path):
    for n in (3, 4, 5):
        count_in(tmp_path, n)
    assert len([f for f in db_files(tmp_path) if f.startswith("counter_esc.")]) == 3
    first = totals(tmp_path)
    assert first["escalate_jobs_total"] == 12
    assert first["escalate_job_duration_seconds_count"] == 12
    assert first["escalate_job_duration_seconds_bucket{le=0.5}"] == 12
    assert first["escalate_job_duration_seconds_sum"] == pytest.approx(3.6)
    # Three processes became one archive per type; scraping again counts the same.
    assert not [f for f in db_files(tmp_path) if f.startswith(("counter_esc.", "histogram_esc."))]
    assert totals(tmp_path) == first
    count_in(tmp_path, 2)
    assert totals(tmp_path)["escalate_jobs_total"] == 14
    assert len(db_files(tmp_path)) == 2  # counter and histogram archives, nothing else


def test_a_running_process_is_read_but_never_folded(tmp_path):
    alive = subprocess.Popen(
        [sys.executable, "-c", COUNTING, "2", "wait"],
        env=env_for(tmp_path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert alive.stdout.readline().strip() == "counted"
        count_in(tmp_path, 1)
        assert totals(tmp_path)["escalate_jobs_total"] == 3
        assert [f for f in db_files(tmp_path) if f.startswith("counter_esc.")], "the live process was folded"
        alive.stdin.write("go\n")
        alive.stdin.flush()
        assert alive.wait(timeout=30) == 0
    finally:
        alive.kill()
    assert totals(tmp_path)["escalate_jobs_total"] == 4  # its last increment, made after the first scrape


def test_folding_is_safe_across_a_crash(tmp_path):
    count_in(tmp_path, 2)
    dead = [tmp_path / f for f in db_files(tmp_path)]
    backup = tmp_path / "backup"
    backup.mkdir()
    for path in dead:
        shutil.copy(path, backup / path.name)
    assert totals(tmp_path)["escalate_jobs_total"] == 2
    # A crash after the manifest was written but before the folded files were deleted: they are back.
    for path in backup.iterdir():
        shutil.copy(path, tmp_path / path.name)
    assert totals(tmp_path)["escalate_jobs_total"] == 2
    assert not [f for f in db_files(tmp_path) if f.startswith("counter_esc.")]
    # A crash while writing the next archive: a half-written generation the manifest does not name.
    (tmp_path / "counter_archive.99.db").write_bytes(b"\0" * 16)
    assert totals(tmp_path)["escalate_jobs_total"] == 2
    assert (tmp_path / MANIFEST).exists() and not (tmp_path / "counter_archive.99.db").exists()


# -- the real processes -------------------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import argparse, sys, types

    def handle_event(event, ctx):
        return {"ok": True}

    module = types.ModuleType("worker.pipeline")
    module.handle_event = handle_event
    sys.modules["worker.pipeline"] = module

    from worker import cli_jobs

    parser = argparse.ArgumentParser()
    cli_jobs.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["worker", "--burst", "--fork"])  # a process per job: the hard case
    sys.exit(args.func(args))
    """
)


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    text = requests.get(f"{url}/metrics", timeout=10).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.slow
def test_gunicorn_workers_and_forked_job_processes_add_up(tmp_path, redis_url):
    """Two gunicorn processes answer the webhooks; an RQ worker forks one process per job; every scrape,
    whichever gunicorn process answers it, shows all of it."""
    if shutil.which("gunicorn") is None:
        pytest.skip("gunicorn not installed")
    metrics_dir = tmp_path / "metrics"
    port = _spare_port()
    env = env_for(
        metrics_dir,
        REDIS_URL=redis_url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'app.sqlite3'}",
        ZENDESK_WEBHOOK_SECRET=ZENDESK_SECRET,
        JIRA_WEBHOOK_SECRET="jira-test-secret",
        ESCALATE_RULES=lexical_rules(tmp_path),
        ESCALATE_QUEUE="escalate-mp",
        WEB_CONCURRENCY="2",
        ESCALATE_BIND=f"127.0.0.1:{port}",
    )
    web = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(ROOT / "deploy/gunicorn.conf.py"),
            "worker.app:create_app()",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{url}/readyz", web, lambda: web.stderr.read().decode())

        def deliver(i: int) -> int:
            body = as_body({"type": TRIGGER_EVENT_TYPE, "ticket_id": str(1000 + i)})
            headers = zendesk_headers(body, invocation_id=f"mp-{i}")
            return requests.post(
                f"{url}/webhooks/zendesk", data=body, headers=headers, timeout=10
            ).status_code

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(deliver, range(20))) == [202] * 20

        accepted = ("escalate_webhooks_total", frozenset({("source", "zendesk"), ("outcome", "accepted")}))
        queued = ("escalate_queue_jobs", frozenset({("queue", "escalate-mp"), ("state", "queued")}))
        for _ in range(6):  # several scrapes, answered by either gunicorn process
            samples = scrape(url)
            assert samples[accepted] == 20
            assert samples[queued] == 20

        done = subprocess.run(
            [sys.executable, "-c", WORKER],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        processed = (
            "escalate_jobs_total",
            frozenset({("kind", "evaluate_ticket"), ("outcome", "processed")}),
        )
        for _ in range(3):
            samples = scrape(url)
            assert samples[processed] == 20  # counted in 20 forked work horses, all gone now
            assert samples[accepted] == 20
        # The finished horses were folded: a couple of archives and the live gunicorn processes remain.
        assert len(list(metrics_dir.glob("*.db"))) < 12
    finally:
        web.send_signal(signal.SIGTERM)
        try:
            web.wait(timeout=30)
        except subprocess.TimeoutExpired:
            web.kill()


def test_job_processes_fold_their_finished_predecessors_without_a_scrape(tmp_path):
    from worker.metrics_dir import fold_if_due

    for n in (1, 2, 3):
        count_in(tmp_path, n)
    assert fold_if_due(str(tmp_path)) is True
    assert not [f for f in db_files(tmp_path) if f.startswith("counter_esc.")]
    count_in(tmp_path, 4)
    assert fold_if_due(str(tmp_path)) is False  # folded moments ago: not due yet
    assert fold_if_due(str(tmp_path), every=0) is True
    assert totals(tmp_path)["escalate_jobs_total"] == 10
