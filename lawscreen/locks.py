"""Advisory locks: PostgreSQL's way to say "someone is already doing this".

The hourly deployment has a Prefect concurrency limit of one; this is the second line, for runs
started outside Prefect's control (a manual `lawscreen screen`, two `lawscreen serve` processes).
The lock is held by a dedicated connection for the whole run and released when the run ends,
or by the server when that connection dies, so a crashed run never leaves it stuck.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from lawscreen.database import get_engine


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (advisory locks are keyed by bigint)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def exclusive(name: str) -> Iterator[bool]:
    """Try to take the lock ``name`` without waiting; yield whether this process holds it."""
    key = lock_key(name)
    with get_engine().connect() as connection:
        acquired = bool(connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar())
        connection.commit()
        try:
            yield acquired
        finally:
            if acquired:
                try:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    connection.commit()
                except DBAPIError:
                    # The connection died (and took the lock with it); don't pool a broken one.
                    connection.invalidate()
