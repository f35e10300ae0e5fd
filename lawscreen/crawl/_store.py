"""The crawler's side of the database: the sources file mirrored into ``sources``, and each run's
``crawl_runs`` row, rejects, posts and health.

Like every repository function these take a ``session`` and never commit; the runner decides
what commits together (a page's posts with that page's rejects).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Session, col, select

from lawscreen.crawl._config import CRAWLED_KINDS, SourceConfig, parse_stored
from lawscreen.crawl._cursor import Cursor
from lawscreen.crawl._items import MAX_EXTERNAL_ID_CHARS, Reject
from lawscreen.errors import ConfigError
from lawscreen.models import CrawlReject, CrawlRun, Source
from lawscreen.repo.posts import NewPost, UpsertResult, upsert_posts

# Enough to explain a reject or an error; a whole HTML error page is not.
MAX_DETAIL_CHARS = 2000


def _stored(config: SourceConfig) -> dict[str, Any]:
    return config.model_dump(mode="json")


def sync_sources(session: Session, configs: Sequence[SourceConfig]) -> None:
    """Mirror the sources file into ``sources``: add new ones, update changed ones, and disable
    (never delete: their posts stay) crawled sources no longer in the file.

    A changed configuration resets the source's cursor, so the next run starts afresh. A name may
    not change kind: its posts' external ids belong to the old kind.
    """
    wanted = {config.name: config for config in configs}
    if configs:
        rows = [{"name": c.name, "kind": c.kind, "config": _stored(c), "enabled": c.enabled} for c in configs]
        session.execute(insert(Source).values(rows).on_conflict_do_nothing(index_elements=["name"]))
    for source in session.exec(select(Source).order_by(col(Source.id)).with_for_update()).all():
        config = wanted.get(source.name)
        if config is None:
            if source.kind in CRAWLED_KINDS:
                source.enabled = False
            continue
        if source.kind != config.kind:
            raise ConfigError(
                f"source '{source.name}' is already stored as kind '{source.kind}', not '{config.kind}'; "
                "give the new source another name"
            )
        stored = _stored(config)
        if source.config != stored:
            source.config = stored
            source.cursor = {}
        source.enabled = config.enabled


def due_sources(session: Session, now: datetime) -> list[str]:
    """Enabled crawled sources whose ``interval_minutes`` have passed since their last run."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    sources = session.exec(
        select(Source)
        .where(col(Source.enabled), col(Source.kind).in_(CRAWLED_KINDS))
        .order_by(col(Source.name))
    ).all()
    due = []
    for source in sources:
        try:
            interval = timedelta(minutes=parse_stored(source.config).interval_minutes)
        except ValidationError:
            interval = timedelta(0)  # its crawl will fail, loudly and in its health
        if source.last_run_at is None or source.last_run_at + interval <= now:
            due.append(source.name)
    return due


def enabled_sources(session: Session) -> list[str]:
    return list(
        session.exec(
            select(Source.name)
            .where(col(Source.enabled), col(Source.kind).in_(CRAWLED_KINDS))
            .order_by(col(Source.name))
        ).all()
    )


@dataclass(frozen=True)
class RunStart:
    source_id: int
    run_id: int
    config: SourceConfig
    stored_config: dict[str, Any]
    cursor: Cursor


def start_run(session: Session, name: str) -> RunStart:
    """Open a ``crawl_runs`` row and stamp ``last_run_at`` (so the source is not due while it runs)."""
    source = session.exec(select(Source).where(Source.name == name)).one_or_none()
    if source is None or source.kind not in CRAWLED_KINDS or source.id is None:
        raise ConfigError(f"no crawled source named '{name}'")
    try:
        config = parse_stored(source.config)
    except ValidationError as exc:
        raise ConfigError(
            f"source '{name}': stored configuration is invalid, sync the sources file ({exc})"
        ) from None
    session.execute(update(Source).where(col(Source.id) == source.id).values(last_run_at=func.now()))
    run = CrawlRun(source_id=source.id)
    session.add(run)
    session.flush()
    assert run.id is not None
    return RunStart(source.id, run.id, config, source.config, Cursor.load(source.cursor))


def store_page(session: Session, run: RunStart, posts: list[NewPost], rejects: list[Reject]) -> UpsertResult:
    result = upsert_posts(session, run.source_id, posts)
    if rejects:
        session.execute(
            insert(CrawlReject).values(
                [
                    {
                        "source_id": run.source_id,
                        "crawl_run_id": run.run_id,
                        "url": reject.url,
                        "external_id": reject.external_id[:MAX_EXTERNAL_ID_CHARS]
                        if reject.external_id
                        else None,
                        "reason": reject.reason,
                        "detail": reject.detail[:MAX_DETAIL_CHARS],
                    }
                    for reject in rejects
                ]
            )
        )
    return result


def finish_run(
    session: Session,
    run: RunStart,
    *,
    counts: dict[str, int],
    ok: bool,
    error: str | None,
    cursor: Cursor,
) -> None:
    """Close the run's row and record the source's health; ``counts`` holds new, updated, skipped."""
    error = error[:MAX_DETAIL_CHARS] if error else None
    session.execute(
        update(CrawlRun)
        .where(col(CrawlRun.id) == run.run_id)
        .values(finished_at=func.now(), ok=ok, error=error, **counts)
    )
    # Locked: two runs of one source finishing together must both count in consecutive_failures.
    source = session.get_one(Source, run.source_id, with_for_update=True)
    values: dict[str, Any] = (
        {"consecutive_failures": 0, "last_error": None, "last_success_at": func.now()}
        if ok
        else {"consecutive_failures": source.consecutive_failures + 1, "last_error": error}
    )
    if source.config == run.stored_config:  # else the file changed meanwhile and reset the cursor
        values["cursor"] = cursor.dump()
    session.execute(update(Source).where(col(Source.id) == run.source_id).values(**values))
