"""Engines for the two backends we run on: SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url

# Set while a Store block needs SQLite's write lock from its first statement (see `immediate`).
_begin_immediate: ContextVar[bool] = ContextVar("escalate_sqlite_begin_immediate", default=False)


def normalise_url(url: str | URL) -> URL:
    """`postgres://` and `postgresql://` mean psycopg 3, the driver we ship; SQLAlchemy's default for
    a bare `postgresql://` is psycopg2, which we do not install."""
    parsed = make_url(str(url)) if isinstance(url, str) else url
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, **kwargs)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(parsed, **kwargs)


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
