"""Text normalization shared by every way a post enters the database.

The normalized text is what the model reads and what cross-post detection hashes, so two copies
of a question that differ only in full-width characters, spacing or invisible characters get the
same ``content_hash``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

# Longest text we store for a post. Forum questions are a few hundred characters; anything past
# this is noise (pasted logs, spam) and would only be truncated by the tokenizer anyway.
MAX_TEXT_CHARS = 20_000

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


def post_text(title: str, body: str) -> str:
    """The text the model reads: the normalized title, a newline, the normalized body."""
    parts = [normalize(title), normalize(body)]
    return "\n".join(part for part in parts if part)[:MAX_TEXT_CHARS]


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
