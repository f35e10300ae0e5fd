from __future__ import annotations

import psycopg
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from lawscreen import migrate, models
from lawscreen.database import get_engine, reset_engine

TABLES = {
    "sources",
    "crawl_runs",
    "crawl_rejects",
    "posts",
    "predictions",
    "labels",
    "evaluation_posts",
    "model_versions",
    "notifications",
    "chats",
    "retrain_requests",
}


def _tables(uri: str) -> set[str]:
    with psycopg.connect(uri) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {name for (name,) in rows} - {"alembic_version"}


def test_upgrade_from_empty_creates_every_table(empty_database: str) -> None:
    assert _tables(empty_database) == set()
    migrate.upgrade()
    assert _tables(empty_database) == TABLES
    assert migrate.current_revision() == migrate.head_revision()


def test_downgrade_then_upgrade_round_trip(empty_database: str) -> None:
    migrate.upgrade()
    migrate.downgrade("base")
    reset_engine()
    assert _tables(empty_database) == set()
    with psycopg.connect(empty_database) as conn:
        sequence = conn.execute("SELECT to_regclass('label_revision_seq')").fetchone()
    assert sequence == (None,)
    migrate.upgrade()
    assert _tables(empty_database) == TABLES


def test_models_and_migrations_agree(database: str) -> None:
    with get_engine().connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, models.metadata)
    assert differences == []


def test_ensure_schema_refuses_an_outdated_external_database(empty_database: str) -> None:
    import pytest

    from lawscreen.errors import SchemaOutdatedError

    with pytest.raises(SchemaOutdatedError, match="lawscreen db upgrade"):
        migrate.ensure_schema()
    assert _tables(empty_database) == set()
