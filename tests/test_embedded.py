"""The two ways to reach PostgreSQL: the embedded default and an explicit server URL."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from lawscreen import embedded
from tests.conftest import run_cli


def _postmaster_pid(data_dir: Path) -> int:
    return int((embedded.pgdata_dir(data_dir) / "postmaster.pid").read_text().split()[0])


def test_embedded_server_starts_once_and_is_reused_across_commands(tmp_path: Path) -> None:
    data_dir = tmp_path / "lawscreen-data"
    env = {"LAWSCREEN_DATA_DIR": str(data_dir)}
    try:
        first = run_cli("db", "upgrade", env=env, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        pid = _postmaster_pid(data_dir)

        second = run_cli("status", "--json", env=env, cwd=tmp_path)
        assert second.returncode == 0, second.stderr
        report = json.loads(second.stdout)
        assert report["database"]["embedded"] is True
        assert _postmaster_pid(data_dir) == pid  # the same server served both commands
        with psycopg.connect(embedded.ensure_running(data_dir)) as conn:
            assert conn.execute("SELECT version_num FROM alembic_version").fetchone() is not None
    finally:
        stopped = run_cli("db", "stop", env=env, cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped" in stopped.stdout
    assert not embedded.is_running(data_dir)
    assert (embedded.pgdata_dir(data_dir) / "PG_VERSION").exists()  # data kept


def test_embedded_database_is_migrated_on_first_use(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh"
    env = {"LAWSCREEN_DATA_DIR": str(data_dir)}
    try:
        result = run_cli("status", "--json", env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["posts"] == 0
    finally:
        run_cli("db", "stop", env=env, cwd=tmp_path)


def test_server_url_replaces_the_embedded_server(database: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "unused"
    env = {"LAWSCREEN_DATA_DIR": str(data_dir), "LAWSCREEN_DATABASE_URL": database}
    result = run_cli("status", "--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["database"]["embedded"] is False
    assert not embedded.pgdata_dir(data_dir).exists()  # no embedded server was started
