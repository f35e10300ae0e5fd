"""What a source hands the runner: pages of posts, plus the items it refused and why.

Every source turns its items into ``NewPost``s through ``build_post``, so the limits on what is
stored (an absurdly long post is rejected; a long one is stored, its model text capped by
``lawscreen.text.MAX_TEXT_CHARS``) and the reasons recorded for bad input are the same everywhere.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from lawscreen.errors import CrawlError, InputRejected
from lawscreen.repo.posts import NewPost
from lawscreen.text import content_hash, html_to_text

# A post body (HTML or text, as fetched) longer than this is spam or a pasted dump, not a question:
# it is rejected rather than stored. Anything shorter is stored whole; the model reads its first
# MAX_TEXT_CHARS characters.
MAX_BODY_CHARS = 200_000
# Column widths in the posts table.
MAX_EXTERNAL_ID_CHARS = 200
MAX_AUTHOR_CHARS = 200

_ModelT = TypeVar("_ModelT", bound=BaseModel)


class RejectReason(StrEnum):
    """``crawl_rejects.reason``: why a response or an item was skipped."""

    MALFORMED_JSON = "malformed_json"
    MALFORMED_XML = "malformed_xml"
    WRONG_CONTENT_TYPE = "wrong_content_type"
    BAD_ENCODING = "bad_encoding"  # not UTF-8 where UTF-8 is required, or not the declared charset
    TOO_LARGE = "too_large"  # a response (or a JSONL line) over its size cap
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    TOO_LONG = "too_long"  # a post body over MAX_BODY_CHARS
    EMPTY = "empty"  # neither title nor text
    HTTP_STATUS = "http_status"  # an item's own URL answered 4xx: deleted, private


@dataclass(frozen=True, slots=True)
class Reject:
    reason: str
    detail: str
    url: str | None = None
    external_id: str | None = None

    @classmethod
    def of(cls, exc: InputRejected, url: str | None = None) -> Reject:
        return cls(exc.reason, exc.detail, exc.url or url, exc.external_id)


@dataclass
class Page:
    """One response's worth of posts. ``commit`` runs once they are stored: it advances the cursor.

    ``known`` counts items the source recognized as unchanged without building them (a Discourse
    topic not bumped since the last run). ``error`` ends the listing after this page is stored, so
    the good items of a page are kept even when part of it failed.
    """

    url: str | None
    posts: list[NewPost] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    known: int = 0
    commit: Callable[[], None] | None = None
    error: CrawlError | None = None


@dataclass(frozen=True)
class Listing:
    """One sequence of pages of a source: a V2EX node, a forum's latest topics, a feed, a file.

    ``stop_when_known``: stop after the first page that brings nothing new (listings sorted newest
    first). A file is read to its end instead.
    """

    label: str
    pages: Callable[[], AsyncGenerator[Page, None]]
    stop_when_known: bool = True


def build_post(
    *,
    external_id: str | None,
    title: str,
    body: str,
    is_html: bool,
    url: str | None = None,
    author: str | None = None,
    posted_at: datetime | None = None,
    edited_at: datetime | None = None,
) -> NewPost:
    """A post from a source's fields; ``external_id`` None means "identify it by its content"."""
    if len(body) + len(title) > MAX_BODY_CHARS:
        raise InputRejected(
            RejectReason.TOO_LONG,
            f"{len(title) + len(body):,} characters, over the {MAX_BODY_CHARS:,} cap",
            url=url,
            external_id=external_id,
        )
    post = NewPost.build(
        external_id="",
        title=title,
        body_text=html_to_text(body) if is_html else body,
        body_raw=body,
        url=url,
        author=author[:MAX_AUTHOR_CHARS] if author else None,
        posted_at=posted_at,
        edited_at=edited_at if edited_at != posted_at else None,
    )
    if not post.text:
        raise InputRejected(RejectReason.EMPTY, "no title and no text", url=url, external_id=external_id)
    if external_id is None:
        external_id = content_hash(post.text)
    elif len(external_id) > MAX_EXTERNAL_ID_CHARS:
        # Long ids (some RSS guids are whole URLs with tracking parameters) are hashed: still stable.
        external_id = content_hash(external_id)
    return replace(post, external_id=external_id)


def validate(model: type[_ModelT], raw: Any, what: str) -> _ModelT:
    """``raw`` as ``model``, or InputRejected naming the first bad field (never its value)."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or what
        reason = RejectReason.MISSING_FIELD if first["type"] == "missing" else RejectReason.INVALID_FIELD
        raise InputRejected(reason, f"{what}: field '{where}': {first['msg']}") from None


def from_unix(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def item_id(raw: Any) -> str | None:
    """The ``id`` of a raw item, when it has one, for the reject record of an item that failed."""
    if isinstance(raw, dict) and isinstance(raw.get("id"), str | int):
        return str(raw["id"])[:MAX_EXTERNAL_ID_CHARS]
    return None


def build_page(url: str | None, raw_items: Iterable[Any], build: Callable[[Any], NewPost]) -> Page:
    """Build every item; a bad one becomes a Reject and the others are kept."""
    result = Page(url)
    for raw in raw_items:
        try:
            result.posts.append(build(raw))
        except InputRejected as exc:
            result.rejects.append(
                Reject(exc.reason, exc.detail, exc.url or url, exc.external_id or item_id(raw))
            )
    return result
