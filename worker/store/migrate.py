"""Schema migrations, run from code: at start-up, from `escalate db upgrade`, and in the tests.

The alembic environment lives in the ``worker.migrations`` package so it ships with the wheel; no
alembic.ini is needed (``escalate db ...`` replaces the alembic command line).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from worker.store.engine import immediate

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # env.py takes the engine from here rather than from a URL in a file, which would need
    # escaping of '%' in passwords and would put credentials on disk.
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    # BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL (env.py): several processes
    # starting at once upgrade one after the other instead of racing on the DDL.
    with immediate(), engine.begin() as connection:
        config = alembic_config(engine)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    with immediate(), engine.begin() as connection:
        config = alembic_config(engine)
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def revision(engine: Engine, message: str, *, autogenerate: bool = True) -> None:
    """Write a new revision file into worker/migrations/versions (a developer's command)."""
    with engine.begin() as connection:
        config = alembic_config(engine)
        config.attributes["connection"] = connection
        command.revision(config, message=message, autogenerate=autogenerate)
