"""`lawscreen crawl`: sync the sources file, crawl, and show a summary per source."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.logging import RichHandler
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from lawscreen import migrate
from lawscreen.cli._output import console, err_console
from lawscreen.database import transaction
from lawscreen.settings import get_settings

if TYPE_CHECKING:
    from lawscreen.crawl import CrawlSummary


def register(app: typer.Typer) -> None:
    app.command("crawl")(crawl_command)


def crawl_command(
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source", "-s", help="Crawl only this source (repeatable). Default: every enabled one."
        ),
    ] = None,
) -> None:
    """Crawl the forums in the sources file (LAWSCREEN_SOURCES) into the database."""
    path = get_settings().sources
    summaries = crawl_sources_file(path, source)
    if not summaries:
        err_console.print(f"no enabled sources in {path}")
    if any(not summary.ok for summary in summaries):
        raise typer.Exit(1)


def crawl_sources_file(path: Path, names: list[str] | None = None) -> list[CrawlSummary]:
    """Sync the sources of ``path`` into the database, crawl ``names`` (default: every enabled one)
    with progress bars, and print a summary per source."""
    # Imported here: the crawler's HTTP and parsing stack would slow every other command's start.
    from lawscreen.crawl import load_sources, sync_sources

    if not logging.getLogger().handlers:
        # Warnings (a failing source, a feed parsed leniently) print above the progress bars.
        logging.basicConfig(
            level=logging.WARNING,
            format="%(message)s",
            handlers=[RichHandler(console=err_console, show_path=False)],
        )
    migrate.ensure_schema()
    configs = load_sources(path)
    with transaction() as session:
        sync_sources(session, configs)
    chosen = names or [config.name for config in configs if config.enabled]
    summaries = _crawl_with_progress(chosen, explicit=bool(names))
    _print_summaries(summaries)
    return summaries


def _crawl_with_progress(names: list[str], *, explicit: bool) -> list[CrawlSummary]:
    from lawscreen.crawl import crawl

    with Progress(
        SpinnerColumn(finished_text="[green]✓"),
        TextColumn("{task.description}"),
        TextColumn("{task.fields[counts]}", style="dim"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        tasks: dict[str, TaskID] = {name: progress.add_task(name, total=None, counts="") for name in names}

        def update(summary: CrawlSummary) -> None:
            task = tasks.get(summary.source)
            if task is None:
                task = tasks[summary.source] = progress.add_task(summary.source, total=None, counts="")
            progress.update(task, counts=_counts(summary))

        summaries = asyncio.run(crawl(names if explicit else None, on_progress=update))
        for summary in summaries:
            progress.update(tasks[summary.source], total=1, completed=1)
        return summaries


def _counts(summary: CrawlSummary) -> str:
    return (
        f"{summary.new} new, {summary.updated} updated, {summary.unchanged} unchanged, "
        f"{summary.skipped} skipped, {summary.errors} errors"
    )


def _print_summaries(summaries: list[CrawlSummary]) -> None:
    if not summaries:
        return
    table = Table(title="crawl")
    table.add_column("source", no_wrap=True)
    for column in ("new", "updated", "unchanged", "skipped", "errors", "time"):
        table.add_column(column, justify="right")
    table.add_column("status", overflow="fold")
    for summary in summaries:
        table.add_row(
            summary.source,
            str(summary.new),
            str(summary.updated),
            str(summary.unchanged),
            str(summary.skipped),
            str(summary.errors),
            f"{summary.duration:.1f}s",
            "[green]ok[/]" if summary.ok else f"[red]failed:[/] {summary.error}",
        )
    console.print(table)
