"""The crawler's HTTP behaviour against a real server on 127.0.0.1: retries, Retry-After,
timeouts, broken bodies, redirects, size caps, robots.txt and politeness per host."""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import col, select

from lawscreen.crawl import CrawlSummary, crawl, crawl_source
from lawscreen.crawl._http import parse_retry_after
from lawscreen.database import transaction
from lawscreen.models import CrawlReject, Post, Source
from tests.fake_forum import (
    FakeForum,
    Fault,
    crawl_settings,
    loopback_guard,  # noqa: F401 - autouse: no test reaches beyond 127.0.0.1
    make_topics,
    source_toml,
    use_sources,
)

LATEST = "/api/topics/latest.json"  # the V2EX v1 listing: one request per run


@pytest.fixture
def forum(database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeForum]:
    crawl_settings(monkeypatch)
    with FakeForum(topics=5) as forum:
        yield forum


def _v2ex(forum: FakeForum, tmp_path: Path, **fields: object) -> str:
    use_sources(tmp_path, source_toml("v2ex", "v2ex", url=forum.url, **fields))
    return "v2ex"


def _posts() -> int:
    with transaction() as session:
        return session.exec(select(func.count()).select_from(Post)).one()


def _rejects() -> list[tuple[str, str | None]]:
    with transaction() as session:
        return [
            (r.reason, r.url) for r in session.exec(select(CrawlReject).order_by(col(CrawlReject.id))).all()
        ]


def _gaps(forum: FakeForum, path: str) -> list[float]:
    times = [request.at for request in forum.requests_to(path)]
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def _ok(summary: CrawlSummary, new: int) -> None:
    assert (summary.ok, summary.error, summary.new) == (True, None, new)


def _failed(summary: CrawlSummary) -> str:
    assert not summary.ok
    assert summary.error is not None
    return summary.error


def test_429_waits_for_retry_after_in_seconds(forum: FakeForum, tmp_path: Path) -> None:
    forum.fail(LATEST, Fault(429, headers={"Retry-After": "1"}))
    _ok(crawl_source(_v2ex(forum, tmp_path)), new=5)
    (gap,) = _gaps(forum, LATEST)
    assert gap >= 0.95


def test_503_waits_for_retry_after_as_an_http_date(forum: FakeForum, tmp_path: Path) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    forum.fail(LATEST, Fault(503, headers={"Retry-After": when}))
    _ok(crawl_source(_v2ex(forum, tmp_path)), new=5)
    (gap,) = _gaps(forum, LATEST)
    assert gap >= 0.95  # the date has a one-second resolution


def test_a_retry_after_over_the_cap_is_left_for_the_next_run(forum: FakeForum, tmp_path: Path) -> None:
    forum.fail(LATEST, Fault(429, headers={"Retry-After": "3600"}))
    summary = crawl_source(_v2ex(forum, tmp_path))
    assert "HTTP 429" in _failed(summary)
    assert "Retry-After 3600 s is over our 3 s limit" in _failed(summary)
    assert len(forum.requests_to(LATEST)) == 1


def test_5xx_backs_off_with_a_bounded_number_of_attempts(forum: FakeForum, tmp_path: Path) -> None:
    forum.fail(LATEST, Fault(500), Fault(502), Fault(500), Fault(500))
    summary = crawl_source(_v2ex(forum, tmp_path))
    assert (summary.ok, summary.errors) == (False, 1)
    assert _failed(summary).startswith("HTTP 500 from ")
    assert len(forum.requests_to(LATEST)) == 3  # LAWSCREEN_CRAWL_MAX_ATTEMPTS

    forum.fail(LATEST, Fault(503))  # no Retry-After: backoff, then success
    _ok(crawl_source("v2ex"), new=5)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
def test_other_4xx_are_not_retried(forum: FakeForum, tmp_path: Path, status: int) -> None:
    forum.fail(LATEST, Fault(status))
    summary = crawl_source(_v2ex(forum, tmp_path))
    assert f"HTTP {status}" in _failed(summary)
    assert len(forum.requests_to(LATEST)) == 1


def test_a_response_slower_than_the_read_timeout_is_retried(
    forum: FakeForum, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crawl_settings(monkeypatch, crawl_read_timeout_seconds="0.3", crawl_max_attempts="2")
    forum.fail(LATEST, Fault(delay=1.0))
    _ok(crawl_source(_v2ex(forum, tmp_path)), new=5)

    forum.fail(LATEST, Fault(delay=1.0), Fault(delay=1.0))
    summary = crawl_source("v2ex")
    assert "timed out (ReadTimeout)" in _failed(summary)
    assert len(forum.requests_to(LATEST)) == 4


def test_a_response_trickling_in_is_cut_off(
    forum: FakeForum, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crawl_settings(monkeypatch, crawl_read_timeout_seconds="0.2", crawl_max_attempts="1")
    forum.fail(LATEST, Fault(trickle=0.05))  # never 0.2 s without a byte, but far too slow in all
    summary = crawl_source(_v2ex(forum, tmp_path))
    assert "no complete response within 0.8 s" in _failed(summary)
    assert summary.duration < 3


def test_truncated_bodies_and_dropped_connections_are_retried(forum: FakeForum, tmp_path: Path) -> None:
    forum.fail(LATEST, Fault(truncate=True), Fault(drop=True))
    _ok(crawl_source(_v2ex(forum, tmp_path)), new=5)
    assert len(forum.requests_to(LATEST)) == 3


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault(body=b"<html>Checking your browser...</html>"), "malformed_json"),
        (Fault(body=b'[{"id": 1, "title": "cut off'), "malformed_json"),
        (Fault(content_type="text/html; charset=utf-8"), "wrong_content_type"),
        (Fault(body='[{"id": 1, "title": "编码"}]'.encode("gbk")), "bad_encoding"),
        (Fault(body=b"[" + b" " * 5000 + b"]"), "too_large"),  # declared length over the cap
        (Fault(body=b"[" + b" " * 5000 + b"]", unsized=True), "too_large"),  # streamed past the cap
    ],
)
def test_bad_responses_are_recorded_rejects_not_retries(
    forum: FakeForum, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: Fault, reason: str
) -> None:
    crawl_settings(monkeypatch, crawl_max_body_bytes="4096")
    forum.fail(LATEST, fault)
    summary = crawl_source(_v2ex(forum, tmp_path))
    assert (summary.ok, summary.errors, summary.new) == (False, 1, 0)
    assert reason in _failed(summary)
    assert _rejects() == [(reason, forum.url + LATEST)]
    assert len(forum.requests_to(LATEST)) == 1


def test_redirects_are_followed_and_bounded(forum: FakeForum, tmp_path: Path) -> None:
    forum.fail(LATEST, Fault(301, headers={"Location": "/moved"}))
    forum.fail("/moved", Fault(302, headers={"Location": f"{forum.url}{LATEST}?again=1"}))
    _ok(crawl_source(_v2ex(forum, tmp_path)), new=5)
    assert [request.path for request in forum.requests[1:]] == [LATEST, "/moved", LATEST]

    loop = Fault(302, headers={"Location": LATEST})
    forum.fail(LATEST, *[loop] * 10)
    summary = crawl_source("v2ex")
    assert "more than 5 redirects" in _failed(summary)
    assert len(forum.requests_to(LATEST)) == 2 + 6


def test_a_redirect_is_checked_against_robots_txt(forum: FakeForum, tmp_path: Path) -> None:
    forum.robots = "User-agent: *\nDisallow: /private/\n"
    forum.fail(LATEST, Fault(302, headers={"Location": "/private/topics.json"}))
    summary = crawl_source(_v2ex(forum, tmp_path))
    assert "disallowed by" in _failed(summary)
    assert forum.requests_to("/private/topics.json") == []


@pytest.mark.parametrize(
    ("robots", "robots_fault", "allowed"),
    [
        ("User-agent: *\nAllow: /\n", None, True),
        ("User-agent: *\nDisallow: /api/\n", None, False),
        ("User-agent: lawscreen\nDisallow: /\n\nUser-agent: *\nAllow: /\n", None, False),  # matched by our UA
        ("User-agent: otherbot\nDisallow: /\n", None, True),
        (None, None, True),  # 404: no rules
        ("", Fault(403), True),  # 4xx: no rules
        ("", Fault(500), False),  # 5xx: disallow everything
        ("", Fault(drop=True), False),  # unreachable: disallow everything
    ],
)
def test_robots_txt(
    forum: FakeForum, tmp_path: Path, robots: str | None, robots_fault: Fault | None, allowed: bool
) -> None:
    forum.robots = robots
    if robots_fault is not None:
        forum.fail("/robots.txt", *[robots_fault] * 3)
    summary = crawl_source(_v2ex(forum, tmp_path))
    assert summary.ok is allowed
    assert len(forum.requests_to(LATEST)) == int(allowed)
    if not allowed:
        assert "robots.txt" in _failed(summary)


def test_robots_txt_can_be_ignored_only_explicitly(forum: FakeForum, tmp_path: Path) -> None:
    forum.robots = "User-agent: *\nDisallow: /\n"
    _ok(crawl_source(_v2ex(forum, tmp_path, respect_robots=False)), new=5)
    assert forum.requests_to("/robots.txt") == []


def test_robots_txt_is_cached_in_the_cursor_for_at_most_a_day(forum: FakeForum, tmp_path: Path) -> None:
    name = _v2ex(forum, tmp_path)
    crawl_source(name)
    crawl_source(name)
    assert len(forum.requests_to("/robots.txt")) == 1

    with transaction() as session:
        source = session.exec(select(Source).where(Source.name == name)).one()
        entry = source.cursor["robots"][forum.url]
        stale = (datetime.now(UTC) - timedelta(hours=24, minutes=1)).isoformat()
        source.cursor = {**source.cursor, "robots": {forum.url: {**entry, "fetched_at": stale}}}
    crawl_source(name)
    assert len(forum.requests_to("/robots.txt")) == 2


def test_unreachable_robots_txt_is_not_cached(forum: FakeForum, tmp_path: Path) -> None:
    forum.fail("/robots.txt", *[Fault(503)] * 3)
    assert not crawl_source(_v2ex(forum, tmp_path)).ok
    _ok(crawl_source("v2ex"), new=5)  # asked again, and now it answers


def test_user_agent_is_configurable_and_sent_everywhere(
    forum: FakeForum, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_agent = "lawscreen/9.9 (+mailto:crawler@law.example)"
    crawl_settings(monkeypatch, crawl_user_agent=user_agent)
    crawl_source(_v2ex(forum, tmp_path))
    assert {request.headers["user-agent"] for request in forum.requests} == {user_agent}


def test_sources_on_one_host_share_its_min_delay(forum: FakeForum, tmp_path: Path) -> None:
    use_sources(
        tmp_path,
        source_toml("v2ex", "v2ex", url=forum.url, min_delay_seconds=0.15)
        + source_toml("feed", "rss", url=f"{forum.url}/feed.rss", min_delay_seconds=0.15),
    )
    summaries = asyncio.run(crawl())
    assert all(summary.ok for summary in summaries), summaries
    starts = sorted(request.at for request in forum.requests)
    assert len(starts) == 3  # one robots.txt for both sources, then a listing each
    assert min(later - earlier for earlier, later in itertools.pairwise(starts)) >= 0.14


def test_crawl_delay_in_robots_txt_is_honoured(forum: FakeForum, tmp_path: Path) -> None:
    forum.robots = "User-agent: *\nCrawl-delay: 0.3\n"
    forum.fail(LATEST, Fault(503))
    _ok(crawl_source(_v2ex(forum, tmp_path, min_delay_seconds=0.01)), new=5)
    (gap,) = _gaps(forum, LATEST)
    assert gap >= 0.29  # the backoff alone is at most 0.05 s


def test_concurrency_per_host_is_capped(
    forum: FakeForum, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crawl_settings(monkeypatch, crawl_host_concurrency="2")
    forum.topics = make_topics(6)
    for topic in forum.topics:
        forum.fail(f"/t/{topic.id}.json", Fault(delay=0.2))
    use_sources(tmp_path, source_toml("forum", "discourse", url=forum.url))
    _ok(crawl_source("forum"), new=6)
    assert forum.max_in_flight == 2


def test_a_closed_port_is_a_connection_error(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crawl_settings(monkeypatch)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = f"http://127.0.0.1:{port}/feed"
    use_sources(tmp_path, source_toml("gone", "rss", url=closed, respect_robots=False))
    summary = crawl_source("gone")
    assert "ConnectError" in _failed(summary)


def test_parse_retry_after() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    future = parse_retry_after(format_datetime(datetime.now(UTC) + timedelta(minutes=5), usegmt=True))
    assert future is not None
    assert 298 <= future <= 300
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("-5") is None
