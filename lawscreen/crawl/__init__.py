"""Crawling forums into PostgreSQL: polite, incremental, and never stopped by one bad source or
one bad post.

The interface the CLI and the Prefect flows use::

    configs = load_sources(path)            # the TOML file, validated (ConfigError says where)
    with transaction() as session:
        sync_sources(session, configs)      # mirrored into the sources table
        names = due_sources(session, now)   # whose interval has passed
    summaries = await crawl(names)          # concurrently, one HTTP client for the run
    summary = crawl_source(name)            # one source, synchronously (a Prefect task)

``crawl`` and ``crawl_source`` read the sources' configuration from the database, so they need
no file: sync first. Each run writes a ``crawl_runs`` row, a ``crawl_rejects`` row per skipped
response or item, and the source's health (``last_run_at``, ``last_success_at``,
``consecutive_failures``, ``last_error``), which ``lawscreen status`` shows. See
``docs/crawling.md`` for the sources file and the crawler's behaviour.

Inside: ``_config`` (the file), ``_store`` (the database side), ``_runner`` (runs and pages),
``_http``, ``_limiter`` and ``_robots`` (the network side), one module per kind of source
(``_v2ex``, ``_discourse``, ``_feed``, ``_jsonl``), ``_items`` (pages, rejects, building posts) and
``_cursor`` (the incremental state in ``sources.cursor``).
"""

from lawscreen.crawl._config import (
    DiscourseSource,
    FeedSource,
    JsonlSource,
    SourceConfig,
    V2exSource,
    load_sources,
)
from lawscreen.crawl._items import RejectReason
from lawscreen.crawl._runner import CrawlSummary, ProgressCallback, crawl, crawl_source
from lawscreen.crawl._store import due_sources, sync_sources

__all__ = [
    "CrawlSummary",
    "DiscourseSource",
    "FeedSource",
    "JsonlSource",
    "ProgressCallback",
    "RejectReason",
    "SourceConfig",
    "V2exSource",
    "crawl",
    "crawl_source",
    "due_sources",
    "load_sources",
    "sync_sources",
]
