"""Digests: each chat's waiting hits, ranked and capped, plus a few posts to label, at its times.

A digest is composed in one transaction: the chat's row is locked, a digest row keyed by its
window is inserted (unique per chat), and the waiting items move into it (``digest_id``). So a
window yields one digest however often it is run, by however many processes, and an item is in
at most one digest. The relay then sends the digest row like any other outbox row.

Hits over the chat's cap are counted ("N more") and attached to the digest as ``cancelled``: they
are never shown later, so a busy week cannot snowball into ever longer digests. The "please label"
section asks about the production model's least certain posts: those closest to its threshold
that nobody has labeled and this chat has not been sent (active learning). Each becomes a
``label_request`` row of its own, so it is never asked twice.

When is a digest due? At each of the chat's ``digest_times`` in its ``timezone``, once that time
has passed since the chat's last digest (or since the chat was added). A window missed while
nothing ran is sent at the next check; a chat that asked for one with /digest at 08:55 gets its
09:00 digest all the same, holding what arrived in between.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlmodel import Session, col

from lawscreen.errors import ChatNotServedError
from lawscreen.models import Chat
from lawscreen.notify._tx import in_transaction
from lawscreen.notify.chats import served_chat_ids, sync_chats
from lawscreen.notify.relay import RelayReport, relay
from lawscreen.notify.transport import Sender, open_sender
from lawscreen.repo import notifications as outbox
from lawscreen.repo.registry import production_model
from lawscreen.settings import Settings, get_settings


@dataclass(frozen=True, slots=True)
class ComposedDigest:
    chat_id: int
    key: str
    digest_id: int
    items: int  # hits shown
    more: int  # hits over the cap, counted only
    label_requests: int

    @property
    def empty(self) -> bool:
        """Nothing to send: the digest row only marks the window as done."""
        return not self.items and not self.label_requests


@dataclass
class DigestReport:
    digests: list[ComposedDigest] = field(default_factory=list)
    relay: RelayReport | None = None  # None when there was nothing to send


def send_digests(now: datetime, chat_id: int | None = None) -> DigestReport:
    """Compose and send digests: every chat whose digest time has come, or ``chat_id`` now.

    Idempotent per window: running it again for the same window composes and sends nothing.
    Owns its ``Bot`` (or the console notifier) and its sessions. ``chat_id`` must be served
    (on the allow-list, enabled, not paused), else ``ChatNotServedError``.
    """
    return asyncio.run(_send_digests(get_settings(), now, chat_id))


async def _send_digests(settings: Settings, now: datetime, chat_id: int | None) -> DigestReport:
    await in_transaction(sync_chats, served_chat_ids(settings))
    async with open_sender(settings) as sender:
        return await send_digests_with(sender, settings, now, chat_id)


async def send_digests_with(
    sender: Sender, settings: Settings, now: datetime, chat_id: int | None = None
) -> DigestReport:
    """The async core, shared with the bot (its JobQueue and /digest) which brings its own sender."""
    if chat_id is None:
        digests = await in_transaction(compose_due, now, settings.notify_label_requests)
    elif await in_transaction(served_chat, chat_id) is None:
        raise ChatNotServedError(f"chat {chat_id} is not served: not on the allow-list, disabled or paused")
    else:
        composed = await in_transaction(compose, chat_id, manual_key(now), settings.notify_label_requests)
        digests = [composed] if composed else []
    report = DigestReport(digests)
    to_send = [digest.digest_id for digest in digests if not digest.empty]
    if to_send:
        report.relay = await relay(sender, settings, ids=to_send)
    return report


def compose_due(session: Session, now: datetime, label_requests: int) -> list[ComposedDigest]:
    """The digest of every served chat whose digest time has passed since its last digest."""
    last = outbox.last_digest_at(session)
    chats = session.scalars(
        select(Chat).where(col(Chat.enabled), ~col(Chat.paused)).order_by(col(Chat.chat_id))
    )
    composed = []
    for chat in chats.all():
        window = latest_window(now, chat.digest_times, ZoneInfo(chat.timezone))
        since = max(filter(None, [chat.created_at, last.get(chat.chat_id)]))
        if window is not None and window > since:
            digest = compose(session, chat.chat_id, window_key(window), label_requests)
            if digest is not None:
                composed.append(digest)
    return composed


def served_chat(session: Session, chat_id: int, *, lock: bool = False) -> Chat | None:
    """The chat, if it is served (enabled, not paused); its row locked until commit if ``lock``."""
    query = select(Chat).where(col(Chat.chat_id) == chat_id)
    if lock:
        query = query.with_for_update(key_share=True)
    chat = session.scalars(query).first()
    return chat if chat is not None and chat.enabled and not chat.paused else None


def compose(session: Session, chat_id: int, key: str, label_requests: int) -> ComposedDigest | None:
    """Compose the chat's digest for window ``key``; None if the window is done or the chat not served."""
    # Locking the chat serializes digests of one chat (a scheduled one and /digest, two processes).
    chat = served_chat(session, chat_id, lock=True)
    if chat is None:
        return None
    items = outbox.pending_items(session, chat_id)
    shown, cut = items[: chat.digest_limit], items[chat.digest_limit :]
    model = production_model(session)
    asks = outbox.label_request_candidates(session, chat_id, model, label_requests) if model else []
    digest = outbox.create_digest(
        session,
        chat_id,
        key,
        shown=[row_id for row_id, _ in shown],
        cut=[row_id for row_id, _ in cut],
        asks=asks,
        model_id=model.id if model else None,
    )
    if digest is None or digest.id is None:
        return None
    return ComposedDigest(chat_id, key, digest.id, len(shown), len(cut), len(asks))


def latest_window(now: datetime, times: list[str], tz: ZoneInfo) -> datetime | None:
    """The latest of the digest times, today or yesterday in ``tz``, not after ``now``."""
    local = now.astimezone(tz)
    candidates = [
        datetime.combine(day, time.fromisoformat(at), tzinfo=tz)
        for day in (local.date() - timedelta(days=1), local.date())
        for at in times
    ]
    passed = [window for window in candidates if window <= local]
    return max(passed) if passed else None


def window_key(window: datetime) -> str:
    return f"at {window.isoformat(timespec='minutes')}"


def manual_key(now: datetime) -> str:
    """An asked-for digest's window: the second it was asked, so a double tap sends one."""
    return f"now {now.astimezone(UTC).isoformat(timespec='seconds')}"
