"""Test harness: one real PostgreSQL (the embedded wheel) per test session, one database per test.

Each test gets a fresh database cloned from a migrated template (``CREATE DATABASE ... TEMPLATE``
takes a few tens of milliseconds), so tests are isolated even when they open many connections,
commit, or kill backends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from lawscreen import embedded, migrate
from lawscreen.database import reset_engine
from lawscreen.settings import get_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_POSTS = REPO_ROOT / "data" / "sample" / "posts.jsonl"
TEMPLATE_DB = "lawscreen_template"


def _use_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(f"LAWSCREEN_{name.upper()}", value)
    get_settings.cache_clear()
    reset_engine()


def database_uri(admin_uri: str, name: str) -> str:
    return make_url(admin_uri).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees the developer's LAWSCREEN_* variables, .env file or data directory."""
    for name in list(os.environ):
        if name.startswith("LAWSCREEN_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    _use_settings(monkeypatch, data_dir=str(tmp_path / "data"))
    yield
    get_settings.cache_clear()
    reset_engine()


@pytest.fixture(scope="session")
def pg_admin_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URI of the session's server, connected to its maintenance database."""
    data_dir = tmp_path_factory.mktemp("embedded")
    yield database_uri(embedded.ensure_running(data_dir), "postgres")
    embedded.stop(data_dir)


@pytest.fixture(scope="session")
def template_database(pg_admin_uri: str) -> str:
    with psycopg.connect(pg_admin_uri, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE_DB)))
    mp = pytest.MonkeyPatch()
    try:
        _use_settings(mp, database_url=database_uri(pg_admin_uri, TEMPLATE_DB))
        migrate.upgrade()
    finally:
        reset_engine()  # a template must have no open connections when it is cloned
        mp.undo()
        get_settings.cache_clear()
    return TEMPLATE_DB


@pytest.fixture
def empty_database(pg_admin_uri: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A new database with no tables; settings point at it. Yields its URI."""
    yield from _database(pg_admin_uri, monkeypatch, template=None)


@pytest.fixture
def database(pg_admin_uri: str, template_database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A new, migrated database; settings point at it. Yields its URI."""
    yield from _database(pg_admin_uri, monkeypatch, template=template_database)


def _database(admin_uri: str, monkeypatch: pytest.MonkeyPatch, template: str | None) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:12]}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        conn.execute(create)
    uri = database_uri(admin_uri, name)
    _use_settings(monkeypatch, database_url=uri)
    yield uri
    reset_engine()
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def run_cli(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m lawscreen ARGS`` in a clean environment on this checkout's code."""
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO_ROOT), **env}
    return subprocess.run(
        [sys.executable, "-m", "lawscreen", *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
