"""Running sources: each source's listings are read page by page, every page stored in its own
transaction, and the run's outcome recorded as the source's health.

Sources of one run share one HTTP client and run concurrently; the per-host limits in ``_http``
keep that polite. Nothing a source does can stop another: every failure, expected or not, ends
as a failed ``CrawlSummary`` and a failed ``crawl_runs`` row.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import assert_never

from lawscreen.crawl import _discourse, _feed, _jsonl, _store, _v2ex
from lawscreen.crawl._config import DiscourseSource, FeedSource, JsonlSource, SourceConfig, V2exSource
from lawscreen.crawl._cursor import Cursor
from lawscreen.crawl._http import Http
from lawscreen.crawl._items import Listing, Page, Reject
from lawscreen.database import transaction
from lawscreen.errors import ConfigError, CrawlError, InputRejected
from lawscreen.repo.posts import UpsertResult
from lawscreen.settings import get_settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CrawlSummary:
    """The outcome of one source's run.

    ``new``/``updated``/``unchanged`` count posts; ``skipped`` counts items refused as bad input
    (each has a ``crawl_rejects`` row); ``errors`` counts requests or pages that failed, each
    ending its listing. ``ok`` means no errors; ``error`` is the first one's message.
    """

    source: str
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    errors: int = 0
    ok: bool = True
    error: str | None = None
    duration: float = 0.0  # seconds


ProgressCallback = Callable[[CrawlSummary], None]


async def crawl(
    names: Sequence[str] | None = None, *, on_progress: ProgressCallback | None = None
) -> list[CrawlSummary]:
    """Crawl the named sources (all enabled ones when None) as stored by ``sync_sources``.

    ConfigError when a name is not an enabled source. ``on_progress`` receives a source's summary
    so far after each page, and its final summary.
    """
    selected = await asyncio.to_thread(_select, names)
    if not selected:
        return []
    async with Http.open(get_settings()) as http:
        return list(await asyncio.gather(*(_SourceRun(name, http, on_progress).run() for name in selected)))


def crawl_source(name: str) -> CrawlSummary:
    """Crawl one source, synchronously, with its own HTTP client and database sessions."""
    return asyncio.run(crawl([name]))[0]


def _select(names: Sequence[str] | None) -> list[str]:
    # Also creates the engine here, before the sources' threads race to create it.
    with transaction() as session:
        enabled = _store.enabled_sources(session)
    if names is None:
        return enabled
    unknown = [name for name in names if name not in enabled]
    if unknown:
        raise ConfigError(
            f"no enabled source named {', '.join(unknown)} (enabled: {', '.join(enabled) or 'none'}); "
            "sources come from the sources file"
        )
    return list(dict.fromkeys(names))


def _listings(config: SourceConfig, http: Http, cursor: Cursor) -> list[Listing]:
    if isinstance(config, JsonlSource):
        return _jsonl.listings(config, cursor)
    source_http = http.for_source(
        min_delay=config.min_delay_seconds, respect_robots=config.respect_robots, cursor=cursor
    )
    match config:
        case V2exSource():
            return _v2ex.listings(config, source_http, cursor)
        case DiscourseSource():
            return _discourse.listings(config, source_http, cursor)
        case FeedSource():
            return _feed.listings(config, source_http, cursor)
        case _:
            assert_never(config)


def _start(name: str) -> _store.RunStart:
    with transaction() as session:
        return _store.start_run(session, name)


def _store_page(run: _store.RunStart, page: Page) -> UpsertResult:
    with transaction() as session:
        return _store.store_page(session, run, page.posts, page.rejects)


class _SourceRun:
    def __init__(self, name: str, http: Http, on_progress: ProgressCallback | None) -> None:
        self.name = name
        self.http = http
        self.on_progress = on_progress
        self.started = time.monotonic()
        self.new = self.updated = self.unchanged = self.skipped = 0
        self.failures: list[str] = []

    def summary(self) -> CrawlSummary:
        error = None
        if self.failures:
            more = len(self.failures) - 1
            error = self.failures[0] + (f" (and {more} more error{'s' if more > 1 else ''})" if more else "")
        return CrawlSummary(
            source=self.name,
            new=self.new,
            updated=self.updated,
            unchanged=self.unchanged,
            skipped=self.skipped,
            errors=len(self.failures),
            ok=not self.failures,
            error=error,
            duration=time.monotonic() - self.started,
        )

    def fail(self, message: str) -> None:
        logger.warning("source %s: %s", self.name, message)
        self.failures.append(message)

    def report(self) -> CrawlSummary:
        summary = self.summary()
        if self.on_progress is not None:
            self.on_progress(summary)
        return summary

    async def run(self) -> CrawlSummary:
        try:
            start = await asyncio.to_thread(_start, self.name)
        except Exception as exc:  # the database is down, say: nothing can be recorded
            logger.exception("source %s: could not start a run", self.name)
            self.fail(f"could not start: {exc}")
            return self.report()
        try:
            for listing in _listings(start.config, self.http, start.cursor):
                await self._crawl_listing(start, listing)
        except CrawlError as exc:
            self.fail(str(exc))
        except Exception as exc:  # a bug must not stop the other sources either
            logger.exception("source %s: unexpected error", self.name)
            self.fail(f"internal error: {exc!r}")

        summary = self.summary()
        try:
            await asyncio.to_thread(self._finish, start, summary)
        except Exception as exc:
            logger.exception("source %s: could not record the run", self.name)
            self.fail(f"could not record the run: {exc}")
        return self.report()

    def _finish(self, start: _store.RunStart, summary: CrawlSummary) -> None:
        with transaction() as session:
            _store.finish_run(
                session,
                start,
                counts={"new": summary.new, "updated": summary.updated, "skipped": summary.skipped},
                ok=summary.ok,
                error=summary.error,
                cursor=start.cursor,
            )

    async def _crawl_listing(self, start: _store.RunStart, listing: Listing) -> None:
        pages = listing.pages()
        try:
            while True:
                try:
                    page = await anext(pages, None)
                except InputRejected as exc:  # a whole response refused: recorded like a bad item
                    await asyncio.to_thread(_store_page, start, Page(exc.url, rejects=[Reject.of(exc)]))
                    self.fail(f"{exc.url or listing.label}: {exc}")
                    return
                except CrawlError as exc:
                    self.fail(str(exc))
                    return
                if page is None:
                    return
                stored = await self._store(start, page)
                if page.error is not None:
                    self.fail(str(page.error))
                    return
                if listing.stop_when_known and not stored.new_ids and not page.rejects:
                    return
        finally:
            await pages.aclose()

    async def _store(self, start: _store.RunStart, page: Page) -> UpsertResult:
        stored = (
            await asyncio.to_thread(_store_page, start, page)
            if page.posts or page.rejects
            else UpsertResult()
        )
        if page.commit is not None:
            page.commit()
        self.new += len(stored.new_ids)
        self.updated += len(stored.edited_ids)
        self.unchanged += stored.unchanged + page.known
        self.skipped += len(page.rejects)
        self.report()
        return stored
