"""Fixtures for the service: Redis, PostgreSQL, the store, and the app in inline and Redis modes.

Listed in tests/conftest.py's ``pytest_plugins``. Everything talks to real servers on this machine;
tests skip (not fail) where a server is missing. Isolation: the shared Redis is used through one
database number this session claims and flushes per test (never FLUSHALL); PostgreSQL through a
database created for the session and dropped after it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import types
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import text

from connector.http.signing import sign_hub, sign_zendesk
from worker.app import Service, build_service, create_app
from worker.config import Settings
from worker.jobs import JobContext
from worker.store import Store
from worker.store.engine import make_engine

SHARED_REDIS = os.environ.get("ESCALATE_TEST_REDIS", "redis://127.0.0.1:6379")
POSTGRES_ADMIN_URL = os.environ.get("ESCALATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
ZENDESK_SECRET = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="
JIRA_SECRET = "jira-test-secret"
_OWNER_KEY = "escalate-tests:owner"


# -- Redis -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _redis_db() -> Iterator[int]:
    """Claim an empty database number on the shared Redis for this session (highest free first).

    The claim is a key set with NX in that database; a database holding anything else is someone
    else's and left alone.
    """
    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
    for db in range(15, 0, -1):
        client = Redis.from_url(SHARED_REDIS, db=db, socket_connect_timeout=1)
        try:
            if not client.set(_OWNER_KEY, token, nx=True, ex=6 * 3600):
                continue
            if client.dbsize() == 1:
                break
            client.delete(_OWNER_KEY)
        except RedisError as exc:
            pytest.skip(f"shared Redis unavailable at {SHARED_REDIS}: {exc}")
    else:
        pytest.skip("no empty Redis database to claim on the shared server")
    yield db
    if client.get(_OWNER_KEY) == token.encode():
        client.flushdb()
    client.close()


@pytest.fixture
def redis_url(_redis_db: int) -> Iterator[str]:
    """A Redis database of our own on the shared server, empty at the start of each test."""
    client = Redis.from_url(SHARED_REDIS, db=_redis_db)
    owner = client.get(_OWNER_KEY)
    client.flushdb()  # only this database, which this session claimed
    client.set(_OWNER_KEY, owner or b"escalate-tests", ex=6 * 3600)
    client.close()
    yield f"{SHARED_REDIS.rstrip('/')}/{_redis_db}"


@dataclass
class OwnRedis:
    """A redis-server on a spare port that a test can stop and start again (no persistence)."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except RedisError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


def _spare_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(
    url: str, process: subprocess.Popen, output: Callable[[], str], *, timeout: float = 60
) -> None:
    """Until a GET of ``url`` answers 200; fails with the server's ``output`` if it exits or takes longer
    than ``timeout`` (a loaded machine may take a while to answer the first request)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass  # still starting
        assert process.poll() is None and time.monotonic() < deadline, output()[-2000:]
        time.sleep(0.2)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not on PATH")
    server = OwnRedis(_spare_port(), tmp_path)
    server.start()
    yield server
    server.stop()


# -- PostgreSQL and the store ------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A database created for this test session on the local PostgreSQL, dropped afterwards."""
    name = f"escalate_test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL unavailable at {POSTGRES_ADMIN_URL}: {type(exc).__name__}")
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def _pg_store(pg_url: str) -> Iterator[Store]:
    store = Store.from_url(pg_url)
    store.upgrade()
    yield store
    store.dispose()


def _sqlite_store(tmp_path: Path) -> Store:
    store = Store.from_url(f"sqlite:///{tmp_path / 'escalate.sqlite3'}")
    store.upgrade()
    return store


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated, empty Store on each backend."""
    if request.param == "sqlite":
        sqlite = _sqlite_store(tmp_path)
        yield sqlite
        sqlite.dispose()
        return
    pg: Store = request.getfixturevalue("_pg_store")
    with pg.engine.begin() as connection:
        connection.execute(
            text(
                "TRUNCATE deliveries, assessments, escalations, escalation_tickets, audit_log, "
                "symptom_index, symptom_index_state RESTART IDENTITY CASCADE"
            )
        )
    yield pg


# -- the pipeline the jobs call ------------------------------------------------------------------


@dataclass
class FakePipeline:
    """Stands in for worker.pipeline: records the events and raises what a test scripts."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    script: list[BaseException | None] = field(default_factory=list)

    def handle_event(self, event: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        self.calls.append(event)
        if self.script:
            outcome = self.script.pop(0)
            if outcome is not None:
                raise outcome
        return {"handled": event["delivery_id"]}


@pytest.fixture
def fake_pipeline(monkeypatch: pytest.MonkeyPatch) -> FakePipeline:
    fake = FakePipeline()
    module = types.ModuleType("worker.pipeline")
    module.handle_event = fake.handle_event  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "worker.pipeline", module)
    return fake


# -- the app -------------------------------------------------------------------------------------


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "zendesk_webhook_secret": ZENDESK_SECRET,
        "jira_webhook_secret": JIRA_SECRET,
        "database_url": f"sqlite:///{tmp_path / 'app.sqlite3'}",
        "redis_url": None,
    }
    values.update(overrides)
    return Settings(**values)


def sandbox_connector_settings(sandbox: Any) -> dict[str, str]:
    """The ``Settings`` values that point the Zendesk and Jira connectors at the sandbox."""
    env = sandbox.environment()
    return {
        "zendesk_url": env["ZENDESK_URL"],
        "zendesk_email": env["ZENDESK_EMAIL"],
        "zendesk_api_token": env["ZENDESK_API_TOKEN"],
        "jira_url": env["JIRA_URL"],
        "jira_email": env["JIRA_EMAIL"],
        "jira_api_token": env["JIRA_API_TOKEN"],
    }


def sandbox_job_context(sandbox: Any, tmp_path: Path) -> JobContext:
    """A job's context on a fresh SQLite store, its connectors pointed at the sandbox (inline queue)."""
    from worker.queue import InlineQueue

    settings = make_settings(tmp_path, **sandbox_connector_settings(sandbox))
    store = Store.from_url(settings.database_url)
    store.upgrade()
    return JobContext(settings=settings, store=store, queue=InlineQueue(lambda: None))


def _service_app(settings: Settings) -> tuple[Any, Service]:
    service = build_service(settings)
    return create_app(settings, service=service), service


@pytest.fixture
def inline_app(tmp_path: Path, fake_pipeline: FakePipeline) -> Iterator[Any]:
    app, service = _service_app(make_settings(tmp_path))
    yield app
    service.queue.join(timeout=5)  # type: ignore[union-attr]
    service.queue.close()  # type: ignore[union-attr]
    service.store.dispose()


@pytest.fixture
def redis_app(tmp_path: Path, redis_url: str, fake_pipeline: FakePipeline) -> Iterator[Any]:
    app, service = _service_app(make_settings(tmp_path, redis_url=redis_url))
    yield app
    service.store.dispose()


@pytest.fixture(params=["inline", "redis"])
def app(request: pytest.FixtureRequest) -> Any:
    """The app in each mode: inline (REDIS_URL unset) and with Redis."""
    return request.getfixturevalue(f"{request.param}_app")


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


def service_of(app: Any) -> Service:
    return app.extensions["escalate"]


def queued_events(app: Any, fake: FakePipeline) -> list[dict[str, Any]]:
    """What the app queued: jobs in Redis, or (inline) what the job thread ran once it is idle."""
    service = service_of(app)
    queue = service.queue
    if hasattr(queue, "rq"):
        jobs = [queue.rq.fetch_job(job_id) for job_id in queue.rq.get_job_ids()]
        return [job.args[0] for job in jobs if job is not None]
    assert queue.join(timeout=10)
    return list(fake.calls)


# -- signed requests -----------------------------------------------------------------------------


def zendesk_headers(
    body: bytes,
    *,
    secret: str = ZENDESK_SECRET,
    timestamp: str | None = None,
    invocation_id: str | None = "8350205582",
) -> dict[str, str]:
    stamp = timestamp or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {
        "Content-Type": "application/json",
        "X-Zendesk-Webhook-Signature": sign_zendesk(secret, stamp, body),
        "X-Zendesk-Webhook-Signature-Timestamp": stamp,
    }
    if invocation_id is not None:
        headers["X-Zendesk-Webhook-Invocation-Id"] = invocation_id
    return headers


def jira_headers(
    body: bytes, *, secret: str = JIRA_SECRET, identifier: str | None = "1234567"
) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "X-Hub-Signature": sign_hub(secret, body)}
    if identifier is not None:
        headers["X-Atlassian-Webhook-Identifier"] = identifier
    return headers


def as_body(payload: Any) -> bytes:
    return json.dumps(payload).encode("utf-8")
