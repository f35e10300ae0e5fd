"""The hourly screening flow: crawl the due sources, score the new posts, deliver the alerts.

Each source is crawled by a task of its own, so one slow or failing forum neither delays nor
stops the others, and Prefect retries it alone. A source that answers badly is not an exception:
the crawler records it as the source's health and the run goes on. A task raises only when
something is broken (the database, a bug), and then it is retried.

Overlapping runs: the deployment allows one run at a time (CANCEL_NEW), and the flow takes a
PostgreSQL advisory lock, so a run started outside Prefect's control finds the first one and
exits without doing anything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from lawscreen import crawl, migrate
from lawscreen.classify import ClassifyReport, classify_pending
from lawscreen.database import transaction
from lawscreen.errors import ModelNotFoundError
from lawscreen.locks import exclusive
from lawscreen.notify import RelayReport, deliver_pending, served_chat_ids, sync_chats
from lawscreen.settings import get_settings

LOCK_NAME = "hourly-screening"
ARTIFACT_KEY = "hourly-screening"


@dataclass
class ScreeningSummary:
    skipped: bool = False  # another run held the lock
    sources: list[dict[str, Any]] = field(default_factory=list)
    failed_sources: list[str] = field(default_factory=list)  # tasks that failed after their retries
    classified: dict[str, Any] | None = None  # None: no production model yet
    delivered: dict[str, Any] | None = None


@task(retries=2, retry_delay_seconds=10)
def prepare(sources_file: str | None) -> list[str]:
    """Migrate if needed, sync the sources file and the chat allow-list, return the sources due now.

    The chats are synced before classification: its outbox rows go to the chats served then.
    """
    settings = get_settings()
    migrate.ensure_schema()
    configs = crawl.load_sources(Path(sources_file) if sources_file else settings.sources)
    with transaction() as session:
        crawl.sync_sources(session, configs)
        sync_chats(session, served_chat_ids(settings))
        return crawl.due_sources(session, datetime.now(UTC))


@task(retries=2, retry_delay_seconds=[10, 60], task_run_name="crawl-{name}")
def crawl_one(name: str) -> crawl.CrawlSummary:
    return crawl.crawl_source(name)


@task(retries=2, retry_delay_seconds=10)
def classify_new_posts() -> ClassifyReport | None:
    try:
        return classify_pending()
    except ModelNotFoundError:
        # Before the first model is trained the posts simply wait; the first scoring picks them up.
        get_run_logger().warning("no production model yet: new posts are stored but not scored")
        return None


@task(retries=2, retry_delay_seconds=10)
def deliver_alerts() -> RelayReport:
    # The relay never resends a row whose outcome it could not record, so a retry is safe.
    return deliver_pending()


@flow(name="hourly-screening")
def hourly_screening(sources_file: str | None = None) -> ScreeningSummary:
    """Crawl, classify, deliver; publish the counts as a markdown artifact."""
    logger = get_run_logger()
    with exclusive(LOCK_NAME) as acquired:
        if not acquired:
            logger.warning("another hourly screening is running: this run exits without doing anything")
            return ScreeningSummary(skipped=True)

        summary = ScreeningSummary()
        names = prepare(sources_file)
        for name, future in zip(names, crawl_one.map(names), strict=True):
            future.wait()
            if future.state.is_completed():
                summary.sources.append(asdict(future.result()))
            else:
                summary.failed_sources.append(name)
        classified = classify_new_posts()
        summary.classified = classified.as_dict() if classified else None
        summary.delivered = asdict(deliver_alerts())
        create_markdown_artifact(key=ARTIFACT_KEY, markdown=render_summary(summary))

    if summary.failed_sources:
        # Scoring and delivery still ran; the run is marked failed so the broken source is seen.
        raise RuntimeError(f"crawling failed after retries for: {', '.join(summary.failed_sources)}")
    return summary


def render_summary(summary: ScreeningSummary) -> str:
    lines = [
        "# Hourly screening",
        "",
        "| source | new | updated | skipped | errors |",
        "|---|---|---|---|---|",
    ]
    for source in summary.sources:
        lines.append(
            f"| {source['source']} | {source['new']} | {source['updated']} | {source['skipped']} "
            f"| {source['errors']} |"
        )
    lines.extend(f"| {name} | task failed | | | |" for name in summary.failed_sources)
    lines.append("")
    classified = summary.classified
    if classified is None:
        lines.append("Classification: no production model yet.")
    else:
        lines.append(
            f"Classification with `{classified['model_version']}`: {classified['scored']} scored, "
            f"{classified['skipped_empty']} empty, {classified['hits']} hits, "
            f"{classified['notifications']} notifications queued."
        )
    delivered = summary.delivered or {}
    lines.append(
        f"Delivery ({delivered.get('transport')}): {delivered.get('sent', 0)} sent, "
        f"{delivered.get('rescheduled', 0)} rescheduled, {delivered.get('uncertain', 0)} uncertain, "
        f"{delivered.get('failed', 0)} failed."
    )
    return "\n".join(lines)
