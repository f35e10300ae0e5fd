"""`lawscreen import` and `lawscreen status`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from lawscreen import migrate, status
from lawscreen.cli._output import console, err_console
from lawscreen.database import transaction
from lawscreen.importer import DEFAULT_SOURCE, ImportReport, import_file

# Enough to show where a file goes wrong without flooding the terminal.
ERRORS_SHOWN = 20


def register(app: typer.Typer) -> None:
    app.command("import")(import_command)
    app.command("status")(status_command)


def import_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSON lines to import.")],
    label: Annotated[
        int | None, typer.Option(min=0, max=1, help="Label for lines that carry none: 1 legal, 0 not.")
    ] = None,
    source: Annotated[
        str, typer.Option(help="Name of the import source the posts belong to.")
    ] = DEFAULT_SOURCE,
) -> None:
    """Import labeled posts from FILE (one JSON object per line)."""
    migrate.ensure_schema()
    report = import_with_progress(file, None if label is None else bool(label), source)
    print_import_report(file, report)


def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Posts, labels, the production model and the health of each source."""
    migrate.ensure_schema()
    with transaction() as session:
        report = status.collect(session)
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False))
    else:
        _print_status(report)


def import_with_progress(file: Path, label: bool | None, source: str) -> ImportReport:
    with Progress(
        TextColumn("importing {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task(file.name, total=file.stat().st_size)
        return import_file(
            file,
            default_label=label,
            source_name=source,
            on_progress=lambda done: progress.update(task, completed=done),
        )


def print_import_report(file: Path, report: ImportReport) -> None:
    console.print(
        f"{file.name}: {report.lines} lines, {report.imported} imported "
        f"({report.new_posts} new posts, {report.labels_changed} labels new or changed), "
        f"{len(report.errors)} rejected"
    )
    for number, reason in report.errors[:ERRORS_SHOWN]:
        err_console.print(f"  line {number}: {reason}", style="yellow", markup=False)
    if len(report.errors) > ERRORS_SHOWN:
        err_console.print(f"  ... and {len(report.errors) - ERRORS_SHOWN} more", style="yellow")


def _print_status(report: dict[str, Any]) -> None:
    db = report["database"]
    console.print(f"database: {db['url']}" + (" (embedded)" if db["embedded"] else ""))
    labels = report["labels"]
    console.print(
        f"posts: {report['posts']}  unscored: {report['unscored_posts']}  "
        f"labels: {labels['legal']} legal / {labels['not_legal']} not legal, "
        f"{labels['since_last_training']} since last training"
    )
    model = report["production_model"]
    console.print(
        f"production model: {model['version']} (threshold {model['threshold']:.3f})"
        if model
        else "production model: none"
    )
    if not report["sources"]:
        return
    table = Table("source", "kind", "last success", "failures", "last error", title="sources")
    for source in report["sources"]:
        table.add_row(
            source["name"],
            source["kind"],
            source["last_success_at"] or "never",
            str(source["consecutive_failures"]),
            source["last_error"] or "",
        )
    console.print(table)
