from __future__ import annotations

import psycopg

from lawscreen.locks import exclusive, lock_key


def test_a_second_holder_is_refused_until_the_first_releases(database: str) -> None:
    with exclusive("hourly") as first:
        assert first
        with exclusive("hourly") as second:
            assert not second
        with exclusive("other") as unrelated:
            assert unrelated
    with exclusive("hourly") as again:
        assert again


def test_a_killed_holder_releases_the_lock(database: str) -> None:
    with exclusive("hourly") as held:
        assert held
        with psycopg.connect(database, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks"
                " WHERE locktype = 'advisory' AND classid = %s AND objid = %s",
                ((lock_key("hourly") >> 32) & 0xFFFFFFFF, lock_key("hourly") & 0xFFFFFFFF),
            ).fetchall()
            assert killed == [(True,)]
            # The server freed the lock with the dead connection, while the holder's block is still open.
            admin.execute("SELECT pg_sleep(0.2)")
            relocked = admin.execute("SELECT pg_try_advisory_lock(%s)", (lock_key("hourly"),)).fetchone()
            assert relocked == (True,)
