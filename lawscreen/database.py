"""One engine per process, and the transactions callers open on it.

Repository functions take a ``session`` and never commit: the caller decides what commits
together (a prediction and its notification row, say) by wrapping the calls in ``transaction()``.

Which server: ``LAWSCREEN_DATABASE_URL`` when set, otherwise the embedded PostgreSQL under
``LAWSCREEN_DATA_DIR`` (see ``lawscreen.embedded``), started on first use and left running so the
next command reuses it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlmodel import Session

from lawscreen import embedded
from lawscreen.settings import get_settings

DRIVER = "postgresql+psycopg"
# Batch jobs hold few connections at once; a small pool keeps many workers within max_connections.
POOL_SIZE = 5
POOL_MAX_OVERFLOW = 5


def database_url() -> URL:
    """The SQLAlchemy URL of the configured server, starting the embedded one if none is configured."""
    settings = get_settings()
    if settings.database_url is not None:
        raw = settings.database_url.get_secret_value()
    else:
        raw = embedded.ensure_running(settings.data_dir)
    return make_url(raw).set(drivername=DRIVER)


def is_embedded() -> bool:
    return get_settings().database_url is None


_engine: Engine | None = None
# Prefect runs tasks in threads: two of them must not each create an engine (and a pool).
_engine_lock = threading.Lock()


def get_engine() -> Engine:
    global _engine
    with _engine_lock:
        if _engine is None:
            # pool_pre_ping: a server restart or a killed backend costs one reconnect, not a failed task.
            _engine = create_engine(
                database_url(), pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=POOL_MAX_OVERFLOW
            )
        return _engine


def reset_engine() -> None:
    """Forget the engine (and its pool), so the next ``get_engine()`` reads the settings again."""
    global _engine
    with _engine_lock:
        if _engine is not None:
            _engine.dispose()
        _engine = None


@contextmanager
def transaction() -> Iterator[Session]:
    """A session inside one transaction: committed when the block ends, rolled back if it raises."""
    with Session(get_engine(), expire_on_commit=False) as session, session.begin():
        yield session


def redacted(url: URL) -> str:
    """The URL as it may appear in logs and status output: password hidden."""
    return url.render_as_string(hide_password=True)
