"""Alembic environment: the database URL and the metadata both come from lawscreen itself."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from lawscreen import models
from lawscreen.database import database_url, get_engine

# Any constant works; it only has to be the same for every process that migrates.
MIGRATION_LOCK_ID = 0x1A45C5EE


def _configure(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=models.metadata, compare_type=True)


def run_migrations_offline() -> None:
    context.configure(
        url=database_url().render_as_string(hide_password=False),
        target_metadata=models.metadata,
        literal_binds=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    with get_engine().connect() as connection:
        _configure(connection)
        with context.begin_transaction():
            # Two workers starting at once must not both apply the same migration.
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
