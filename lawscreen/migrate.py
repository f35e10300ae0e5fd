"""Alembic, driven from code: the migrations ship inside the package, the URL comes from settings."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import migrations
from lawscreen.database import get_engine, is_embedded
from lawscreen.errors import SchemaOutdatedError


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return config


def upgrade(revision: str = "head") -> None:
    command.upgrade(alembic_config(), revision)


def downgrade(revision: str) -> None:
    command.downgrade(alembic_config(), revision)


def current_revision() -> str | None:
    with get_engine().connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def next_revision_id() -> str:
    """Migrations are numbered 0001, 0002, ... so their files sort in the order they apply."""
    return f"{len(list(ScriptDirectory.from_config(alembic_config()).walk_revisions())) + 1:04d}"


def ensure_schema() -> None:
    """Bring the embedded database up to date; refuse to run on an outdated external one.

    The embedded server belongs to lawscreen, so migrating it silently is what a user expects. A
    server shared with others is migrated only by an explicit ``lawscreen db upgrade``.
    """
    current, head = current_revision(), head_revision()
    if current == head:
        return
    if is_embedded():
        upgrade()
        return
    raise SchemaOutdatedError(
        f"the database is at migration {current or 'none'}, the code needs {head}: run `lawscreen db upgrade`"
    )
