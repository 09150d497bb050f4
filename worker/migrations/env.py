"""Alembic environment: runs on the connection worker.store.migrate hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from worker.store.models import Base

config = context.config
target_metadata = Base.metadata

# Any constant shared by every process of this service: pg_advisory_xact_lock serializes upgrades.
_ADVISORY_LOCK_ID = 0x45534341  # "ESCA"


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK_ID})")
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # Called without a connection (e.g. a bare `alembic` run with -x): open one from the settings.
    from worker.config import Settings
    from worker.store.engine import make_engine

    engine = config.attributes.get("engine") or make_engine(Settings.from_env().database_url)
    with engine.begin() as connection:
        _run(connection)


def run_migrations_offline() -> None:
    from worker.config import Settings
    from worker.store.engine import normalise_url

    context.configure(
        url=normalise_url(Settings.from_env().database_url),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
