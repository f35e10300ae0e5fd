"""Telegram HTML for alerts, digests and replies: escaped, and split under the message limit.

Every crawled or user-supplied string goes through ``escape``: a title such as ``<b>`` or ``A & B``
must reach the lawyer as text, never as markup, and never as a parse error that loses the message.
Length is measured in UTF-16 code units of the HTML source. Telegram counts the parsed text in
UTF-16 units, and tags and entities only shrink when parsed, so a part that fits here fits there.

Rendering is a pure function of the database rows, so the message a button belongs to can be
rendered again, identical but for the verdict, when the lawyer presses it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from lawscreen.repo.notifications import DigestEntry, DigestView, Link, PostView, Verdict
from lawscreen.text import normalize

MESSAGE_LIMIT = 4096  # Telegram's limit on a message's text
# Telegram documents no limit on inline buttons; about 100 per message is what it accepts.
MAX_BUTTONS = 100
ALERT_TITLE_CHARS = 200
ALERT_SNIPPET_CHARS = 400
DIGEST_TITLE_CHARS = 80
DIGEST_SNIPPET_CHARS = 120
NAME_CHARS = 32  # who pressed a button, as shown under an alert
# Longer links are shown as their source name only: a link is one token the splitter cannot cut.
MAX_HREF_CHARS = 1024
TIME_FORMAT = "%Y-%m-%d %H:%M"

LEGAL_BUTTON = "✅ 法律咨询"
NOT_LEGAL_BUTTON = "❌ 不是"
# One UTF-16 unit each, so marking a digest entry never changes how the digest is split.
UNLABELED_MARK, LEGAL_MARK, NOT_LEGAL_MARK = "⬜", "✅", "❌"
# Upper bound of the verdict line added under an alert: every name character escaped to 6 units.
VERDICT_BUDGET = 6 * NAME_CHARS + 64

# A button's data: "fb:<post id>:<1 legal | 0 not>". Anchored, as handlers match it from the start
# only; at most 18 digits, so any id it accepts fits the database's bigint.
FEEDBACK_DATA = re.compile(r"fb:([1-9]\d{0,17}):([01])\Z")
_TOKEN = re.compile(r"<[^<>]*>|&#?\w+;|.", re.DOTALL)
_TAG = re.compile(r"<(/?)([a-zA-Z][\w-]*)")


@dataclass(frozen=True, slots=True)
class Button:
    text: str
    data: str


@dataclass(frozen=True, slots=True)
class Part:
    """One Telegram message: HTML text and its inline keyboard (rows of buttons)."""

    text: str
    keyboard: tuple[tuple[Button, ...], ...] = ()

    def holds(self, post_id: int) -> bool:
        """Whether this message carries the post's buttons."""
        data = feedback_data(post_id, True)
        return any(button.data == data for row in self.keyboard for button in row)


def escape(value: str) -> str:
    return html.escape(value, quote=True)


def utf16_len(value: str) -> int:
    return len(value.encode("utf-16-le")) // 2


def truncate(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def feedback_data(post_id: int, is_legal: bool) -> str:
    return f"fb:{post_id}:{int(is_legal)}"


def parse_feedback(data: str | None) -> tuple[int, bool]:
    """The post id and verdict a button carries. Clients can send any data: it is validated."""
    match = FEEDBACK_DATA.fullmatch(data or "")
    if match is None:
        raise ValueError(f"not feedback data: {data!r}")
    return int(match[1]), match[2] == "1"


def render_alert(
    post: PostView, score: float | None, tz: tzinfo, verdict: Verdict | None = None
) -> list[Part]:
    """An alert: title, source, time, score, snippet and every link; buttons on the last part."""
    title = escape(truncate(post.title or _untitled(post), ALERT_TITLE_CHARS))
    lines = [
        f"🔔 <b>{title}</b>",
        f"{escape(post.source)} · {_time(post.posted_at, tz)} · 分数 {_score(score)}",
        escape(truncate(_snippet(post), ALERT_SNIPPET_CHARS)),
        *(f"🔗 {_link(link)}" for link in post.links),
    ]
    # Split without the verdict, so the parts, and the message a button sits on, stay the same
    # whichever verdict is shown; the budget keeps room for it on the last part.
    texts = split_html("\n".join(lines), MESSAGE_LIMIT - VERDICT_BUDGET)
    if verdict is not None:
        texts[-1] += "\n\n" + _verdict_line(verdict, tz)
    keyboard = (
        (
            Button(LEGAL_BUTTON, feedback_data(post.post_id, True)),
            Button(NOT_LEGAL_BUTTON, feedback_data(post.post_id, False)),
        ),
    )
    return [Part(text) for text in texts[:-1]] + [Part(texts[-1], keyboard)]


def render_digest(view: DigestView, tz: tzinfo, verdicts: Mapping[int, Verdict]) -> list[Part]:
    """A digest: header, ranked hits, "N more", then the please-label section, in as few parts as fit.

    Each entry's buttons sit on the part holding the entry. Verdict marks all have the same length,
    so a digest is split the same way before and after any button press.
    """
    hits = [entry for entry in view.entries if not entry.label_request]
    asks = [entry for entry in view.entries if entry.label_request]
    header = f"📋 <b>法律咨询摘要</b> · {view.created_at.astimezone(tz).strftime(TIME_FORMAT)}\n"
    if hits:
        header += f"新结果 {len(hits) + view.more} 条，按分数排序"
        header += f"，显示前 {len(hits)} 条。" if view.more else "。"
    else:
        header += "没有新的结果。"
    blocks: list[tuple[str, tuple[Button, ...] | None]] = [(header, None)]
    blocks += [_digest_entry(rank, entry, verdicts, tz) for rank, entry in enumerate(hits, start=1)]
    if view.more:
        blocks.append((f"<i>……另有 {view.more} 条分数较低的结果未显示。</i>", None))
    if asks:
        blocks.append(("🤔 <b>请帮忙标注</b>：模型对这几条拿不准，你的判断最能帮它改进。", None))
        first = len(hits) + 1
        blocks += [_digest_entry(rank, entry, verdicts, tz) for rank, entry in enumerate(asks, start=first)]
    return _pack(blocks)


def render_text(text: str) -> list[Part]:
    """A reply without buttons (help, statistics), split if it must be."""
    return [Part(part) for part in split_html(text)]


def split_html(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Cut Telegram HTML into parts of at most ``limit`` UTF-16 units, each well formed.

    Never cuts inside a tag or an entity; a tag open at a cut is closed at the end of the part and
    opened again at the start of the next. Cuts after the last newline that fits, else after the
    last space, else after the last character, so every part has text. The parts' texts,
    concatenated, are the original text, but for whitespace at its very end.
    """
    splitter = _Splitter(limit)
    for token in _TOKEN.findall(text):
        splitter.add(token)
    return splitter.finish()


class _Splitter:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[str] = []
        self._start([])

    def _start(self, stack: list[tuple[str, str]]) -> None:
        self.stack = list(stack)  # tags open at the end of the current part: (name, opening tag)
        self.tokens = [opening for _, opening in stack]
        self.length = sum(utf16_len(token) for token in self.tokens)
        self.content_from = len(self.tokens)  # tokens before this only re-open tags
        self.visible = False  # whether the part has text other than whitespace yet
        # Where a cut may go, once the part has text: (index into tokens, tags open there).
        self.breaks: dict[str, tuple[int, list[tuple[str, str]]]] = {}

    def add(self, token: str) -> None:
        while not self._fits(token):
            self._cut()
        self.tokens.append(token)
        self.length += utf16_len(token)
        self.stack = _after(self.stack, token)
        if token.startswith("</") or token.isspace():
            # A cut just before closing tags or whitespace is better made just after them: the next
            # part then need not re-open tags only to close them, nor start with blank space. Every
            # prefix of the part fitted when its last token was added, so the longer one fits too.
            for kind, (index, _) in list(self.breaks.items()):
                if index == len(self.tokens) - 1:
                    self.breaks[kind] = (len(self.tokens), list(self.stack))
        if token in ("\n", " ") and self.visible:
            self.breaks[token] = (len(self.tokens), list(self.stack))
        elif not token.startswith("<") and not token.isspace():
            self.visible = True

    def finish(self) -> list[str]:
        # Trailing whitespace alone would be an empty message (Telegram trims it anyway): dropped.
        if self.visible:
            self.parts.append("".join(self.tokens) + _closers(self.stack))
        return self.parts

    def _fits(self, token: str) -> bool:
        return self.length + utf16_len(token) + utf16_len(_closers(_after(self.stack, token))) <= self.limit

    def _cut(self) -> None:
        index, stack = self.breaks.get("\n") or self.breaks.get(" ") or self._after_last_text()
        rest = self.tokens[index:]
        self.parts.append("".join(self.tokens[:index]) + _closers(stack))
        self._start(stack)
        for token in rest:  # they fit again: the new part holds no more than the old one did
            self.add(token)

    def _after_last_text(self) -> tuple[int, list[tuple[str, str]]]:
        # Tags opened after the last text move to the next part, with nothing to wrap here.
        if not self.visible:
            raise ValueError(f"no text fits in a message of {self.limit} units: tags too long")
        opened = 0  # the part has text, so this stops there
        while _TAG.match(self.tokens[-1 - opened]) and not self.tokens[-1 - opened].startswith("</"):
            opened += 1
        return len(self.tokens) - opened, self.stack[: len(self.stack) - opened]


def _after(stack: list[tuple[str, str]], token: str) -> list[tuple[str, str]]:
    match = _TAG.match(token)
    if match is None:
        return stack
    if match[1]:  # a closing tag closes the innermost tag of its name
        for depth in range(len(stack) - 1, -1, -1):
            if stack[depth][0] == match[2].lower():
                return stack[:depth] + stack[depth + 1 :]
        return stack
    return [*stack, (match[2].lower(), token)]


def _closers(stack: Sequence[tuple[str, str]]) -> str:
    return "".join(f"</{name}>" for name, _ in reversed(stack))


def _pack(blocks: Sequence[tuple[str, tuple[Button, ...] | None]]) -> list[Part]:
    """Join blocks into as few messages as fit; a block too long for one message is split itself."""
    parts: list[Part] = []
    texts: list[str] = []
    keyboard: list[tuple[Button, ...]] = []

    def flush() -> None:
        if texts:
            parts.append(Part("\n\n".join(texts), tuple(keyboard)))
        texts.clear()
        keyboard.clear()

    for block, buttons in blocks:
        for index, piece in enumerate(split_html(block)):
            # An entry's buttons go with its first piece, which holds its rank and verdict mark.
            row = buttons if index == 0 else None
            length = sum(utf16_len(text) + 2 for text in texts) + utf16_len(piece)  # 2: "\n\n"
            buttons_after = sum(len(existing) for existing in keyboard) + (len(row) if row else 0)
            too_many_buttons = buttons_after > MAX_BUTTONS
            if length > MESSAGE_LIMIT or too_many_buttons:
                flush()
            texts.append(piece)
            if row is not None:
                keyboard.append(row)
    flush()
    return parts


def _digest_entry(
    rank: int, entry: DigestEntry, verdicts: Mapping[int, Verdict], tz: tzinfo
) -> tuple[str, tuple[Button, ...]]:
    post = entry.post
    verdict = verdicts.get(post.post_id)
    mark = UNLABELED_MARK if verdict is None else LEGAL_MARK if verdict.is_legal else NOT_LEGAL_MARK
    title = escape(truncate(post.title or _untitled(post), DIGEST_TITLE_CHARS))
    text = "\n".join(
        [
            f"<b>{rank}.</b> {mark} <b>{title}</b>（{_score(entry.score)}）",
            # Links are named by their source: the first is the post's own.
            f"{_time(post.posted_at, tz)} · " + " · ".join(_link(link) for link in post.links),
            f"<i>{escape(truncate(_snippet(post), DIGEST_SNIPPET_CHARS))}</i>",
        ]
    )
    buttons = (
        Button(f"{rank}. {LEGAL_BUTTON}", feedback_data(post.post_id, True)),
        Button(f"{rank}. {NOT_LEGAL_BUTTON}", feedback_data(post.post_id, False)),
    )
    return text, buttons


def _verdict_line(verdict: Verdict, tz: tzinfo) -> str:
    label = LEGAL_BUTTON if verdict.is_legal else NOT_LEGAL_BUTTON
    by = f" · {escape(truncate(verdict.by, NAME_CHARS))}" if verdict.by else ""
    return f"<b>已标记：{label}</b>{by} · {verdict.at.astimezone(tz).strftime(TIME_FORMAT)}"


def _link(link: Link) -> str:
    name = escape(link.source)
    if link.url and link.url.startswith(("https://", "http://")):
        href = escape(link.url)
        if len(href) <= MAX_HREF_CHARS:
            return f'<a href="{href}">{name}</a>'
    return name


def _snippet(post: PostView) -> str:
    # The stored text starts with the normalized title; the snippet is what follows, on one line.
    title = normalize(post.title)
    body = post.text[len(title) :] if title and post.text.startswith(title) else post.text
    return " ".join(body.split())


def _untitled(post: PostView) -> str:
    return truncate(_snippet(post), 30) or "（无标题）"


def _time(value: datetime | None, tz: tzinfo) -> str:
    return value.astimezone(tz).strftime(TIME_FORMAT) if value else "时间未知"


def _score(score: float | None) -> str:
    return "—" if score is None else f"{score:.2f}"
