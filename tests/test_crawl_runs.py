"""Runs as a whole: sources run together without stopping each other, health is recorded and
shown by `lawscreen status`, concurrent crawls never duplicate a post, and `lawscreen crawl`."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import col, select
from typer.testing import CliRunner

from lawscreen.cli import app
from lawscreen.crawl import CrawlSummary, crawl, crawl_source
from lawscreen.database import transaction
from lawscreen.errors import ConfigError
from lawscreen.models import CrawlReject, CrawlRun, Post, Source
from tests.fake_forum import (
    FakeForum,
    Fault,
    crawl_settings,
    loopback_guard,  # noqa: F401 - autouse: no test reaches beyond 127.0.0.1
    make_topics,
    source_toml,
    use_sources,
)


@pytest.fixture
def forum(database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeForum]:
    crawl_settings(monkeypatch)
    with FakeForum(topics=3) as forum:
        yield forum


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _health() -> dict[str, tuple[int, str | None, bool]]:
    with transaction() as session:
        return {
            source.name: (source.consecutive_failures, source.last_error, source.last_success_at is not None)
            for source in session.exec(select(Source)).all()
        }


def _sources_toml(forum: FakeForum, tmp_path: Path) -> str:
    return (
        source_toml("good", "v2ex", url=forum.url)
        + source_toml(
            "broken", "rss", url=f"http://127.0.0.1:{_closed_port()}/feed.rss", respect_robots=False
        )
        + source_toml("bad-page", "rss", url=forum.url + "/feed.rss")
        + source_toml("missing", "jsonl", path=str(tmp_path / "missing.jsonl"))
    )


def test_a_failing_source_never_stops_the_others_and_health_is_recorded(
    forum: FakeForum, tmp_path: Path
) -> None:
    use_sources(tmp_path, _sources_toml(forum, tmp_path))
    forum.fail("/feed.rss", Fault(body=b"<<garbage"))

    summaries = {summary.source: summary for summary in asyncio.run(crawl())}

    assert sorted(summaries) == ["bad-page", "broken", "good", "missing"]
    assert (summaries["good"].ok, summaries["good"].new) == (True, 3)
    assert [name for name, summary in summaries.items() if not summary.ok] == [
        "bad-page",
        "broken",
        "missing",
    ]
    assert "ConnectError" in (summaries["broken"].error or "")
    health = _health()
    assert health["good"] == (0, None, True)
    assert health["broken"][:1] == (1,)
    assert health["broken"][1] == summaries["broken"].error
    assert health["missing"][0] == 1
    with transaction() as session:
        runs = {(run.source_id, run.ok, run.new, run.skipped) for run in session.exec(select(CrawlRun)).all()}
        assert len(runs) == 4
        assert all(run.finished_at is not None for run in session.exec(select(CrawlRun)).all())
        reject = session.exec(select(CrawlReject)).one()
        run = session.get_one(CrawlRun, reject.crawl_run_id)
        assert (reject.reason, run.ok, run.error) == ("malformed_xml", False, summaries["bad-page"].error)

    asyncio.run(crawl())  # the feed is fine now; the others still fail, one more time in a row
    health = _health()
    assert (health["bad-page"], health["broken"][0], health["missing"][0]) == ((0, None, True), 2, 2)


def test_status_shows_source_health(forum: FakeForum, tmp_path: Path) -> None:
    use_sources(tmp_path, _sources_toml(forum, tmp_path))
    asyncio.run(crawl())
    result = CliRunner().invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    sources = {source["name"]: source for source in json.loads(result.output)["sources"]}
    assert sources["good"]["consecutive_failures"] == 0
    assert sources["good"]["last_success_at"] is not None
    assert sources["missing"]["consecutive_failures"] == 1
    assert "No such file or directory" in sources["missing"]["last_error"]
    assert sources["missing"]["last_run_at"] is not None

    result = CliRunner().invoke(app, ["status"])
    assert all(name in result.output for name in ("good", "broken", "bad-page", "missing"))


def test_concurrent_crawls_of_one_source_leave_one_row_per_post(forum: FakeForum, tmp_path: Path) -> None:
    forum.topics = make_topics(200)
    forum.page_size = 50
    use_sources(tmp_path, source_toml("forum", "discourse", url=forum.url, max_pages=4))
    barrier = threading.Barrier(3)
    results: list[CrawlSummary | BaseException] = []

    def task() -> None:  # like three Prefect tasks at once, each with its own client and sessions
        barrier.wait()
        try:
            results.append(crawl_source("forum"))
        except BaseException as exc:  # reported below
            results.append(exc)

    threads = [threading.Thread(target=task) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert all(isinstance(result, CrawlSummary) and result.ok for result in results), results
    with transaction() as session:
        external_ids = session.exec(select(Post.external_id)).all()
        runs = session.exec(select(func.count()).select_from(CrawlRun)).one()
    assert sorted(external_ids, key=int) == [str(i) for i in range(1, 201)]
    assert runs == 3
    assert sum(result.new for result in results if isinstance(result, CrawlSummary)) == 200


def test_unknown_or_disabled_sources_are_refused(forum: FakeForum, tmp_path: Path) -> None:
    use_sources(
        tmp_path, source_toml("on", "jsonl", path="a") + source_toml("off", "jsonl", path="b", enabled=False)
    )
    with pytest.raises(ConfigError, match=r"no enabled source named off, nope \(enabled: on\)"):
        asyncio.run(crawl(["off", "nope"]))
    with pytest.raises(ConfigError):
        crawl_source("nope")


def test_cli_crawl_prints_a_summary_per_source(forum: FakeForum, tmp_path: Path) -> None:
    (tmp_path / "sources.toml").write_text(
        source_toml("good", "v2ex", url=forum.url) + source_toml("feed", "rss", url=forum.url + "/feed.rss")
    )
    runner = CliRunner()
    result = runner.invoke(app, ["crawl"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "good" in line or "feed" in line]
    assert len(lines) == 2
    assert all("ok" in line for line in lines)
    assert [cell.strip() for cell in lines[1].split("│")[1:7]] == ["good", "3", "0", "0", "0", "0"]

    result = runner.invoke(app, ["crawl", "--source", "feed"])
    assert result.exit_code == 0, result.output
    assert "good" not in result.stdout
    assert [cell.strip() for cell in result.stdout.splitlines()[-2].split("│")[1:7]] == [
        "feed",
        "0",
        "0",
        "0",
        "0",
        "0",
    ]


def test_cli_crawl_fails_when_a_source_fails(forum: FakeForum, tmp_path: Path) -> None:
    (tmp_path / "sources.toml").write_text(source_toml("gone", "jsonl", path="gone.jsonl"))
    result = CliRunner().invoke(app, ["crawl"])
    assert result.exit_code == 1
    assert "failed" in result.stdout

    result = CliRunner().invoke(app, ["crawl", "--source", "nope"])
    assert result.exit_code == 1
    assert isinstance(result.exception, ConfigError)


def test_the_guard_refuses_non_loopback_addresses(loopback_attempts: list[str]) -> None:
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("192.0.2.1", 80))
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("www.v2ex.com", 443)
    assert loopback_attempts == ["connect ('192.0.2.1', 80)", "resolve www.v2ex.com"]
    loopback_attempts.clear()  # seen: the guard works, so the test may pass


def test_sources_are_read_from_the_database_not_the_file(forum: FakeForum, tmp_path: Path) -> None:
    use_sources(tmp_path, source_toml("good", "v2ex", url=forum.url))
    (tmp_path / "sources.toml").unlink()
    assert crawl_source("good").new == 3
    with transaction() as session:
        assert (
            session.exec(select(func.count()).select_from(Post).where(col(Post.source_id).is_not(None))).one()
            == 3
        )
