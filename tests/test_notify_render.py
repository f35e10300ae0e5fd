"""Rendering: escaping of every crawled or user string, and splitting under the message limit."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lawscreen.notify.render import (
    MAX_BUTTONS,
    MESSAGE_LIMIT,
    NAME_CHARS,
    VERDICT_BUDGET,
    escape,
    feedback_data,
    parse_feedback,
    render_alert,
    render_digest,
    split_html,
    utf16_len,
)
from lawscreen.repo.notifications import DigestEntry, DigestView, Link, PostView, Verdict
from tests.fake_telegram import parse_html

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
OUR_TAGS = {"b", "i", "a"}

# Any text, astral characters included; no surrogates (not valid in a message).
any_text = st.text(st.characters(codec="utf-8"), max_size=300)
visible_text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=40).filter(str.strip)


def _wrap(tag: str, children: list[str]) -> str:
    opening = '<a href="https://example.com/?q=1&amp;r=2">' if tag == "a" else f"<{tag}>"
    return opening + "".join(children) + f"</{tag}>"


# Well-formed Telegram HTML: escaped text, line breaks and spaces, nested tags.
telegram_html = st.recursive(
    st.one_of(visible_text.map(escape), st.sampled_from(["\n", " ", "\n\n"])),
    # Every tag wraps some visible text, as in lawscreen's messages: a message whose first tags hold
    # only whitespace has no place to be cut without sending an empty part.
    lambda children: st.builds(
        _wrap,
        st.sampled_from(["b", "i", "u", "code", "a"]),
        st.lists(children, min_size=1).filter(lambda kids: not all(kid.isspace() for kid in kids)),
    ),
    max_leaves=25,
)


def _deepest_tags(source: str) -> int:
    """The most UTF-16 units that open and close tags take around any one piece of text."""
    deepest, stack = 0, list[int]()
    for tag in re.finditer(r"<(/?)(\w+)[^>]*>", source):
        if tag.group(1):
            stack.pop()
        else:
            stack.append(utf16_len(tag.group(0)) + len(f"</{tag.group(2)}>"))
            deepest = max(deepest, sum(stack))
    return deepest


def _longest_blank_run(source: str) -> int:
    """The longest run of whitespace and closing tags, in UTF-16 units: text that cannot start a part."""
    runs = re.findall(r"(?:\s|</\w+>)+", source)
    return max((utf16_len(run) for run in runs), default=0)


# The longest piece of text that cannot be cut: an entity such as "&quot;".
LONGEST_ATOM = 6


@settings(max_examples=60, deadline=None)
@given(source=st.lists(telegram_html, min_size=1, max_size=8).map("".join), limit=st.integers(150, 400))
def test_split_keeps_text_and_formatting_and_every_part_fits(source: str, limit: int) -> None:
    # The splitter's precondition: a part re-opens the tags of the last, closes them after a run of
    # blank text, and opens the next tags around one atom. Tags too deep for that are refused, by
    # design (test_split_refuses_a_tag_longer_than_a_message). lawscreen's messages nest two deep,
    # with links of a few hundred units against a limit of 4096.
    assume(2 * _deepest_tags(source) + _longest_blank_run(source) + LONGEST_ATOM <= limit)
    parts = split_html(source, limit)
    original = parse_html(source)
    parsed = [parse_html(part) for part in parts]  # each part is well formed on its own
    assert all(utf16_len(part) <= limit for part in parts)
    assert all(part.text.strip() for part in parsed)  # no empty message
    text = "".join(part.text for part in parsed)
    assert text == original.text[: len(text)]
    assert original.text[len(text) :].isspace() or len(text) == len(
        original.text
    )  # only trailing space dropped
    assert [style for part in parsed for style in part.styles] == original.styles[: len(text)]


def test_split_prefers_line_breaks_then_spaces() -> None:
    assert split_html("<b>first line</b>\nsecond line", 20) == ["<b>first line</b>\n", "second line"]
    assert split_html("one two three four", 9) == ["one two ", "three ", "four"]
    assert split_html("<i>abcdefghijkl</i>", 12) == ["<i>abcde</i>", "<i>fghij</i>", "<i>kl</i>"]


def test_split_never_cuts_an_entity() -> None:
    parts = split_html("a&amp;b" * 10, 8)
    assert all("&" not in part or "&amp;" in part for part in parts)
    assert "".join(parse_html(part).text for part in parts) == "a&b" * 10


def test_split_refuses_a_tag_longer_than_a_message() -> None:
    with pytest.raises(ValueError, match="tags too long"):
        split_html(f'<a href="https://e.com/{"x" * 50}">text</a>', 40)


def _post(
    title: str = "标题", text: str = "正文", source: str = "v2ex", links: tuple[Link, ...] = ()
) -> PostView:
    return PostView(
        post_id=7,
        title=title,
        text=text,
        source=source,
        posted_at=NOW,
        links=links or (Link(source, "https://v2ex.example/t/7"),),
    )


@settings(max_examples=100, deadline=None)
@given(title=any_text, body=any_text, source=any_text, url=any_text, name=any_text)
def test_every_crawled_or_user_string_is_escaped(
    title: str, body: str, source: str, url: str, name: str
) -> None:
    post = _post(title, body, source, (Link(source, url), Link(source, "https://e.com/?" + url)))
    verdict = Verdict(True, name, NOW)
    alert = render_alert(post, 0.97, TZ, verdict)
    digest = render_digest(DigestView(NOW, (DigestEntry(post, 0.8, False),), more=0), TZ, {7: verdict})
    for part in [*alert, *digest]:
        parsed = parse_html(part.text)  # would raise on any unescaped <, > or &
        assert utf16_len(part.text) <= MESSAGE_LIMIT
        assert {style.split()[0] for styles in parsed.styles for style in styles} <= OUR_TAGS
        for styles in parsed.styles:  # the only links are http(s) links
            hrefs = [style for style in styles if style.startswith("a ")]
            assert all(href.startswith(('a href="https://', 'a href="http://')) for href in hrefs)
    shown = "".join(parse_html(part.text).text for part in alert)
    assert title[:100].strip() in shown
    assert source in shown


def test_alert_shows_title_source_time_score_snippet_and_every_link() -> None:
    links = (Link("v2ex", "https://v2ex.example/t/7"), Link("tieba", "https://tieba.example/p/9"))
    post = _post("公司拖欠工资", "公司拖欠工资\n三个月没发工资了，能申请劳动仲裁吗？", links=links)
    (part,) = render_alert(post, 0.971, TZ)
    assert part.text.splitlines() == [
        "🔔 <b>公司拖欠工资</b>",
        "v2ex · 2026-11-22 09:00 · 分数 0.97",
        "三个月没发工资了，能申请劳动仲裁吗？",
        '🔗 <a href="https://v2ex.example/t/7">v2ex</a>',
        '🔗 <a href="https://tieba.example/p/9">tieba</a>',
    ]
    assert [[button.data for button in row] for row in part.keyboard] == [["fb:7:1", "fb:7:0"]]
    assert [[button.text for button in row] for row in part.keyboard] == [["✅ 法律咨询", "❌ 不是"]]


def test_unsafe_or_missing_links_are_shown_as_text() -> None:
    links = (
        Link("v2ex", "javascript:alert(1)"),
        Link("import", None),
        Link("x", "https://e.com/" + "a" * 2000),
    )
    text = render_alert(_post(links=links), 0.9, TZ)[0].text
    assert "<a " not in text
    assert "🔗 v2ex\n🔗 import\n🔗 x" in text


def test_a_long_alert_is_split_with_the_buttons_and_verdict_on_its_last_part() -> None:
    links = tuple(Link(f"forum{n}", f"https://forum{n}.example/{'p' * 200}") for n in range(60))
    verdict = Verdict(False, "律师" * NAME_CHARS, NOW)
    parts = render_alert(_post(links=links), 0.96, TZ, verdict)
    assert len(parts) > 1
    assert all(utf16_len(part.text) <= MESSAGE_LIMIT for part in parts)
    assert [bool(part.keyboard) for part in parts] == [False] * (len(parts) - 1) + [True]
    assert "已标记：❌ 不是" in parts[-1].text
    # The verdict does not move the cuts: the parts are the same with and without it.
    assert [part.text for part in render_alert(_post(links=links), 0.96, TZ)[:-1]] == [
        p.text for p in parts[:-1]
    ]


def test_the_verdict_line_fits_its_budget() -> None:
    worst = Verdict(True, "<" * (NAME_CHARS * 2), NOW)
    (part,) = render_alert(_post(), 0.9, TZ, worst)
    (bare,) = render_alert(_post(), 0.9, TZ)
    assert utf16_len(part.text) - utf16_len(bare.text) <= VERDICT_BUDGET


def _digest(hits: int, asks: int, more: int = 0) -> DigestView:
    entries = [DigestEntry(_post(f"帖子 {n}"), 0.9 - n / 100, False) for n in range(hits)]
    entries += [DigestEntry(_post(f"拿不准 {n}"), 0.5, True) for n in range(asks)]
    return DigestView(NOW, tuple(entries), more)


def test_digest_ranks_counts_the_rest_and_ends_with_the_please_label_section() -> None:
    (part,) = render_digest(_digest(hits=2, asks=1, more=5), TZ, {})
    text = part.text
    assert "新结果 7 条，按分数排序，显示前 2 条。" in text
    assert text.index("<b>1.</b> ⬜ <b>帖子 0</b>（0.90）") < text.index("<b>2.</b> ⬜ <b>帖子 1</b>（0.89）")
    assert text.index("另有 5 条分数较低的结果未显示") < text.index("请帮忙标注") < text.index("<b>3.</b>")
    assert [row[0].text for row in part.keyboard] == ["1. ✅ 法律咨询", "2. ✅ 法律咨询", "3. ✅ 法律咨询"]


def test_an_empty_digest_says_so() -> None:
    (part,) = render_digest(_digest(hits=0, asks=0), TZ, {})
    assert "没有新的结果" in part.text
    assert part.keyboard == ()


def test_a_long_digest_is_split_between_entries_the_same_way_whatever_the_verdicts() -> None:
    view = _digest(hits=45, asks=5)
    parts = render_digest(view, TZ, {})
    assert len(parts) > 1
    assert all(utf16_len(part.text) <= MESSAGE_LIMIT for part in parts)
    assert all(sum(len(row) for row in part.keyboard) <= MAX_BUTTONS for part in parts)
    marked = render_digest(view, TZ, {7: Verdict(True, None, NOW)})
    assert [part.keyboard for part in marked] == [part.keyboard for part in parts]
    assert "<b>1.</b> ✅" in marked[0].text
    assert all(part.holds(7) for part in parts)  # every entry here is post 7


@pytest.mark.parametrize(
    "data",
    ["fb:7:2", "fb:-7:1", "fb:0:1", "fb:7:1:x", "fb:7:1\n", "xx:7:1", "", None, "fb:" + "9" * 19 + ":1"],
)
def test_feedback_data_is_validated(data: str | None) -> None:
    with pytest.raises(ValueError, match="not feedback data"):
        parse_feedback(data)


def test_feedback_data_round_trips() -> None:
    assert parse_feedback(feedback_data(123, True)) == (123, True)
    assert parse_feedback(feedback_data(123, False)) == (123, False)
    assert parse_feedback(feedback_data(10**18 - 1, True)) == (10**18 - 1, True)
    assert len(feedback_data(10**18 - 1, True).encode()) <= 64  # Telegram's callback data limit
