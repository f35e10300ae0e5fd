"""RSS 2.0 and Atom feeds of any forum, parsed by feedparser.

feedparser recovers what it can from XML that is not well-formed (it sets ``bozo``): recovered
entries are kept and a warning logged, while a body it cannot read at all is a recorded reject.
A feed whose bytes do not match its declared charset is rejected: feedparser would fall back to
another charset and store mojibake. Feeds are not paged; conditional requests make an unchanged
feed cost one 304.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from functools import partial
from typing import Any

import feedparser

from lawscreen.crawl._config import FeedSource
from lawscreen.crawl._cursor import Cursor
from lawscreen.crawl._http import Response, SourceHttp
from lawscreen.crawl._items import Listing, Page, RejectReason, build_page, build_post
from lawscreen.errors import InputRejected
from lawscreen.repo.posts import NewPost

logger = logging.getLogger(__name__)

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})


def listings(config: FeedSource, http: SourceHttp, cursor: Cursor) -> list[Listing]:
    return [Listing(config.url, partial(_pages, config, http, cursor))]


async def _pages(config: FeedSource, http: SourceHttp, cursor: Cursor) -> AsyncGenerator[Page, None]:
    response = await http.get(config.url, validators=cursor.http.get(config.url))
    if response.not_modified:
        yield Page(response.url)
        return
    if response.media_type and "xml" not in response.media_type:
        raise InputRejected(
            RejectReason.WRONG_CONTENT_TYPE,
            f"expected an RSS or Atom feed, got {response.media_type}",
            url=response.url,
        )
    entries = await asyncio.to_thread(_parse, response)
    page = build_page(response.url, entries, _post)
    page.commit = partial(cursor.remember_validators, config.url, response.validators)
    yield page


def _parse(response: Response) -> list[Any]:
    # A file-like object, never bytes or str: feedparser would open those as a file name or URL.
    parsed = feedparser.parse(
        io.BytesIO(response.body),
        response_headers={"content-type": response.content_type, "content-location": response.url},
    )
    error = parsed.get("bozo_exception")
    if isinstance(error, feedparser.CharacterEncodingOverride | feedparser.CharacterEncodingUnknown):
        raise InputRejected(RejectReason.BAD_ENCODING, str(error), url=response.url)
    if not parsed.entries and (parsed.bozo or not parsed.version):
        problem = f"not well-formed: {error}" if parsed.bozo else "neither RSS nor Atom"
        raise InputRejected(RejectReason.MALFORMED_XML, problem, url=response.url)
    if parsed.bozo:
        logger.warning(
            "%s: not well-formed (%s); kept %d recovered entries", response.url, error, len(parsed.entries)
        )
    return list(parsed.entries)


def _post(entry: Any) -> NewPost:
    # dict.get reads what the feed said: feedparser's own lookups substitute other fields for
    # missing ones (``updated_parsed`` for ``published_parsed``, with a DeprecationWarning).
    def field(name: str) -> Any:
        return dict.get(entry, name) or None

    link = field("link")
    published = _datetime(field("published_parsed"))
    updated = _datetime(field("updated_parsed"))
    detail = (field("content") or [field("summary_detail") or {}])[0]
    return build_post(
        external_id=field("id") or link,
        title=field("title") or "",
        body=detail.get("value") or "",
        is_html=detail.get("type", "text/html") in HTML_TYPES,
        url=link,
        author=field("author"),
        posted_at=published or updated,
        edited_at=updated,
    )


def _datetime(value: time.struct_time | None) -> datetime | None:
    # feedparser has already converted every date it understood to UTC.
    return datetime(*value[:6], tzinfo=UTC) if value else None
