"""`lawscreen db ...`: migrations and the embedded server."""

from __future__ import annotations

from typing import Annotated

import typer
from alembic import command

from lawscreen import embedded, migrate
from lawscreen.cli._output import console
from lawscreen.database import database_url, is_embedded, redacted
from lawscreen.settings import get_settings

app = typer.Typer(help="Database migrations and the embedded server.", no_args_is_help=True)


@app.command()
def upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply migrations up to REVISION."""
    migrate.upgrade(revision)
    console.print(f"database at [bold]{migrate.current_revision()}[/] ({redacted(database_url())})")


@app.command()
def downgrade(revision: Annotated[str, typer.Argument(help="Target revision, e.g. -1 or base.")]) -> None:
    """Revert migrations down to REVISION."""
    migrate.downgrade(revision)
    console.print(f"database at [bold]{migrate.current_revision() or 'base'}[/]")


@app.command()
def current() -> None:
    """Print the applied and the latest revision."""
    console.print(f"applied: {migrate.current_revision() or 'none'}   latest: {migrate.head_revision()}")


@app.command()
def revision(
    message: Annotated[str, typer.Option("--message", "-m", help="What the migration does.")],
    autogenerate: Annotated[bool, typer.Option(help="Diff lawscreen/models.py against the database.")] = True,
) -> None:
    """Write a new migration file (for developers), numbered after the latest one."""
    command.revision(
        migrate.alembic_config(),
        message=message,
        autogenerate=autogenerate,
        rev_id=migrate.next_revision_id(),
    )


@app.command()
def stop() -> None:
    """Stop the embedded server (its data stays)."""
    if not is_embedded():
        console.print("LAWSCREEN_DATABASE_URL is set: there is no embedded server to stop.")
        return
    stopped = embedded.stop(get_settings().data_dir)
    console.print("embedded server stopped" if stopped else "embedded server was not running")
