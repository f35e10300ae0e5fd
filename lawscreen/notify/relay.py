"""The relay: delivers due outbox rows (alerts and digests) through a plain ``Bot``, or prints them.

The Bot API cannot make a send exactly-once, so the relay makes it at-most-once and says so when
it cannot know:

1. claim due rows with ``FOR UPDATE SKIP LOCKED`` under a lease (status ``sending``) and commit;
2. send outside any transaction;
3. record the outcome in a new transaction, only while the lease is still this relay's.

A relay that dies between 2 and 3 leaves a ``sending`` row; once its lease has expired the next
relay marks it ``uncertain``, and nothing resends it. A relay never starts a send it could not
finish before its lease expires: it gives the remaining rows back instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlmodel import Session

from lawscreen.errors import ConfigError, TelegramTokenError
from lawscreen.models import Chat, Notification, NotificationKind, NotificationStatus
from lawscreen.notify._tx import in_transaction
from lawscreen.notify.chats import disable_chat, served_chat_ids, sync_chats
from lawscreen.notify.ratelimit import PER_CHAT_INTERVAL_S
from lawscreen.notify.render import Part, render_alert, render_digest
from lawscreen.notify.transport import Action, Outcome, Sender, classify, open_sender
from lawscreen.repo import notifications as outbox
from lawscreen.settings import Settings, get_settings

log = logging.getLogger(__name__)

CLAIM_BATCH = 10  # rows leased at once: small, so concurrent relays share the work
BACKOFF_BASE_S = 5.0  # first retry after a connection error, doubled per attempt...
BACKOFF_CAP_S = 600.0  # ...up to this
# Lease time kept in hand, for clock differences between this host and the database.
LEASE_MARGIN_S = 2.0


@dataclass
class RelayReport:
    transport: str  # "telegram" or "console"
    sent: int = 0
    rescheduled: int = 0  # not delivered, due again later (429, connection errors)
    uncertain: int = 0  # may have been delivered: see docs/notifications.md
    failed: int = 0
    cancelled: int = 0  # their chat was disabled during the run
    expired: int = 0  # found mid-send from a relay that died: now uncertain
    disabled_chats: list[int] = field(default_factory=list)

    def count(self, status: NotificationStatus) -> None:
        name = "rescheduled" if status == NotificationStatus.PENDING else str(status)
        setattr(self, name, getattr(self, name) + 1)


# The row status each send outcome records (a retry is pending again, or failed once out of attempts).
_STATUS = {
    Action.SENT: NotificationStatus.SENT,
    Action.RETRY: NotificationStatus.PENDING,
    Action.UNCERTAIN: NotificationStatus.UNCERTAIN,
    Action.FAILED: NotificationStatus.FAILED,
    Action.DISABLE_CHAT: NotificationStatus.FAILED,
}


@dataclass(frozen=True, slots=True)
class _Delivery:
    row: outbox.Claimed
    parts: list[Part]


def deliver_pending() -> RelayReport:
    """Send every due alert and digest once (``lawscreen notify``, the hourly flow).

    Owns its ``Bot`` (or the console notifier when no token is set) and its sessions. The chats
    table is synced with the allow-list first. Raises ``TelegramTokenError`` if the Bot API
    refuses the token; the rows it claimed are then given back untouched.
    """
    settings = get_settings()
    return asyncio.run(_deliver_pending(settings))


async def _deliver_pending(settings: Settings) -> RelayReport:
    await in_transaction(sync_chats, served_chat_ids(settings))
    async with open_sender(settings) as sender:
        return await relay(sender, settings)


async def relay(sender: Sender, settings: Settings, ids: Collection[int] | None = None) -> RelayReport:
    """Deliver due rows (only ``ids`` if given) until none is left; the async core of the relay."""
    lease = settings.notify_lease_s
    if lease - LEASE_MARGIN_S < _send_budget(settings, parts=1):
        raise ConfigError(
            f"LAWSCREEN_NOTIFY_LEASE_S ({lease:g}) is too short to send one message with "
            f"LAWSCREEN_NOTIFY_SEND_TIMEOUT_S ({settings.notify_send_timeout_s:g}): "
            f"use at least {_send_budget(settings, parts=1) + LEASE_MARGIN_S:g}"
        )
    run = _Run(sender, settings, owner=_owner())
    run.report.expired = await in_transaction(outbox.expire_leases)
    while True:
        batch = await in_transaction(_claim, run.owner, lease, ids)
        if not batch:
            break
        deadline = time.monotonic() + lease - LEASE_MARGIN_S
        by_chat: dict[int, list[_Delivery]] = defaultdict(list)
        for delivery in batch:
            by_chat[delivery.row.chat_id].append(delivery)
        tried = await asyncio.gather(*(run.send_chat(rows, deadline) for rows in by_chat.values()))
        if run.unauthorized:
            raise TelegramTokenError(
                "the Bot API refused LAWSCREEN_TELEGRAM_TOKEN; unsent rows were given back"
            )
        if not any(tried):
            break  # everything was given back: the lease is too short to make progress now
    return run.report


def _owner() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _send_budget(settings: Settings, parts: int) -> float:
    # Worst case per message: wait for the rate limit, then connect, write and read timeouts.
    return parts * (PER_CHAT_INTERVAL_S + 3 * settings.notify_send_timeout_s)


def _claim(session: Session, owner: str, lease: float, ids: Collection[int] | None) -> list[_Delivery]:
    """Lease a batch and render it, in the claim's transaction."""
    rows = outbox.claim_due(session, owner, timedelta(seconds=lease), CLAIM_BATCH, ids)
    return [_Delivery(row, _render(session, row)) for row in rows]


def _render(session: Session, row: outbox.Claimed) -> list[Part]:
    chat = session.get(Chat, row.chat_id)
    assert chat is not None  # a foreign key
    tz = ZoneInfo(chat.timezone)
    if row.kind == NotificationKind.ALERT:
        assert row.post_id is not None  # a check constraint
        post = outbox.post_views(session, [row.post_id])[row.post_id]
        return render_alert(
            post, row.score, tz, outbox.verdicts(session, row.chat_id, [row.post_id]).get(row.post_id)
        )
    digest = session.get(Notification, row.id)
    assert digest is not None
    view = outbox.digest_view(session, digest)
    verdicts = outbox.verdicts(session, row.chat_id, [entry.post.post_id for entry in view.entries])
    return render_digest(view, tz, verdicts)


class _Run:
    """One relay run: its lease owner, its report, and whether the token was refused.

    Database work runs on worker threads; the report is only touched on the event loop.
    """

    def __init__(self, sender: Sender, settings: Settings, owner: str) -> None:
        self.sender = sender
        self.settings = settings
        self.owner = owner
        self.report = RelayReport(sender.name)
        self.unauthorized = False

    async def send_chat(self, rows: Sequence[_Delivery], deadline: float) -> int:
        """Send one chat's rows in order; return how many were tried."""
        for index, delivery in enumerate(rows):
            row = delivery.row
            budget = _send_budget(self.settings, len(delivery.parts))
            if self.unauthorized or time.monotonic() + budget > deadline:
                await in_transaction(outbox.release, [later.row.id for later in rows[index:]], self.owner)
                return index
            try:
                outcome = Outcome(Action.SENT, message_id=await self.sender.send(row.chat_id, delivery.parts))
            except Exception as exc:  # every failure is classified; unknown ones as uncertain
                outcome = classify(exc)
                log.warning("notification %s to chat %s: %s", row.id, row.chat_id, outcome.error)
            if outcome.action == Action.UNAUTHORIZED:  # nothing was sent: give this row back too
                self.unauthorized = True
                await in_transaction(outbox.release, [later.row.id for later in rows[index:]], self.owner)
                return index
            recorded = await in_transaction(self._record, row, outcome)
            if recorded is None:
                # Only if this process stalled past its lease: another relay marked the row uncertain.
                log.warning("notification %s: lease lost before recording %s", row.id, outcome.action)
            else:
                self.report.count(recorded)
            if outcome.action == Action.DISABLE_CHAT:
                self.report.disabled_chats.append(row.chat_id)
            if outcome.action == Action.DISABLE_CHAT or outcome.delay is not None:
                await self._stop_chat([later.row.id for later in rows[index + 1 :]], outcome)
                return index + 1
        return len(rows)

    def _record(self, session: Session, row: outbox.Claimed, outcome: Outcome) -> NotificationStatus | None:
        """Store the outcome; the status recorded, or None if the lease was lost meanwhile."""
        status, error = _STATUS[outcome.action], outcome.error
        if outcome.action == Action.RETRY and row.attempts + 1 >= self.settings.notify_max_attempts:
            status, error = NotificationStatus.FAILED, f"gave up after {row.attempts + 1} attempts: {error}"
        if status == NotificationStatus.PENDING:
            delay = outcome.delay if outcome.delay is not None else _backoff(row.attempts)
            recorded = outbox.reschedule(session, row.id, self.owner, timedelta(seconds=delay), error or "")
        else:
            recorded = outbox.finish(
                session, row.id, self.owner, status, message_id=outcome.message_id, error=error
            )
        if recorded and outcome.action == Action.DISABLE_CHAT:
            disable_chat(session, row.chat_id, error or "unreachable")
        return status if recorded else None

    async def _stop_chat(self, ids: Sequence[int], outcome: Outcome) -> None:
        """After a 429 or a disabled chat, the chat's other claimed rows are not tried."""
        if outcome.delay is not None:
            delay, error = timedelta(seconds=outcome.delay), outcome.error or ""
            postponed = await in_transaction(
                lambda session: sum(
                    outbox.reschedule(session, row_id, self.owner, delay, error, tried=False)
                    for row_id in ids
                )
            )
            self.report.rescheduled += postponed
        else:
            reason = f"chat disabled: {outcome.error}"
            cancelled = await in_transaction(
                lambda session: sum(
                    outbox.finish(session, row_id, self.owner, NotificationStatus.CANCELLED, error=reason)
                    for row_id in ids
                )
            )
            self.report.cancelled += cancelled


def _backoff(attempts: int) -> float:
    """Exponential backoff with jitter, so relays retrying together spread out."""
    delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0**attempts)
    return delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not security
