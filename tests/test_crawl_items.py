"""Turning fetched items into posts: HTML to text, and the limits every source shares."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lawscreen.crawl._items import MAX_BODY_CHARS, build_post
from lawscreen.errors import InputRejected
from lawscreen.text import content_hash, html_to_text, normalize
from tests.fake_forum import loopback_guard  # noqa: F401 - autouse: no test reaches beyond 127.0.0.1


@pytest.mark.parametrize(
    ("markup", "expected"),
    [
        ("<p>房东<b>不退</b>押金</p><p>怎么办</p>", "房东不退押金\n怎么办"),
        ("第一行<br>第二行<br/>第三行", "第一行\n第二行\n第三行"),
        ("<ul><li>一</li><li>二</li></ul>尾巴", "一\n二\n尾巴"),
        ("<div><script>alert(1)</script><style>p {}</style>正文<!-- 注释 --></div>", "正文"),
        ("a &amp; b &lt;c&gt; &#20320;", "a & b <c> 你"),
        ("没有标签 &amp; 实体", "没有标签 & 实体"),
        ('<a href="https://x.example">链接文字</a>', "链接文字"),
        ('<?xml version="1.0"?><rss>不是 HTML</rss>', "不是 HTML"),  # no XMLParsedAsHTMLWarning
        ("<pre>code\n\n  indented</pre>", "code\nindented"),
        ("<p>unclosed <b>bold", "unclosed bold"),
    ],
)
def test_html_to_text(markup: str, expected: str) -> None:
    assert normalize(html_to_text(markup)) == expected


def test_html_to_text_survives_deep_nesting() -> None:
    assert normalize(html_to_text("<div>" * 50_000 + "深" + "</div>" * 50_000)) == "深"


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_html_to_text_never_fails_nor_warns(markup: str) -> None:
    html_to_text(markup)  # warnings are errors in this suite


def test_long_ids_are_hashed_and_missing_ids_come_from_the_content() -> None:
    long_id = "https://forum.example/t/1?" + "utm=x&" * 50
    assert build_post(external_id=long_id, title="t", body="b", is_html=False).external_id == content_hash(
        long_id
    )
    post = build_post(external_id=None, title="标题", body="正文", is_html=False)
    assert post.external_id == content_hash("标题\n正文")


def test_absurdly_long_posts_are_rejected_long_ones_kept() -> None:
    kept = build_post(external_id="1", title="", body="长" * (MAX_BODY_CHARS - 10), is_html=False)
    assert len(kept.body_raw) == MAX_BODY_CHARS - 10  # stored whole
    assert len(kept.text) == 20_000  # the model's text is capped
    with pytest.raises(InputRejected) as rejected:
        build_post(external_id="2", title="", body="长" * (MAX_BODY_CHARS + 1), is_html=False)
    assert (rejected.value.reason, rejected.value.external_id) == ("too_long", "2")


def test_empty_posts_are_rejected() -> None:
    with pytest.raises(InputRejected, match="empty: no title and no text"):
        build_post(external_id="1", title=" ", body="<p>\u200b</p><script>x</script>", is_html=True)


def test_an_edit_time_equal_to_the_post_time_is_no_edit() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    post = build_post(external_id="1", title="t", body="b", is_html=False, posted_at=when, edited_at=when)
    assert (post.posted_at, post.edited_at) == (when, None)
    assert (
        build_post(external_id="1", title="t", body="b", is_html=False, author="x" * 300).author == "x" * 200
    )
