"""Each kind of source against the fake forum (or a file): how items map to posts, incremental
fetching, edits, bad items, and conditional requests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import col, select

from lawscreen.crawl import CrawlSummary, crawl_source
from lawscreen.database import transaction
from lawscreen.models import CrawlReject, ModelVersion, Post, Prediction, PredictionStatus, Source
from lawscreen.text import content_hash
from tests.conftest import REPO_ROOT
from tests.fake_forum import (
    EPOCH,
    TOKEN,
    FakeForum,
    Fault,
    crawl_settings,
    loopback_guard,  # noqa: F401 - autouse: no test reaches beyond 127.0.0.1
    make_topics,
    source_toml,
    use_sources,
)

NODE_TOPICS = "/api/v2/nodes/qna/topics"


@pytest.fixture
def forum(database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeForum]:
    crawl_settings(monkeypatch)
    monkeypatch.setenv("V2EX_TOKEN", TOKEN)
    with FakeForum(topics=3) as forum:
        yield forum


def _posts(source: str | None = None) -> dict[str, Post]:
    with transaction() as session:
        query = select(Post).join(Source)
        if source is not None:
            query = query.where(Source.name == source)
        return {post.external_id: post for post in session.exec(query).all()}


def _rejects() -> list[tuple[str, str | None, str]]:
    with transaction() as session:
        rows = session.exec(select(CrawlReject).order_by(col(CrawlReject.id))).all()
        return [(row.reason, row.external_id, row.detail or "") for row in rows]


def _counts(summary: CrawlSummary) -> tuple[int, int, int, int, int]:
    assert summary.ok, summary.error
    return summary.new, summary.updated, summary.unchanged, summary.skipped, summary.errors


def _v2ex_api(forum: FakeForum, tmp_path: Path, **fields: object) -> str:
    use_sources(
        tmp_path, source_toml("v2ex", "v2ex", url=forum.url, nodes=["qna"], token_env="V2EX_TOKEN", **fields)
    )
    return "v2ex"


def test_v2ex_api_v2_maps_topics_faithfully(forum: FakeForum, tmp_path: Path) -> None:
    forum.topics[0].edit("改过的内容\n第二段 <b>不是标签</b>")
    assert _counts(crawl_source(_v2ex_api(forum, tmp_path))) == (3, 0, 0, 0, 0)

    assert {request.headers.get("authorization") for request in forum.requests_to(NODE_TOPICS)} == {
        f"Bearer {TOKEN}"
    }
    post = _posts()["3"]
    assert post.title == "帖子 3"
    assert post.body_raw == "<p>改过的内容</p><p>第二段 &lt;b&gt;不是标签&lt;/b&gt;</p>"  # content_rendered
    assert post.text == "帖子 3\n改过的内容\n第二段 <b>不是标签</b>"  # its text, normalized
    assert post.url == "https://www.v2ex.com/t/3"
    assert post.author == "alice"
    assert post.posted_at == datetime.fromtimestamp(EPOCH + 3, UTC)
    assert post.edited_at == datetime.fromtimestamp(EPOCH + 103, UTC)
    assert _posts()["2"].edited_at is None  # last_modified == created: never edited


def test_v2ex_without_its_token_fails_naming_the_variable(
    forum: FakeForum, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("V2EX_TOKEN")
    summary = crawl_source(_v2ex_api(forum, tmp_path))
    assert (summary.ok, summary.error) == (
        False,
        "the environment variable V2EX_TOKEN (token_env) is not set",
    )
    assert forum.requests == []


def test_v2ex_public_api_v1(forum: FakeForum, tmp_path: Path) -> None:
    use_sources(
        tmp_path,
        source_toml("latest", "v2ex", url=forum.url)
        + source_toml("node", "v2ex", url=forum.url, nodes=["qna"]),
    )
    assert _counts(crawl_source("latest")) == (3, 0, 0, 0, 0)
    assert _counts(crawl_source("node")) == (3, 0, 0, 0, 0)
    paths = [(request.path, request.query) for request in forum.requests if request.path != "/robots.txt"]
    assert paths == [("/api/topics/latest.json", {}), ("/api/topics/show.json", {"node_name": "qna"})]
    assert set(_posts("latest")) == set(_posts("node")) == {"1", "2", "3"}


def test_paging_is_bounded_and_stops_at_the_first_page_of_known_posts(
    forum: FakeForum, tmp_path: Path
) -> None:
    forum.topics = make_topics(100)
    forum.page_size = 10
    assert _counts(crawl_source(_v2ex_api(forum, tmp_path, max_pages=3))) == (30, 0, 0, 0, 0)
    assert [r.query["p"] for r in forum.requests_to(NODE_TOPICS)] == ["1", "2", "3"]  # max_pages

    forum.add(*make_topics(4, first=101))
    forum.requests.clear()
    # Page 1 holds the 4 new topics and 6 known ones; page 2 only known ones: the crawl stops there.
    assert _counts(crawl_source("v2ex")) == (4, 0, 16, 0, 0)
    assert [r.query["p"] for r in forum.requests_to(NODE_TOPICS)] == ["1", "2"]


def test_an_unchanged_listing_costs_one_conditional_request(forum: FakeForum, tmp_path: Path) -> None:
    crawl_source(_v2ex_api(forum, tmp_path))
    forum.requests.clear()
    assert _counts(crawl_source("v2ex")) == (0, 0, 0, 0, 0)
    (request,) = forum.requests_to(NODE_TOPICS)
    assert request.headers["if-none-match"].startswith('"')  # answered 304 Not Modified


def test_rerunning_without_a_cursor_creates_no_duplicates(forum: FakeForum, tmp_path: Path) -> None:
    crawl_source(_v2ex_api(forum, tmp_path))
    with transaction() as session:  # forget the ETags: everything is fetched and upserted again
        session.exec(select(Source).where(Source.name == "v2ex")).one().cursor = {}
    assert _counts(crawl_source("v2ex")) == (0, 0, 3, 0, 0)
    assert sorted(_posts()) == ["1", "2", "3"]


def test_an_edited_post_is_updated_and_loses_its_predictions(forum: FakeForum, tmp_path: Path) -> None:
    crawl_source(_v2ex_api(forum, tmp_path))
    with transaction() as session:
        model = ModelVersion(version="m1", base="tiny", artifact_path="/x", threshold=0.5)
        session.add(model)
        session.flush()
        assert model.id is not None
        for post in _posts().values():
            assert post.id is not None
            session.add(
                Prediction(
                    post_id=post.id,
                    model_version_id=model.id,
                    status=PredictionStatus.SCORED,
                    score=0.9,
                    label=True,
                )
            )
    before = _posts()
    forum.topics[1].edit("房东说押金不退了，合同里没写，我能起诉吗？")

    assert _counts(crawl_source("v2ex")) == (0, 1, 2, 0, 0)
    after = _posts()
    assert after["2"].id == before["2"].id
    assert after["2"].text == "帖子 2\n房东说押金不退了,合同里没写,我能起诉吗?"
    assert after["2"].edited_at == datetime.fromtimestamp(EPOCH + 102, UTC)
    with transaction() as session:
        scored = set(session.exec(select(Prediction.post_id)).all())
    assert scored == {before["1"].id, before["3"].id}


def test_bad_items_are_skipped_with_a_reason_and_the_rest_of_the_page_kept(
    forum: FakeForum, tmp_path: Path
) -> None:
    good = forum.v2ex_topic(forum.topics[0])
    items = [
        good,
        {**good, "id": 10, "title": None},
        {key: value for key, value in good.items() if key != "title"} | {"id": 11},
        {**good, "id": "twelve"},
        {**good, "id": 13, "content_rendered": "<p>" + "长" * 250_000 + "</p>"},
        {**good, "id": 14, "title": " ", "content": "", "content_rendered": "<p>\u200b</p>"},
        {**good, "id": 15, "created": "yesterday"},
        ["not", "a", "topic"],
        {**good, "id": 16, "title": "另一个好帖子"},
    ]
    forum.routes["/api/topics/latest.json"] = lambda query: ("application/json", json.dumps(items).encode())
    use_sources(tmp_path, source_toml("v2ex", "v2ex", url=forum.url))

    assert _counts(crawl_source("v2ex")) == (2, 0, 0, 7, 0)
    assert set(_posts()) == {"3", "16"}
    rejects = [(reason, external_id) for reason, external_id, _ in _rejects()]
    assert rejects == [
        ("invalid_field", "10"),
        ("missing_field", "11"),
        ("invalid_field", "twelve"),
        ("too_long", "13"),
        ("empty", "14"),
        ("invalid_field", "15"),
        ("invalid_field", None),
    ]
    details = [detail for _, _, detail in _rejects()]
    assert details[1] == "topic: field 'title': Field required"
    assert details[3] == "250,011 characters, over the 200,000 cap"  # title and body


def test_discourse_fetches_only_new_or_bumped_topics(forum: FakeForum, tmp_path: Path) -> None:
    use_sources(tmp_path, source_toml("meta", "discourse", url=forum.url))
    assert _counts(crawl_source("meta")) == (3, 0, 0, 0, 0)
    assert sorted(r.path for r in forum.requests if r.path.startswith("/t/")) == [
        "/t/1.json",
        "/t/2.json",
        "/t/3.json",
    ]
    post = _posts()["2"]
    assert (post.title, post.text, post.author) == (
        "帖子 2",
        "帖子 2\n第 2 个帖子的内容:房东不退押金怎么办?",
        "alice",
    )
    assert post.body_raw == "<p>第 2 个帖子的内容：房东不退押金怎么办？</p>"
    assert post.url == f"{forum.url}/t/topic-2/2"
    assert post.posted_at == datetime.fromtimestamp(EPOCH + 2, UTC)

    forum.requests.clear()
    assert _counts(crawl_source("meta")) == (0, 0, 0, 0, 0)  # /latest.json answered 304
    assert [r.path for r in forum.requests] == ["/latest.json"]

    forum.topics[2].edit("改过的第一帖")  # bumps topic 1
    forum.add(*make_topics(1, first=4))
    forum.requests.clear()
    assert _counts(crawl_source("meta")) == (1, 1, 2, 0, 0)  # topics 2 and 3 not fetched: not bumped
    assert sorted(r.path for r in forum.requests if r.path.startswith("/t/")) == ["/t/1.json", "/t/4.json"]
    assert _posts()["1"].text == "帖子 1\n改过的第一帖"


def test_discourse_deleted_topics_are_rejects_failing_ones_errors(forum: FakeForum, tmp_path: Path) -> None:
    use_sources(tmp_path, source_toml("meta", "discourse", url=forum.url))
    forum.fail("/t/2.json", Fault(404))
    forum.fail("/t/3.json", Fault(500), Fault(500), Fault(500))
    summary = crawl_source("meta")
    assert (summary.new, summary.skipped, summary.errors, summary.ok) == (1, 1, 1, False)
    assert summary.error is not None
    assert "HTTP 500" in summary.error
    assert set(_posts()) == {"1"}  # the good topic of the page is kept
    assert [(reason, external_id) for reason, external_id, _ in _rejects()] == [("http_status", "2")]

    # The failed topic is fetched again next time (the listing's ETag was not kept); the deleted one,
    # not bumped since it was seen, is not.
    forum.requests.clear()
    assert _counts(crawl_source("meta")) == (1, 0, 2, 0, 0)
    assert [r.path for r in forum.requests if r.path.startswith("/t/")] == ["/t/3.json"]


@pytest.mark.parametrize(
    ("path", "external_id", "validator"),
    [
        ("/feed.rss", "topic-3", "if-modified-since"),
        ("/feed.atom", "tag:forum.example,2025:3", "if-none-match"),
    ],
)
def test_rss_and_atom_feeds(
    forum: FakeForum, tmp_path: Path, path: str, external_id: str, validator: str
) -> None:
    use_sources(tmp_path, source_toml("feed", "rss", url=forum.url + path))
    assert _counts(crawl_source("feed")) == (3, 0, 0, 0, 0)
    post = _posts()[external_id]
    assert post.title == "帖子 3"
    assert post.text == "帖子 3\n第 3 个帖子的内容:房东不退押金怎么办?"
    assert post.url == f"{forum.url}/t/3"
    assert post.author in ("alice", "alice@forum.example")
    assert post.posted_at == datetime.fromtimestamp(EPOCH + 3, UTC)

    assert _counts(crawl_source("feed")) == (0, 0, 0, 0, 0)
    assert validator in forum.requests_to(path)[-1].headers  # answered 304

    forum.topics[0].edit("新内容")
    assert _counts(crawl_source("feed")) == (0, 1, 2, 0, 0)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault(body=b"\x00\x01 <<not xml at all>>"), "malformed_xml"),
        (Fault(body=b"<html><body><p>Please log in</p></body></html>"), "malformed_xml"),
        (Fault(content_type="text/html"), "wrong_content_type"),
        (
            Fault(
                body='<?xml version="1.0" encoding="utf-8"?><rss><channel><item><title>编码</title></item>'
                "</channel></rss>".encode("gbk")
            ),
            "bad_encoding",
        ),
    ],
)
def test_bad_feeds_are_rejected(forum: FakeForum, tmp_path: Path, fault: Fault, reason: str) -> None:
    use_sources(tmp_path, source_toml("feed", "rss", url=forum.url + "/feed.atom"))
    forum.fail("/feed.atom", fault)
    summary = crawl_source("feed")
    assert (summary.ok, summary.errors, summary.new) == (False, 1, 0)
    assert [row[0] for row in _rejects()] == [reason]


def test_a_feed_feedparser_can_recover_is_kept(
    forum: FakeForum, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    use_sources(tmp_path, source_toml("feed", "rss", url=forum.url + "/feed.rss"))
    forum.fail("/feed.rss", Fault(body=forum.rss().replace(b"</channel></rss>", b"<item><title>&nbsp;")))
    assert _counts(crawl_source("feed"))[0] == 3
    assert "not well-formed" in caplog.text


def test_the_same_post_on_two_sources_is_a_cross_post(forum: FakeForum, tmp_path: Path) -> None:
    use_sources(
        tmp_path,
        source_toml("rss", "rss", url=forum.url + "/feed.rss")
        + source_toml("atom", "rss", url=forum.url + "/feed.atom"),
    )
    crawl_source("rss")
    crawl_source("atom")
    rss, atom = _posts("rss"), _posts("atom")
    assert {post.duplicate_of_id for post in rss.values()} == {None}
    assert {atom[f"tag:forum.example,2025:{n}"].duplicate_of_id for n in (1, 2, 3)} == {
        rss[f"topic-{n}"].id for n in (1, 2, 3)
    }


def test_jsonl_reads_the_demo_feed_once(database: str, tmp_path: Path) -> None:
    heldout = REPO_ROOT / "data" / "sample" / "heldout.jsonl"
    use_sources(tmp_path, source_toml("demo", "jsonl", path=str(heldout)))
    assert _counts(crawl_source("demo")) == (246, 0, 0, 0, 0)
    post = _posts()["ho-0001"]
    assert post.title == "公司要把我从北京调去成都"
    assert post.url == "https://v2ex.example/t/1180331"
    assert post.author == "fe_boy"
    assert post.posted_at == datetime.fromisoformat("2026-11-15T00:09:22+08:00")
    assert post.text.startswith("公司要把我从北京调去成都\n入职时合同工作地点写的北京")

    assert _counts(crawl_source("demo")) == (0, 0, 0, 0, 0)  # unchanged file: not even read
    assert len(_posts()) == 246


def test_jsonl_bad_lines_are_skipped_with_their_line_number(database: str, tmp_path: Path) -> None:
    path = tmp_path / "feed.jsonl"
    lines: list[str | bytes] = [
        json.dumps(
            {"id": "a", "title": "欠薪", "text": "三个月没发工资", "created": "2026-01-02T03:04:05+08:00"}
        ),
        json.dumps({"title": "没有 id", "content": "用 content 字段"}),
        "{not json",
        b'{"id": "b", "text": "\xff\xfe"}',
        json.dumps({"id": "c", "title": "只有标题"}),
        json.dumps({"id": "d", "text": "时间没有时区", "created": "2026-01-02T03:04:05"}),
        json.dumps({"id": "e", "text": "长" * (1024 * 1024)}),
        json.dumps([1, 2]),
        "",
        json.dumps({"id": 7, "text": "数字 id", "label": 1, "forum": "v2ex"}),
    ]
    path.write_bytes(b"\n".join(line if isinstance(line, bytes) else line.encode() for line in lines) + b"\n")
    use_sources(tmp_path, source_toml("file", "jsonl", path="feed.jsonl"))

    assert _counts(crawl_source("file")) == (3, 0, 0, 6, 0)
    hashed = content_hash("没有 id\n用 content 字段")
    assert set(_posts()) == {"a", hashed, "7"}
    assert [(reason, external_id, detail.split(":")[0]) for reason, external_id, detail in _rejects()] == [
        ("malformed_json", None, "line 3"),
        ("bad_encoding", None, "line 4"),
        ("missing_field", "c", "line 5"),
        ("invalid_field", "d", "line 6"),
        ("too_large", None, "line 7"),
        ("invalid_field", None, "line 8"),
    ]

    with path.open("a") as handle:
        handle.write(json.dumps({"id": "f", "text": "新的一行"}) + "\n")
    summary = crawl_source("file")
    assert (summary.new, summary.unchanged) == (1, 3)


def test_jsonl_missing_file_fails_the_run(database: str, tmp_path: Path) -> None:
    use_sources(tmp_path, source_toml("file", "jsonl", path="nowhere.jsonl"))
    summary = crawl_source("file")
    assert (summary.ok, summary.error) == (False, f"{tmp_path / 'nowhere.jsonl'}: No such file or directory")
