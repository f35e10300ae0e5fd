"""`lawscreen notify`, `lawscreen digest` and `lawscreen bot`.

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


def _print_relay(report: RelayReport) -> None:
    console.print(
        f"{report.transport}: {report.sent} sent, {report.rescheduled} rescheduled, "
        f"{report.uncertain} uncertain, {report.failed} failed, {report.cancelled} cancelled"
        + (f", {report.expired} found mid-send (now uncertain)" if report.expired else "")
    )
    for chat_id in report.disabled_chats:
        console.print(f"chat {chat_id} disabled: the bot cannot reach it", style="yellow")
