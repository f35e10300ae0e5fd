"""Local JSON lines files: offline imports, and the demo's forum feed.

One post per line: ``id``, ``url``, ``author``, ``created`` (ISO 8601 with an offset), ``title``,
and ``text`` (or ``content``); other fields (``forum``, ``label``) are ignored. A line without an
``id`` is identified by the hash of its text. The whole file is read every time it changes (its
size or modification time differ from the last complete read), in pages of ``LINES_PER_PAGE``
lines; an unchanged file is not read at all.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Generator
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import AwareDatetime, BaseModel, StrictInt, StrictStr

from lawscreen.crawl._config import JsonlSource
from lawscreen.crawl._cursor import Cursor, FileStamp
from lawscreen.crawl._items import Listing, Page, Reject, RejectReason, build_post, item_id, validate
from lawscreen.errors import CrawlError, InputRejected
from lawscreen.repo.posts import NewPost

LINES_PER_PAGE = 1000
# A post is a few KB; a longer line is a dump or a broken file, and is skipped without reading it
# into memory whole.
MAX_LINE_BYTES = 1024 * 1024
_SKIP_CHUNK = 64 * 1024


class _Line(BaseModel):
    id: StrictStr | StrictInt | None = None
    url: str | None = None
    author: str | None = None
    created: AwareDatetime | None = None
    title: str = ""
    text: str | None = None
    content: str | None = None


def listings(config: JsonlSource, cursor: Cursor) -> list[Listing]:
    return [Listing(str(config.path), partial(_pages, config.path, cursor), stop_when_known=False)]


async def _pages(path: Path, cursor: Cursor) -> AsyncGenerator[Page, None]:
    try:
        stat = path.stat()
    except OSError as exc:
        raise CrawlError(f"{path}: {exc.strerror or exc}") from None
    stamp = FileStamp(size=stat.st_size, mtime_ns=stat.st_mtime_ns)
    if cursor.file == stamp:
        return
    pages = _read_pages(path)
    try:
        while (page := await asyncio.to_thread(next, pages, None)) is not None:
            yield page
    finally:
        pages.close()
    # Only a file read to its end is marked as read, so a failed run reads it again.
    last = Page(path.as_uri())
    last.commit = partial(setattr, cursor, "file", stamp)
    yield last


def _read_pages(path: Path) -> Generator[Page, None, None]:
    uri = path.as_uri()
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise CrawlError(f"{path}: {exc.strerror or exc}") from None
    with handle:
        page = Page(uri)
        number = 0
        while raw := handle.readline(MAX_LINE_BYTES + 1):
            number += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                _skip_rest_of_line(handle)
                page.rejects.append(
                    Reject(RejectReason.TOO_LARGE, f"line {number}: over {MAX_LINE_BYTES:,} bytes", uri)
                )
            elif raw.strip():
                _add_line(page, raw, number)
            if len(page.posts) + len(page.rejects) >= LINES_PER_PAGE:
                yield page
                page = Page(uri)
        yield page


def _skip_rest_of_line(handle: Any) -> None:
    while (chunk := handle.readline(_SKIP_CHUNK)) and not chunk.endswith(b"\n"):
        pass


def _add_line(page: Page, raw: bytes, number: int) -> None:
    parsed: Any = None
    try:
        try:
            parsed = json.loads(raw.decode("utf-8-sig"))
        except UnicodeDecodeError:
            raise InputRejected(RejectReason.BAD_ENCODING, "not UTF-8") from None
        except json.JSONDecodeError as exc:
            raise InputRejected(RejectReason.MALFORMED_JSON, f"{exc.msg} at column {exc.colno}") from None
        page.posts.append(_post(parsed))
    except InputRejected as exc:
        page.rejects.append(Reject(exc.reason, f"line {number}: {exc.detail}", page.url, item_id(parsed)))


def _post(raw: Any) -> NewPost:
    if not isinstance(raw, dict):
        raise InputRejected(RejectReason.INVALID_FIELD, "not a JSON object")
    line = validate(_Line, raw, "line")
    body = line.text if line.text is not None else line.content
    if body is None:
        raise InputRejected(RejectReason.MISSING_FIELD, "no 'text' or 'content'")
    return build_post(
        external_id=None if line.id is None else str(line.id),
        title=line.title,
        body=body,
        is_html=False,
        url=line.url,
        author=line.author,
        posted_at=line.created,
    )
