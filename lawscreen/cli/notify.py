"""`lawscreen notify`, `lawscreen digest`, `lawscreen bot` and `lawscreen uncertain`.

python-telegram-bot takes a good part of a second to import, so it is imported by these commands
only, not by every ``lawscreen`` invocation.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from lawscreen import migrate
from lawscreen.cli._output import console
from lawscreen.errors import TelegramTokenError
from lawscreen.settings import get_settings

if TYPE_CHECKING:
    from lawscreen.notify import RelayReport


def register(app: typer.Typer) -> None:
    app.command("notify")(notify_command)
    app.command("digest")(digest_command)
    app.command("bot")(bot_command)
    app.command("uncertain")(uncertain_command)


def notify_command() -> None:
    """Send due alerts and digests once; printed to the console when no bot token is set."""
    from lawscreen.notify import deliver_pending

    migrate.ensure_schema()
    _print_relay(deliver_pending())


def digest_command(
    chat: Annotated[int | None, typer.Option(help="Send this chat's digest now, due or not.")] = None,
) -> None:
    """Send the digests that are due (each chat's digest times), or one chat's now."""
    from lawscreen.notify import send_digests

    migrate.ensure_schema()
    report = send_digests(datetime.now(UTC), chat)
    if not report.digests:
        console.print("no digest due")
    for digest in report.digests:
        console.print(
            f"chat {digest.chat_id} ({digest.key}): "
            + (
                "nothing new"
                if digest.empty
                else f"{digest.items} posts, {digest.more} more not shown, {digest.label_requests} to label"
            )
        )
    if report.relay is not None:
        _print_relay(report.relay)


def bot_command() -> None:
    """Run the Telegram bot: commands, feedback buttons, the relay and digests on schedule."""
    from telegram.error import InvalidToken

    from lawscreen.notify.bot import run_bot

    settings = get_settings()
    if settings.telegram_token is None:
        raise TelegramTokenError("LAWSCREEN_TELEGRAM_TOKEN is not set: the bot needs one")
    migrate.ensure_schema()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request URL at INFO, and Bot API URLs contain the token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        run_bot(settings)
    except InvalidToken:
        # PTB's message quotes the token: replace it.
        raise TelegramTokenError("the Bot API refused LAWSCREEN_TELEGRAM_TOKEN") from None


def uncertain_command(
    arrived: Annotated[
        int | None, typer.Option(help="This message did reach the chat: mark it sent.", metavar="ID")
    ] = None,
    resend: Annotated[
        int | None,
        typer.Option(help="This message never arrived: send it on the next relay run.", metavar="ID"),
    ] = None,
) -> None:
    """List the messages that may or may not have arrived, or settle one (--arrived or --resend)."""
    from rich.table import Table

    from lawscreen.database import transaction
    from lawscreen.repo import notifications

    migrate.ensure_schema()
    if arrived is not None and resend is not None:
        raise typer.BadParameter("give --arrived or --resend, not both")
    if arrived is not None or resend is not None:
        target = arrived if arrived is not None else resend
        assert target is not None
        with transaction() as session:
            row = notifications.settle_uncertain(session, target, arrived=arrived is not None)
            console.print(f"notification {row.id} ({row.kind}, chat {row.chat_id}) is now {row.status}")
        return
    with transaction() as session:
        rows = notifications.uncertain(session)
        table = Table("id", "chat", "kind", "post", "created", "last error", title="uncertain messages")
        for row in rows:
            table.add_row(
                str(row.id),
                str(row.chat_id),
                row.kind,
                str(row.post_id or row.digest_key),
                f"{row.created_at:%Y-%m-%d %H:%M}" if row.created_at else "",
                row.last_error or "",
            )
    if not rows:
        console.print("no uncertain messages")
        return
    console.print(table)
    console.print("Look in the chat, then: lawscreen uncertain --arrived ID, or --resend ID")


def _print_relay(report: RelayReport) -> None:
    console.print(
        f"{report.transport}: {report.sent} sent, {report.rescheduled} rescheduled, "
        f"{report.uncertain} uncertain, {report.failed} failed, {report.cancelled} cancelled"
        + (f", {report.expired} found mid-send (now uncertain)" if report.expired else "")
    )
    for chat_id in report.disabled_chats:
        console.print(f"chat {chat_id} disabled: the bot cannot reach it", style="yellow")
