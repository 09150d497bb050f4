"""Engines for the two backends we run on: SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError

# Set while a Store block needs SQLite's write lock from its first statement (see `immediate`).
_begin_immediate: ContextVar[bool] = ContextVar("escalate_sqlite_begin_immediate", default=False)


def normalise_url(url: str | URL) -> URL:
    """`postgres://` and `postgresql://` mean psycopg 3, the driver we ship; SQLAlchemy's default for
    a bare `postgresql://` is psycopg2, which we do not install."""
    parsed = make_url(str(url)) if isinstance(url, str) else url
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


# A pooled connection back in use within this many seconds is taken as alive; one idle longer is pinged
# first. SQLAlchemy's pool_pre_ping pings on every checkout: a round trip per job (one job checks out one
# connection, ``Store.pinned``), 0.3-0.4 ms of a 15 ms re-judgement. What a ping is for is the connection
# that sat idle while the server restarted or a proxy dropped it; one used a second ago that fails anyway
# fails its job's first statement, which RQ retries (a transient error).
PING_AFTER_IDLE = 1.0


def dumps_json(value: Any) -> str:
    """The JSON columns' serializer: orjson. A decision is 18 KB on average (its package and related
    tickets) and every assessment writes one; for a 37 KB one on a 2-core machine, 89-108 us against
    ``json.dumps``'s 527-537 (read back: 158-189 us against 350-439). What ``json.dumps`` writes it writes
    alike: keys that are not strings become strings, and a float's subclass (numpy's float64, a similarity
    score) is a number."""
    return orjson.dumps(value, default=_plain_number, option=orjson.OPT_NON_STR_KEYS).decode()


def dumps_json_sorted(value: Any) -> str:
    """``dumps_json`` with the keys in order: SQLite's JSON is text, compared as text (a rollup is written
    only when it moved), so equal values must be written alike whatever order their keys were built in.
    PostgreSQL's JSONB compares values."""
    return orjson.dumps(
        value, default=_plain_number, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS
    ).decode()


def _plain_number(value: Any) -> float:
    if isinstance(value, float):
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    parsed = normalise_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    kwargs.setdefault("json_serializer", dumps_json_sorted if sqlite else dumps_json)
    kwargs.setdefault("json_deserializer", orjson.loads)
    if sqlite:
        return _sqlite_engine(parsed, **kwargs)
    engine = create_engine(parsed, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Ping a connection at checkout when it was checked in more than ``PING_AFTER_IDLE`` ago (or never):
    a failed ping discards it and the pool takes another (SQLAlchemy retries a checkout whose listener
    raises ``DisconnectionError``)."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("checked_in", float("-inf")) < PING_AFTER_IDLE:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)  # what pool_pre_ping runs
        except Exception as exc:  # whatever the driver raises for a dead connection
            raise DisconnectionError(f"a pooled connection did not answer: {exc}") from exc


def upsert_insert(dialect: str) -> Any:
    """The dialect's INSERT, which has ON CONFLICT: both backends we run on have it."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


@contextmanager
def immediate() -> Iterator[None]:
    """Inside this block a new SQLite transaction starts with BEGIN IMMEDIATE.

    SQLite has no row locks: taking the database write lock up front is how a read-then-write block
    (every writing Store verb, the lock-for-update ones included) stays correct, and it avoids the
    immediate SQLITE_BUSY a deferred transaction gets when it tries to upgrade a read lock after
    another connection wrote. PostgreSQL ignores this and uses SELECT ... FOR UPDATE.
    """
    token = _begin_immediate.set(True)
    try:
        yield
    finally:
        _begin_immediate.reset(token)


def _sqlite_engine(url: URL, **kwargs: Any) -> Engine:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        # The default lives under ./var/, which a fresh checkout does not have.
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    connect_args = kwargs.pop("connect_args", {})
    # How long to wait for SQLite's single write lock (several gunicorn workers, the job thread, a job
    # holding an escalation lock across a Jira call). Kept under Zendesk's ~12 s: a webhook that
    # cannot record its delivery in time answers 503 and Zendesk retries, rather than timing out.
    connect_args.setdefault("timeout", 5)
    # Connections move between the request and the inline job thread through the pool.
    connect_args.setdefault("check_same_thread", False)
    engine = create_engine(url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (the documented pysqlite recipe): the sqlite3 module's own
        # transaction handling skips BEGIN before SELECT and commits before DDL, which breaks both
        # read-then-write isolation and transactional migrations.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        if database and database != ":memory:":
            # WAL: readers (the sidebar, /readyz) are not blocked by a writer.
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if _begin_immediate.get() else "BEGIN")

    return engine
