"""Alembic migrations of the Store's schema (env.py, versions/). Run through worker.store.migrate."""
