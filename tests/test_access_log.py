"""The web process's access log (worker/access_log.py): gunicorn's lines, built from the named atoms only."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from gunicorn.config import Config
from gunicorn.glogging import Logger

from tests.conftest_service import _spare_port, wait_until_serving
from worker.access_log import AccessLogger, named_atoms

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_FORMAT = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss'


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def line_of(kind: type[Logger], access_log_format: str, resp: Any, req: Any, environ: dict[str, Any]) -> str:
    cfg = Config()
    cfg.set("accesslog", os.devnull)
    cfg.set("access_log_format", access_log_format)
    logger = kind(cfg)
    lines = Lines()
    logger.access_log.addHandler(lines)
    try:
        logger.access(resp, req, environ, timedelta(seconds=1, microseconds=2345))
    finally:
        logger.access_log.removeHandler(lines)
    assert len(lines.lines) == 1
    return lines.lines[0]


def exchange(status: Any = "202 ACCEPTED", sent: int | None = 17, path: str = "/webhooks/zendesk") -> tuple:
    resp = SimpleNamespace(status=status, sent=sent, headers=[("Content-Type", "application/json")])
    req = SimpleNamespace(headers=[("HOST", "escalate.example"), ("X-REQUEST-ID", "abc-123")])
    environ = {
        "REMOTE_ADDR": "10.1.2.3",
        "REQUEST_METHOD": "POST",
        "RAW_URI": path,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    return resp, req, environ


@pytest.mark.parametrize(
    "args",
    [
        {},
        {"status": 401, "sent": None},
        {"status": "413 REQUEST ENTITY TOO LARGE", "sent": 0},
        {"path": '/webhooks/zendesk"injected" 200'},  # a quote in the path stays inside its field
    ],
)
def test_the_shipped_format_gives_gunicorns_own_line(args):
    ours = line_of(AccessLogger, SHIPPED_FORMAT, *exchange(**args))
    assert ours == line_of(Logger, SHIPPED_FORMAT, *exchange(**args))
    assert ours.startswith('10.1.2.3 "POST ')
    assert ours.endswith(" 1.002345s")


def test_every_atom_it_computes_means_what_gunicorns_does():
    everything = " ".join(f"%({name})s" for name in "hmUqHsbBTDMLp")
    assert named_atoms(everything) is not None
    assert line_of(AccessLogger, everything, *exchange()) == line_of(Logger, everything, *exchange())


def test_a_format_naming_a_header_is_left_to_gunicorn():
    header_format = '%(h)s "%(r)s" %(s)s %({x-request-id}i)s'
    assert named_atoms(header_format) is None
    ours = line_of(AccessLogger, header_format, *exchange())
    assert ours == line_of(Logger, header_format, *exchange())
    assert ours.endswith(" abc-123")


@pytest.mark.slow
def test_escalate_serve_logs_one_json_line_per_request(tmp_path):
    """deploy/gunicorn.conf.py loads the logger by name; each request leaves one line on stdout."""
    port = _spare_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'app.sqlite3'}",
        "ZENDESK_WEBHOOK_SECRET": "access-log-test-secret",
        "WEB_CONCURRENCY": "1",
        "ESCALATE_BIND": f"127.0.0.1:{port}",
        "ESCALATE_LOG_FORMAT": "json",
    }
    env.pop("REDIS_URL", None)
    env.pop("ESCALATE_ACCESS_LOG", None)
    out = tmp_path / "stdout.txt"
    command = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy/gunicorn.conf.py")]
    with out.open("wb") as sink:
        web = subprocess.Popen(
            [*command, "worker.app:create_app()"],
            env=env,
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_serving(f"{url}/healthz", web, out.read_text)
            forged = requests.post(f"{url}/webhooks/zendesk?token=secret-in-query", data=b"{}", timeout=10)
            assert forged.status_code == 401
        finally:
            web.terminate()
            web.wait(timeout=30)
    records = [json.loads(line) for line in out.read_text().splitlines() if line.startswith("{")]
    access = [r["message"] for r in records if r.get("logger") == "gunicorn.access"]
    assert any(m.startswith('127.0.0.1 "GET /healthz" 200 ') for m in access), access
    posted = [m for m in access if '"POST /webhooks/zendesk" 401 ' in m]
    assert len(posted) == 1 and "secret-in-query" not in posted[0], access
