"""Text normalization shared by every way a post enters the database.

The normalized text is what the model reads and what cross-post detection hashes, so two copies
of a question that differ only in full-width characters, spacing or invisible characters get the
same ``content_hash``.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata

from bs4 import BeautifulSoup, CData, Tag
from bs4.element import NavigableString, PageElement

# Longest text we store for a post. Forum questions are a few hundred characters; anything past
# this is noise (pasted logs, spam) and would only be truncated by the tokenizer anyway.
MAX_TEXT_CHARS = 20_000

# Elements that end a line when rendered; everything else (links, emphasis, code spans) is inline.
_BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption", "figure",
    "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "ol", "p", "pre", "section",
    "table", "tr", "ul",
})  # fmt: skip
_INVISIBLE_TAGS = frozenset(("script", "style", "template", "noscript", "head"))
_LINE_BREAKS = re.compile(r"\n\s*\n")
_TEXT_NODES = (NavigableString, CData)

_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


def _is_invisible(char: str) -> bool:
    # Control and format characters (zero-width spaces, BOMs, bidi marks) carry no meaning for a
    # reader but break hashing and tokenization; newline and tab are kept as whitespace.
    return char not in "\n\t" and unicodedata.category(char) in ("Cc", "Cf")


def normalize(value: str) -> str:
    """NFKC, invisible characters dropped, runs of spaces collapsed, at most one blank line in a row."""
    value = unicodedata.normalize("NFKC", value).replace("\r\n", "\n").replace("\r", "\n")
    value = "".join(char for char in value if not _is_invisible(char))
    value = _SPACES.sub(" ", value)
    value = "\n".join(line.strip() for line in value.split("\n"))
    return _BLANK_LINES.sub("\n\n", value).strip()[:MAX_TEXT_CHARS]


def html_to_text(markup: str) -> str:
    """The text a reader sees in an HTML fragment: entities decoded, a line per block, no scripts.

    Blocks are separated by single newlines; ``normalize`` tidies the remaining whitespace.
    """
    if "<" not in markup:
        return html.unescape(markup)
    # Wrapped in a div so BeautifulSoup never mistakes a fragment for an XML document or a file
    # name, which it warns about.
    soup = BeautifulSoup(f"<div>{markup}</div>", "html.parser")
    # A walk with an explicit stack (deep nesting cannot overflow it) that reads the tree without
    # changing it: several times faster than inserting newlines into the tree for get_text().
    parts: list[str] = []
    stack: list[PageElement | None] = [soup]  # None: the end of a block
    while stack:
        node = stack.pop()
        if node is None:
            parts.append("\n")
        elif isinstance(node, Tag):
            if node.name in _INVISIBLE_TAGS:
                continue
            if node.name in _BLOCK_TAGS:
                parts.append("\n")
                stack.append(None)
            stack.extend(reversed(node.contents))
        elif type(node) in _TEXT_NODES:  # not comments, doctypes or processing instructions
            parts.append(str(node))
    return _LINE_BREAKS.sub("\n", "".join(parts))


def post_text(title: str, body: str) -> str:
    """The text the model reads: the normalized title, a newline, the normalized body."""
    parts = [normalize(title), normalize(body)]
    return "\n".join(part for part in parts if part)[:MAX_TEXT_CHARS]


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
