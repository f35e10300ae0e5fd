"""Sending a rendered message, and what each failure means for its outbox row.

The Bot API has no idempotency key, so a request that may have reached Telegram is never sent
again automatically. The only errors retried are those proving the request never left (the
connection was refused or timed out, or no pooled connection was free) and flood control (a 429
is answered without delivering). Anything ambiguous (a read or write timeout, a connection closed
before the response, a 5xx) makes the row ``uncertain``.

python-telegram-bot's ``HTTPXRequest`` raises ``TimedOut`` for every httpx timeout (connect and
pool timeouts included) and ``NetworkError`` for other httpx errors, ``ConnectError`` included,
keeping httpx's error as ``__cause__``: that cause is what tells "never sent" from "maybe sent".
``BadRequest`` and ``TimedOut`` subclass ``NetworkError``, so they are matched first.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any, Protocol

import httpx
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.request import HTTPXRequest

from lawscreen.notify import ratelimit
from lawscreen.notify.console import ConsoleSender
from lawscreen.notify.render import Part
from lawscreen.settings import Settings

# python-telegram-bot 22 is moving time periods from int seconds to timedelta, and warns
# (PTBDeprecationWarning) on every RetryAfter it builds unless a process opts in to timedelta
# through this variable, which is the opt-in it documents. An explicit setting is respected.
os.environ.setdefault("PTB_TIMEDELTA", "true")

# httpx errors raised before a request was written: the message certainly was not sent.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Connections per Bot: more than the chats a relay batch sends to at once (relay.CLAIM_BATCH),
# so a send never waits for a free connection.
CONNECTION_POOL = 16
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)  # a preview of one link would dwarf the message


class Sender(Protocol):
    name: str

    async def send(self, chat_id: int, parts: Sequence[Part]) -> int | None:
        """Deliver the parts in order; the id of the last message, if the transport has ids."""
        ...


class Action(StrEnum):
    SENT = "sent"
    RETRY = "retry"  # certainly not delivered: try again later
    UNCERTAIN = "uncertain"  # may have been delivered: never resend automatically
    FAILED = "failed"  # Telegram refused the message itself
    DISABLE_CHAT = "disable_chat"  # the chat cannot be reached any more (blocked, migrated)
    UNAUTHORIZED = "unauthorized"  # the token was refused: nothing sent, nothing will be until fixed


@dataclass(frozen=True, slots=True)
class Outcome:
    action: Action
    error: str | None = None
    delay: float | None = None  # Telegram's retry_after; None with RETRY means back off
    message_id: int | None = None


class PartlyDeliveredError(Exception):
    """A later part of a message failed after earlier parts reached the chat."""

    def __init__(self, delivered: int, total: int) -> None:
        super().__init__(f"{delivered} of {total} parts delivered")


def classify(exc: Exception) -> Outcome:
    """What a failed send means for its row (see the module docstring)."""
    reason = describe(exc)
    if isinstance(exc, PartlyDeliveredError):
        return Outcome(Action.UNCERTAIN, reason)
    if isinstance(exc, RetryAfter):
        return Outcome(Action.RETRY, reason, delay=retry_after_seconds(exc))
    if isinstance(exc, InvalidToken):
        return Outcome(Action.UNAUTHORIZED, reason)
    if isinstance(exc, Forbidden | ChatMigrated):
        return Outcome(Action.DISABLE_CHAT, reason)
    if isinstance(exc, BadRequest):
        return Outcome(Action.FAILED, reason)
    if isinstance(exc, NetworkError) and isinstance(exc.__cause__, NOT_SENT):
        return Outcome(Action.RETRY, reason)
    return Outcome(Action.UNCERTAIN, reason)


def describe(exc: BaseException) -> str:
    if isinstance(exc, ChatMigrated):
        return f"ChatMigrated: the group is now chat {exc.new_chat_id}; update LAWSCREEN_TELEGRAM_CHAT_IDS"
    text = f"{type(exc).__name__}: {exc}"
    if exc.__cause__ is not None:
        text += f" ({describe(exc.__cause__)})"
    return text


def retry_after_seconds(exc: RetryAfter) -> float:
    value = exc.retry_after  # a timedelta with PTB_TIMEDELTA (see above), an int without
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class TelegramSender:
    """Sends through a ``Bot``, within the process's rate limits."""

    name = "telegram"

    def __init__(self, bot: Bot, limiter: ratelimit.RateLimiter | None = None) -> None:
        self.bot = bot
        self.limiter = limiter or ratelimit.LIMITER

    async def send(self, chat_id: int, parts: Sequence[Part]) -> int | None:
        message_id = None
        for delivered, part in enumerate(parts):
            await self.limiter.acquire(chat_id)
            try:
                message = await self.bot.send_message(
                    chat_id,
                    part.text,
                    parse_mode=ParseMode.HTML,
                    reply_markup=keyboard(part),
                    link_preview_options=NO_PREVIEW,
                )
            except TelegramError as exc:
                if delivered:
                    raise PartlyDeliveredError(delivered, len(parts)) from exc
                if isinstance(exc, RetryAfter):  # other relays in the process hold off this chat too
                    self.limiter.hold(chat_id, retry_after_seconds(exc))
                raise
            message_id = message.message_id
        return message_id

    async def edit(self, chat_id: int, message_id: int, part: Part) -> None:
        """Replace a sent message's text and buttons (to show a verdict)."""
        await self.limiter.acquire(chat_id)
        await self.bot.edit_message_text(
            part.text,
            chat_id=chat_id,
            message_id=message_id,
            parse_mode=ParseMode.HTML,
            reply_markup=keyboard(part),
            link_preview_options=NO_PREVIEW,
        )


def keyboard(part: Part) -> InlineKeyboardMarkup | None:
    if not part.keyboard:
        return None
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(button.text, callback_data=button.data) for button in row]
            for row in part.keyboard
        ]
    )


def http_request(settings: Settings, pool: int = CONNECTION_POOL) -> HTTPXRequest:
    timeout = settings.notify_send_timeout_s
    return HTTPXRequest(
        connection_pool_size=pool,
        connect_timeout=timeout,
        read_timeout=timeout,
        write_timeout=timeout,
        pool_timeout=timeout,
    )


def bot_kwargs(settings: Settings) -> dict[str, Any]:
    """Token and server for a ``Bot`` or an ``ApplicationBuilder``; the token must be set."""
    if settings.telegram_token is None:
        raise ValueError("LAWSCREEN_TELEGRAM_TOKEN is not set")
    kwargs: dict[str, Any] = {"token": settings.telegram_token.get_secret_value()}
    if settings.telegram_base_url:
        kwargs["base_url"] = settings.telegram_base_url
    return kwargs


@asynccontextmanager
async def open_sender(settings: Settings) -> AsyncIterator[Sender]:
    """A plain ``Bot`` when a token is set (no bot process needed), else the console."""
    if settings.telegram_token is None:
        yield ConsoleSender()
        return
    # Both request objects are ours to close: Bot.shutdown only closes what Bot.initialize opened,
    # and initialize would call getMe, a request the relay does not need.
    send, updates = http_request(settings), http_request(settings, pool=1)
    await send.initialize()
    await updates.initialize()
    try:
        yield TelegramSender(Bot(**bot_kwargs(settings), request=send, get_updates_request=updates))
    finally:
        await send.shutdown()
        await updates.shutdown()
