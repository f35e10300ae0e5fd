"""The `lawscreen` command. Each group of commands lives in its own module and registers here."""

from __future__ import annotations

import os

import typer
from pydantic import ValidationError

from lawscreen.cli import crawl, data, db, inference, model, notify, orchestrate, train
from lawscreen.cli._output import err_console
from lawscreen.errors import LawscreenError
from lawscreen.settings import get_settings

app = typer.Typer(
    name="lawscreen",
    help="Screen forum posts for legal-consultation questions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.add_typer(model.app, name="model")
data.register(app)
crawl.register(app)
train.register(app)
inference.register(app)
notify.register(app)
orchestrate.register(app)


@app.callback()
def _load_settings() -> None:
    # Fail fast: an invalid LAWSCREEN_* variable stops every command before it touches anything.
    get_settings()


def main() -> None:
    # The Prefect server a flow run starts (demo, screen) would try to send usage analytics; workers
    # are often offline, and nothing of ours should phone home unasked.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    try:
        app()
    except ValidationError as exc:
        err_console.print("[bold red]Invalid configuration[/]")
        for error in exc.errors():
            name = "LAWSCREEN_" + "_".join(str(part) for part in error["loc"]).upper()
            err_console.print(f"  {name}: {error['msg']}")
        raise SystemExit(2) from None
    except LawscreenError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        raise SystemExit(1) from None
