"""`lawscreen demo`, `screen`, `serve` and `retrain`: the flows, run from the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lawscreen import migrate
from lawscreen.cli._output import console, err_console
from lawscreen.cli.crawl import crawl_sources_file
from lawscreen.cli.data import import_with_progress, print_import_report, status_command
from lawscreen.database import transaction
from lawscreen.errors import LawscreenError
from lawscreen.importer import DEFAULT_SOURCE
from lawscreen.paths import SAMPLE_ARCHIVE, SAMPLE_POSTS, SAMPLE_SOURCES
from lawscreen.repo.registry import production_model
from lawscreen.settings import get_settings

BOT_STOP_TIMEOUT_S = 15.0


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
    app.command("screen")(screen_command)
    app.command("serve")(serve_command)
    app.command("retrain")(retrain_command)


def demo_command() -> None:
    """The main job on the bundled sample data: labels, a model if none, one hourly screening run."""
    from flows.screening import hourly_screening
    from lawscreen.notify import send_digests

    migrate.ensure_schema()
    print_import_report(SAMPLE_POSTS, import_with_progress(SAMPLE_POSTS, None, DEFAULT_SOURCE))
    with transaction() as session:
        has_model = production_model(session) is not None
    if not has_model:
        console.print(
            "[bold]No production model yet:[/] crawling the forum archive (data/sample/archive.jsonl, "
            "unlabeled posts to pre-train and self-train on), then bootstrapping a base and training "
            "on the sample labels."
        )
        crawl_sources_file(SAMPLE_ARCHIVE)
        _print_retrain(_retrain_locally())
    console.print("[bold]Screening the sample forum[/] (data/sample/heldout.jsonl), as the hourly flow does.")
    _print_screening(hourly_screening(sources_file=str(SAMPLE_SOURCES)))
    console.print("[bold]The digest[/] the lawyer would get now:")
    send_digests(datetime.now(UTC), chat_id=_console_chat())
    status_command(as_json=False)


def screen_command(
    sources: Annotated[
        Path | None, typer.Option(help="Sources file (default LAWSCREEN_SOURCES).", dir_okay=False)
    ] = None,
) -> None:
    """Run the hourly screening flow once: crawl the due sources, classify, deliver alerts."""
    from flows.screening import hourly_screening

    _print_screening(hourly_screening(sources_file=str(sources) if sources else None))


def serve_command() -> None:
    """Run every deployment of prefect.yaml on its schedule, and the Telegram bot if a token is set."""
    from prefect import serve

    from lawscreen.serve import load_deployments, prefect_api

    settings = get_settings()
    migrate.ensure_schema()
    with prefect_api(settings.data_dir) as api:
        console.print(f"Prefect API: {api}")
        bot = _start_bot() if settings.telegram_token is not None else None
        try:
            serve(*load_deployments())
        finally:
            if bot is not None:
                bot.terminate()
                bot.wait(BOT_STOP_TIMEOUT_S)


def retrain_command(
    local: Annotated[
        bool, typer.Option(help="Run the retrain flow in this process instead of on the gpu work pool.")
    ] = False,
) -> None:
    """Start the retrain flow for the current label snapshot (once per snapshot)."""
    if local:
        _print_retrain(_retrain_locally())
        return
    from lawscreen.retraining import start_retrain

    started = start_retrain(f"cli:{os.environ.get('USER', 'unknown')}")
    if started.flow_run_id is None:
        raise LawscreenError(
            f"retrain request #{started.request_id} is recorded, but the flow could not be started "
            f"({started.error}); the next retrain check starts it, or run `lawscreen retrain --local`"
        )
    verb = "started" if started.created else "was already requested; its run is"
    console.print(
        f"retrain for label snapshot {started.label_revision} {verb} flow run {started.flow_run_id}"
    )


def _retrain_locally() -> Any:
    try:
        from flows.retraining import retrain
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise LawscreenError(f"training needs the train extra (pip install -e '.[train]'): {exc}") from None
    return retrain()


def _start_bot() -> subprocess.Popen[bytes]:
    # Its own process: long polling and the JobQueue have their own event loop and lifetime.
    return subprocess.Popen([sys.executable, "-m", "lawscreen", "bot"])


def _console_chat() -> int | None:
    from lawscreen.notify import served_chat_ids

    served = served_chat_ids(get_settings())
    return served[0] if len(served) == 1 else None


def _print_retrain(outcome: Any) -> None:
    model = outcome.metrics.get("model", {}).get("evaluation", {})
    baseline = outcome.metrics.get("baseline", {}).get("evaluation", {})
    verdict = "[green]promoted[/]" if outcome.promoted else "[yellow]kept as a candidate[/]"
    console.print(f"model {outcome.version} {verdict}: {outcome.reason}")
    if model and baseline:
        console.print(
            f"  evaluation F1 {model.get('f1', 0):.3f} (TF-IDF baseline {baseline.get('f1', 0):.3f}), "
            f"precision {model.get('precision', 0):.3f}, recall {model.get('recall', 0):.3f}"
        )


def _print_screening(summary: Any) -> None:
    if summary.skipped:
        err_console.print("another screening run is in progress: nothing done")
        return
    table = Table("source", "new", "updated", "skipped", "errors", title="crawl")
    for source in summary.sources:
        table.add_row(
            source["source"],
            str(source["new"]),
            str(source["updated"]),
            str(source["skipped"]),
            str(source["errors"]),
        )
    console.print(table)
    classified = summary.classified
    if classified:
        console.print(
            f"classified with {classified['model_version']}: {classified['scored']} scored, "
            f"{classified['hits']} hits, {classified['notifications']} notifications queued"
        )
    delivered = summary.delivered or {}
    console.print(
        f"delivered ({delivered.get('transport')}): {delivered.get('sent', 0)} alerts sent; hits "
        f"scoring below LAWSCREEN_ALERT_THRESHOLD ({get_settings().alert_threshold:g}) wait for the digest"
    )
