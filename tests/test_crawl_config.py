"""The sources file, its mirror in the sources table, and which sources are due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from lawscreen.crawl import JsonlSource, V2exSource, due_sources, load_sources, sync_sources
from lawscreen.database import transaction
from lawscreen.errors import ConfigError
from lawscreen.models import Source, SourceKind
from lawscreen.repo.sources import ensure_source
from tests.conftest import REPO_ROOT
from tests.fake_forum import loopback_guard, source_toml  # noqa: F401 - autouse guard


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sources.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _sources() -> dict[str, Source]:
    with transaction() as session:
        return {source.name: source for source in session.exec(select(Source)).all()}


def test_the_example_file_is_valid() -> None:
    configs = load_sources(REPO_ROOT / "sources.example.toml")
    assert [config.kind for config in configs] == ["jsonl", "v2ex", "v2ex", "discourse", "rss"]
    demo = configs[0]
    assert isinstance(demo, JsonlSource)
    assert demo.path == REPO_ROOT / "data" / "sample" / "heldout.jsonl"  # relative to the file
    assert demo.path.exists()


def test_defaults_and_normalized_urls(tmp_path: Path) -> None:
    path = _write(tmp_path, source_toml("q", "v2ex", url="https://www.v2ex.com/", nodes=["qna"]))
    (config,) = load_sources(path)
    assert isinstance(config, V2exSource)
    assert config.url == "https://www.v2ex.com"
    assert (config.interval_minutes, config.max_pages, config.respect_robots, config.enabled) == (
        60,
        5,
        True,
        True,
    )


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            source_toml("a", "reddit", url="https://x.example"),
            "source 'a': field 'kind': must be one of v2ex",
        ),
        ('[[source]]\nname = "a"\n', "source 'a': field 'kind'"),
        (source_toml("a", "discourse"), "source 'a': field 'url': Field required"),
        (source_toml("a", "rss", url="ftp://x.example/feed"), "field 'url': must be an http"),
        (source_toml("a", "rss", url="https://x.example", max_pages="many"), "field 'max_pages'"),
        (source_toml("a", "rss", url="https://x.example", max_pages=0), "greater than or equal to 1"),
        (source_toml("a", "jsonl", path="x.jsonl", max_pages=2), "field 'max_pages': unknown field"),
        (source_toml("a", "v2ex", nodes=["../admin"]), "field 'nodes.0'"),
        ('[[source]]\nkind = "rss"\nurl = "https://x.example"\n', "source #1: field 'name'"),
        (
            source_toml("a", "jsonl", path="a") + source_toml("a", "jsonl", path="b"),
            "'a': the name is used twice",
        ),
        ('[[source]\nname = "a"', "invalid TOML"),
        ('title = "x"\n', "unknown top-level key(s) title"),
        ("source = 3\n", "must be an array of tables"),
    ],
)
def test_invalid_files_name_the_file_the_source_and_the_field(
    tmp_path: Path, toml: str, expected: str
) -> None:
    path = _write(tmp_path, toml)
    with pytest.raises(ConfigError) as caught:
        load_sources(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert expected in str(caught.value)


def test_a_token_is_never_accepted_nor_repeated(tmp_path: Path) -> None:
    secret = "5b1e0c7e-9a3f-4c1d-8e2b-secret"
    path = _write(tmp_path, source_toml("a", "v2ex", nodes=["qna"], token_env=secret))
    with pytest.raises(
        ConfigError, match="field 'token_env': must be the NAME of an environment variable"
    ) as caught:
        load_sources(path)
    assert secret not in str(caught.value)

    path = _write(tmp_path, source_toml("a", "v2ex", nodes=["qna"], token=secret))
    with pytest.raises(ConfigError, match=r"field 'token': unknown field .*token_env") as caught:
        load_sources(path)
    assert secret not in str(caught.value)


def test_a_missing_file_says_how_to_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sources file not found.*sources\.example\.toml"):
        load_sources(tmp_path / "sources.toml")


def test_sync_adds_updates_and_disables_never_deletes(database: str, tmp_path: Path) -> None:
    with transaction() as session:
        ensure_source(session, "import", SourceKind.IMPORT)  # the importer's: not in the file, kept
    first = source_toml("a", "rss", url="https://a.example/feed") + source_toml("b", "jsonl", path="b.jsonl")
    with transaction() as session:
        sync_sources(session, load_sources(_write(tmp_path, first)))
        session.exec(select(Source).where(Source.name == "a")).one().cursor = {"http": {"x": {"etag": "1"}}}
        session.exec(select(Source).where(Source.name == "b")).one().cursor = {
            "file": {"size": 1, "mtime_ns": 1}
        }
    sources = _sources()
    assert sources["a"].config["url"] == "https://a.example/feed"
    assert sources["b"].config["path"] == str(tmp_path / "b.jsonl")

    # "a" changes (its cursor is reset), "b" is unchanged (its cursor stays), "c" is new, ...
    second = source_toml("a", "rss", url="https://a.example/feed", max_pages=2) + source_toml(
        "b", "jsonl", path="b.jsonl"
    )
    with transaction() as session:
        sync_sources(session, load_sources(_write(tmp_path, second + source_toml("c", "jsonl", path="c"))))
    sources = _sources()
    assert (sources["a"].config["max_pages"], sources["a"].cursor) == (2, {})
    assert sources["b"].cursor == {"file": {"size": 1, "mtime_ns": 1}}

    # ... and a source removed from the file is disabled, not deleted; the import source stays enabled.
    with transaction() as session:
        sync_sources(session, load_sources(_write(tmp_path, second)))
    enabled = {name: source.enabled for name, source in _sources().items()}
    assert enabled == {"import": True, "a": True, "b": True, "c": False}


def test_sync_refuses_to_change_a_sources_kind(database: str, tmp_path: Path) -> None:
    with transaction() as session:
        sync_sources(session, load_sources(_write(tmp_path, source_toml("a", "jsonl", path="x"))))
    with pytest.raises(ConfigError, match="already stored as kind 'jsonl'"), transaction() as session:
        sync_sources(
            session, load_sources(_write(tmp_path, source_toml("a", "rss", url="https://x.example")))
        )
    with transaction() as session:
        ensure_source(session, "import", SourceKind.IMPORT)
    configs = load_sources(_write(tmp_path, source_toml("import", "jsonl", path="x")))
    with pytest.raises(ConfigError, match="already stored as kind 'import'"), transaction() as session:
        sync_sources(session, configs)


def test_due_sources(database: str, tmp_path: Path) -> None:
    toml = (
        source_toml("never-run", "jsonl", path="a", interval_minutes=10)
        + source_toml("recent", "jsonl", path="b", interval_minutes=10)
        + source_toml("stale", "jsonl", path="c", interval_minutes=10)
        + source_toml("off", "jsonl", path="d", enabled=False)
    )
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    with transaction() as session:
        sync_sources(session, load_sources(_write(tmp_path, toml)))
        for source in session.exec(
            select(Source).where(col(Source.name).in_(["recent", "stale", "off"]))
        ).all():
            source.last_run_at = now - timedelta(minutes=5 if source.name == "recent" else 10)
    with transaction() as session:
        assert due_sources(session, now) == ["never-run", "stale"]
        with pytest.raises(ValueError, match="timezone-aware"):
            due_sources(session, now.replace(tzinfo=None))
