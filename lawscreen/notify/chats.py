"""The chats served: the allow-list made rows, and what a lawyer changes about their own chat.

``LAWSCREEN_TELEGRAM_CHAT_IDS`` is the only source of truth for who is served; ``sync_chats``
makes the ``chats`` table match it. It runs when a relay or a digest run starts and when the bot
starts, so a changed allow-list takes effect at the next run without a migration or a command.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Session, col

from lawscreen.models import Chat, Notification, NotificationKind, NotificationStatus
from lawscreen.repo.notifications import cancel_pending
from lawscreen.settings import Settings, get_settings

# The console notifier's pseudo-chat: Telegram never gives out chat id 0.
CONSOLE_CHAT_ID = 0
NOT_ALLOWED = "not on LAWSCREEN_TELEGRAM_CHAT_IDS"


@dataclass
class ChatSync:
    added: list[int] = field(default_factory=list)
    enabled: list[int] = field(default_factory=list)
    disabled: list[int] = field(default_factory=list)


def served_chat_ids(settings: Settings) -> list[int]:
    """The allow-list. Without a token and an allow-list, the console's chat, so the demo prints."""
    if settings.telegram_chat_ids or settings.telegram_token is not None:
        return list(settings.telegram_chat_ids)
    return [CONSOLE_CHAT_ID]


def sync_chats(session: Session, allowed_ids: Iterable[int]) -> ChatSync:
    """Make ``chats`` match the allow-list: new ids added enabled, removed ids disabled.

    A chat disabled for leaving the allow-list is enabled again when it comes back; one disabled
    because it blocked the bot stays disabled until its lawyer sends /start. A disabled chat's
    waiting messages are cancelled. New chats get the configured digest times, timezone and cap.
    """
    allowed = set(allowed_ids)
    result = ChatSync()
    if _in_sync(session, allowed):
        return result  # the usual case: no write, no lock
    # Lock every chat row in one order, so concurrent syncs queue instead of deadlocking.
    # NO KEY UPDATE leaves the outbox's foreign-key checks free to proceed meanwhile.
    chats = {
        chat.chat_id: chat
        for chat in session.scalars(
            select(Chat).order_by(col(Chat.chat_id)).with_for_update(key_share=True)
        ).all()
    }
    new = sorted(allowed - chats.keys())
    if new:
        rows = [_new_chat(chat_id) for chat_id in new]
        session.execute(insert(Chat).values(rows).on_conflict_do_nothing(index_elements=["chat_id"]))
        result.added = new
    for chat_id, chat in sorted(chats.items()):
        if chat_id in allowed and not chat.enabled and chat.disabled_reason == NOT_ALLOWED:
            chat.enabled, chat.disabled_reason = True, None
            result.enabled.append(chat_id)
        elif chat_id not in allowed and chat.enabled:
            disable_chat(session, chat_id, NOT_ALLOWED)
            result.disabled.append(chat_id)
    session.flush()
    return result


def _new_chat(chat_id: int, **values: object) -> dict[str, object]:
    """A new chat's row: the configured digest times, timezone and cap."""
    settings = get_settings()
    return {
        "chat_id": chat_id,
        "timezone": settings.notify_timezone,
        "digest_times": settings.notify_digest_times,
        "digest_limit": settings.notify_digest_limit,
        **values,
    }


def _in_sync(session: Session, allowed: set[int]) -> bool:
    rows = session.execute(select(col(Chat.chat_id), col(Chat.enabled), col(Chat.disabled_reason))).all()
    present = {chat_id for chat_id, _, _ in rows}
    reenable = any(c in allowed and not on and why == NOT_ALLOWED for c, on, why in rows)
    disable = any(c not in allowed and on for c, on, _ in rows)
    return allowed <= present and not reenable and not disable


def disable_chat(session: Session, chat_id: int, reason: str) -> int:
    """Stop serving a chat (blocked the bot, left the allow-list); cancel what waits for it."""
    session.execute(
        update(Chat).where(col(Chat.chat_id) == chat_id).values(enabled=False, disabled_reason=reason)
    )
    return cancel_pending(session, chat_id, f"chat disabled: {reason}")


def start_chat(session: Session, chat_id: int, title: str | None) -> Chat:
    """/start in an allowed chat: create or re-enable it (a lawyer who had blocked the bot is back)."""
    session.execute(
        insert(Chat)
        .values(_new_chat(chat_id, title=title))
        .on_conflict_do_update(
            index_elements=["chat_id"], set_={"enabled": True, "disabled_reason": None, "title": title}
        )
    )
    return session.scalars(select(Chat).where(col(Chat.chat_id) == chat_id)).one()


def set_paused(session: Session, chat_id: int, paused: bool) -> int:
    """Pause or resume a chat. Resuming folds the alerts held meanwhile into the next digest.

    While paused nothing is delivered, but hits are still queued, so none is lost and none is sent
    twice. On resume, rather than a burst of stale alerts, those queued during the pause become
    digest items: ranked and capped with the rest. Returns how many alerts were folded.
    """
    session.execute(update(Chat).where(col(Chat.chat_id) == chat_id).values(paused=paused))
    if paused:
        return 0
    folded = session.execute(
        update(Notification)
        .where(
            col(Notification.chat_id) == chat_id,
            col(Notification.kind) == NotificationKind.ALERT,
            col(Notification.status) == NotificationStatus.PENDING,
        )
        .values(kind=NotificationKind.DIGEST_ITEM)
        .returning(col(Notification.id))
    ).all()
    return len(folded)


def set_digest_schedule(
    session: Session, chat_id: int, times: Sequence[str] | None, timezone: str | None
) -> Chat:
    """/digest_time: new times and/or timezone (None keeps the current); the chat as it is now."""
    values: dict[str, object] = {}
    if times is not None:
        values["digest_times"] = sorted(set(times))
    if timezone is not None:
        values["timezone"] = timezone
    if values:
        session.execute(update(Chat).where(col(Chat.chat_id) == chat_id).values(**values))
    return session.scalars(select(Chat).where(col(Chat.chat_id) == chat_id)).one()
