"""The outbox's queries: claiming due rows under a lease, recording outcomes, and the views a
message is rendered from. Like every repository module it never commits: the relay decides which
steps commit together (a claim commits before anything is sent; an outcome in its own transaction).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from lawscreen.errors import NotUncertainError
from lawscreen.models import (
    Chat,
    Label,
    LabelOrigin,
    ModelVersion,
    Notification,
    NotificationKind,
    NotificationStatus,
    Post,
    Prediction,
    PredictionStatus,
    Source,
)

# Kinds that are messages of their own; digest items and label requests travel inside a digest.
MESSAGE_KINDS = (NotificationKind.ALERT, NotificationKind.DIGEST)
# Kinds that count as hits, i.e. towards alert precision.
HIT_KINDS = (NotificationKind.ALERT, NotificationKind.DIGEST_ITEM)
LEASE_EXPIRED = "lease expired before the outcome was recorded: the relay stopped mid-send"
OVER_CAP = "over the digest's cap"


@dataclass(frozen=True, slots=True)
class Link:
    source: str
    url: str | None


@dataclass(frozen=True, slots=True)
class PostView:
    post_id: int
    title: str
    text: str  # normalized title and body, as the model read it
    source: str
    posted_at: datetime | None
    links: tuple[Link, ...]  # the post's own, then one per cross-post copy


@dataclass(frozen=True, slots=True)
class Verdict:
    is_legal: bool
    by: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class DigestEntry:
    post: PostView
    score: float | None
    label_request: bool  # from the "please label" section rather than a hit


@dataclass(frozen=True, slots=True)
class DigestView:
    created_at: datetime
    entries: tuple[DigestEntry, ...]  # hits by score, then label requests by closeness to the threshold
    more: int  # hits over the digest's cap: counted, not shown


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    chat_id: int
    kind: str
    post_id: int | None
    score: float | None
    attempts: int


def expire_leases(session: Session) -> int:
    """Rows whose relay died mid-send: they may have been delivered, so they become ``uncertain``."""
    expired = session.execute(
        update(Notification)
        .where(
            col(Notification.status) == NotificationStatus.SENDING,
            col(Notification.lease_expires_at) < func.now(),
        )
        .values(status=NotificationStatus.UNCERTAIN, lease_expires_at=None, last_error=LEASE_EXPIRED)
        .returning(col(Notification.id), col(Notification.kind))
    ).all()
    digests = [row_id for row_id, kind in expired if kind == NotificationKind.DIGEST]
    _mirror_items(session, digests, NotificationStatus.UNCERTAIN, LEASE_EXPIRED)
    return len(expired)


def claim_due(
    session: Session, owner: str, lease: timedelta, limit: int, ids: Collection[int] | None = None
) -> list[Claimed]:
    """Lease up to ``limit`` due messages of served chats to ``owner``; concurrent relays skip them."""
    due = (
        select(col(Notification.id))
        .join(Chat, col(Chat.chat_id) == col(Notification.chat_id))
        .where(
            col(Notification.status) == NotificationStatus.PENDING,
            col(Notification.kind).in_(MESSAGE_KINDS),
            col(Notification.not_before) <= func.now(),
            col(Chat.enabled),
            ~col(Chat.paused),
        )
        .order_by(col(Notification.not_before), col(Notification.id))
        .limit(limit)
        .with_for_update(of=Notification, skip_locked=True)
    )
    if ids is not None:
        due = due.where(col(Notification.id).in_(ids))
    rows = session.execute(
        update(Notification)
        .where(col(Notification.id).in_(due.scalar_subquery()))
        .values(status=NotificationStatus.SENDING, lease_owner=owner, lease_expires_at=func.now() + lease)
        .returning(
            col(Notification.id),
            col(Notification.chat_id),
            col(Notification.kind),
            col(Notification.post_id),
            col(Notification.score),
            col(Notification.attempts),
        )
    ).all()
    return sorted((Claimed(*row) for row in rows), key=lambda claimed: claimed.id)


def finish(
    session: Session,
    notification_id: int,
    owner: str,
    status: NotificationStatus,
    *,
    message_id: int | None = None,
    error: str | None = None,
) -> bool:
    """Record a final outcome (sent, uncertain, failed, cancelled); a digest's items share it.

    Only while ``owner`` still holds the lease: False if the row was taken from it meanwhile.
    """
    row = session.execute(
        update(Notification)
        .where(*_leased_by(notification_id, owner))
        .values(
            status=status,
            attempts=col(Notification.attempts) + int(status != NotificationStatus.CANCELLED),
            lease_expires_at=None,
            sent_at=func.now() if status == NotificationStatus.SENT else None,
            telegram_message_id=message_id,
            last_error=error,
        )
        .returning(col(Notification.kind))
    ).first()
    if row is not None and row.kind == NotificationKind.DIGEST:
        _mirror_items(session, [notification_id], status, error)
    return row is not None


def reschedule(
    session: Session, notification_id: int, owner: str, delay: timedelta, error: str, *, tried: bool = True
) -> bool:
    """Back to pending, due again after ``delay``: the message is known not to have been sent.

    ``tried``: whether a send was attempted (it counts towards the row's attempts).
    """
    row = session.execute(
        update(Notification)
        .where(*_leased_by(notification_id, owner))
        .values(
            status=NotificationStatus.PENDING,
            attempts=col(Notification.attempts) + int(tried),
            not_before=func.now() + delay,
            lease_owner=None,
            lease_expires_at=None,
            last_error=error,
        )
        .returning(col(Notification.id))
    ).first()
    return row is not None


def release(session: Session, notification_ids: Sequence[int], owner: str) -> None:
    """Give back claimed rows that were not tried: pending and due again, attempts unchanged."""
    session.execute(
        update(Notification)
        .where(
            col(Notification.id).in_(notification_ids),
            col(Notification.status) == NotificationStatus.SENDING,
            col(Notification.lease_owner) == owner,
        )
        .values(status=NotificationStatus.PENDING, lease_owner=None, lease_expires_at=None)
    )


def cancel_pending(session: Session, chat_id: int, reason: str) -> int:
    """Cancel everything still waiting for a chat that will not be served."""
    return len(
        session.execute(
            update(Notification)
            .where(
                col(Notification.chat_id) == chat_id,
                col(Notification.status) == NotificationStatus.PENDING,
            )
            .values(status=NotificationStatus.CANCELLED, last_error=reason)
            .returning(col(Notification.id))
        ).all()
    )


def uncertain(session: Session) -> list[Notification]:
    """Messages that may or may not have arrived (a digest's items follow their digest), oldest first."""
    return list(
        session.scalars(
            select(Notification)
            .where(
                col(Notification.status) == NotificationStatus.UNCERTAIN,
                col(Notification.digest_id).is_(None),
            )
            .order_by(col(Notification.id))
        ).all()
    )


def settle_uncertain(session: Session, notification_id: int, *, arrived: bool) -> Notification:
    """Settle an ``uncertain`` message by hand: it arrived (``sent``), or it did not, and the next
    relay run sends it again (``pending``, due now). A digest's items follow it."""
    row = session.get(Notification, notification_id, with_for_update=True)
    if row is None or row.status != NotificationStatus.UNCERTAIN or row.digest_id is not None:
        state = "does not exist" if row is None else f"is {row.status}"
        if row is not None and row.digest_id is not None:
            state += f", an item of digest {row.digest_id} (settle the digest)"
        raise NotUncertainError(f"notification {notification_id} {state}; only uncertain ones can be settled")
    status = NotificationStatus.SENT if arrived else NotificationStatus.PENDING
    row.status = status
    row.lease_owner, row.lease_expires_at = None, None
    if arrived:
        row.sent_at = datetime.now(UTC)
    else:
        row.not_before = datetime.now(UTC)
    _mirror_items(session, [notification_id], status, row.last_error, was=NotificationStatus.UNCERTAIN)
    session.flush()
    return row


def _leased_by(notification_id: int, owner: str) -> list[ColumnElement[bool]]:
    return [
        col(Notification.id) == notification_id,
        col(Notification.status) == NotificationStatus.SENDING,
        col(Notification.lease_owner) == owner,
    ]


def _mirror_items(
    session: Session,
    digest_ids: Sequence[int],
    status: NotificationStatus,
    error: str | None,
    *,
    was: NotificationStatus = NotificationStatus.PENDING,
) -> None:
    """Give the digests' items (those still in status ``was``) the digest's new status."""
    if not digest_ids:
        return
    session.execute(
        update(Notification)
        .where(
            col(Notification.digest_id).in_(digest_ids),
            col(Notification.status) == was,
        )
        .values(
            status=status,
            sent_at=func.now() if status == NotificationStatus.SENT else None,
            last_error=error,
        )
    )


# --- what messages are rendered from ---


def post_views(session: Session, post_ids: Collection[int]) -> dict[int, PostView]:
    """Posts with their source and the links of every cross-post copy."""
    if not post_ids:
        return {}
    copies: dict[int, list[Link]] = defaultdict(list)
    for original, url, source in session.execute(
        select(col(Post.duplicate_of_id), col(Post.url), col(Source.name))
        .join(Source, col(Source.id) == col(Post.source_id))
        .where(col(Post.duplicate_of_id).in_(post_ids))
        .order_by(col(Post.id))
    ).all():
        copies[original].append(Link(source, url))
    rows = session.execute(
        select(
            col(Post.id),
            col(Post.title),
            col(Post.text),
            col(Post.url),
            col(Post.posted_at),
            col(Source.name),
        )
        .join(Source, col(Source.id) == col(Post.source_id))
        .where(col(Post.id).in_(post_ids))
    ).all()
    return {
        post_id: PostView(
            post_id=post_id,
            title=title,
            text=text,
            source=source,
            posted_at=posted_at,
            links=(Link(source, url), *copies[post_id]),
        )
        for post_id, title, text, url, posted_at, source in rows
    }


def digest_view(session: Session, digest: Notification) -> DigestView:
    """A digest as it was composed: its shown items in rank order, and how many were cut."""
    assert digest.id is not None
    assert digest.created_at is not None
    items = session.execute(
        select(
            col(Notification.post_id),
            col(Notification.kind),
            col(Notification.score),
            col(Notification.status),
        )
        .where(col(Notification.digest_id) == digest.id)
        .order_by(*_rank_order())
        .outerjoin(ModelVersion, col(ModelVersion.id) == col(Notification.model_version_id))
    ).all()
    shown = [item for item in items if item.status != NotificationStatus.CANCELLED]
    posts = post_views(session, [item.post_id for item in shown if item.post_id is not None])
    entries = tuple(
        DigestEntry(posts[item.post_id], item.score, item.kind == NotificationKind.LABEL_REQUEST)
        for item in shown
        if item.post_id in posts
    )
    return DigestView(digest.created_at, entries, more=len(items) - len(shown))


def _rank_order() -> list[ColumnElement[Any]]:
    # Hits first, best score first; then label requests, least certain (closest to the threshold) first.
    is_request = col(Notification.kind) == NotificationKind.LABEL_REQUEST
    score = func.coalesce(col(Notification.score), 0.0)
    distance = func.abs(score - func.coalesce(col(ModelVersion.threshold), 0.5))
    return [is_request.asc(), case((is_request, distance), else_=-score).asc(), col(Notification.id).asc()]


def verdicts(session: Session, chat_id: int, post_ids: Collection[int]) -> dict[int, Verdict]:
    """This chat's feedback on the posts: one label per post and chat, the latest."""
    rows = session.execute(
        select(col(Label.post_id), col(Label.is_legal), col(Label.annotator), col(Label.updated_at)).where(
            col(Label.chat_id) == chat_id,
            col(Label.origin) == LabelOrigin.FEEDBACK,
            col(Label.post_id).in_(post_ids),
        )
    ).all()
    return {post_id: Verdict(is_legal, annotator, at) for post_id, is_legal, annotator, at in rows if at}


def notified(session: Session, chat_id: int, post_id: int) -> Notification | None:
    """The row through which a post reached this chat: an alert, or an item of a digest, that may
    have been delivered (a press on its button can come before the relay has recorded the send)."""
    digest = aliased(Notification)
    maybe_delivered = [NotificationStatus.SENDING, NotificationStatus.SENT, NotificationStatus.UNCERTAIN]
    return session.scalars(
        select(Notification)
        .outerjoin(digest, col(digest.id) == col(Notification.digest_id))
        .where(
            col(Notification.chat_id) == chat_id,
            col(Notification.post_id) == post_id,
            col(Notification.status) != NotificationStatus.CANCELLED,  # cut from its digest: never shown
            or_(
                and_(
                    col(Notification.kind) == NotificationKind.ALERT,
                    col(Notification.status).in_(maybe_delivered),
                ),
                col(digest.status).in_(maybe_delivered),
            ),
        )
    ).first()


# --- digests ---


def pending_items(session: Session, chat_id: int) -> list[tuple[int, float | None]]:
    """Hits waiting for this chat's next digest, best first: (row id, score)."""
    rows = session.execute(
        select(col(Notification.id), col(Notification.score))
        .where(
            col(Notification.chat_id) == chat_id,
            col(Notification.kind) == NotificationKind.DIGEST_ITEM,
            col(Notification.status) == NotificationStatus.PENDING,
            col(Notification.digest_id).is_(None),
        )
        .order_by(func.coalesce(col(Notification.score), 0.0).desc(), col(Notification.id))
    ).all()
    return [(row_id, score) for row_id, score in rows]


def label_request_candidates(
    session: Session, chat_id: int, model: ModelVersion, limit: int
) -> list[tuple[int, float]]:
    """The production model's least certain posts this chat has not seen: (post id, score).

    Closest to the decision threshold first; cross-post copies, labeled posts (by anyone: their
    label is known already) and posts already notified to the chat are left out.
    """
    if limit <= 0:
        return []
    assert model.id is not None
    labeled = select(col(Label.id)).where(col(Label.post_id) == col(Prediction.post_id)).exists()
    seen = (
        select(col(Notification.id))
        .where(col(Notification.chat_id) == chat_id, col(Notification.post_id) == col(Prediction.post_id))
        .exists()
    )
    rows = session.execute(
        select(col(Prediction.post_id), col(Prediction.score))
        .join(Post, col(Post.id) == col(Prediction.post_id))
        .where(
            col(Prediction.model_version_id) == model.id,
            col(Prediction.status) == PredictionStatus.SCORED,
            col(Post.duplicate_of_id).is_(None),
            ~labeled,
            ~seen,
        )
        .order_by(func.abs(col(Prediction.score) - model.threshold), col(Prediction.post_id))
        .limit(limit)
    ).all()
    return [(post_id, float(score)) for post_id, score in rows if score is not None]


def create_digest(
    session: Session,
    chat_id: int,
    key: str,
    shown: Sequence[int],
    cut: Sequence[int],
    asks: Sequence[tuple[int, float]],
    model_id: int | None,
) -> Notification | None:
    """Insert the digest row and move its items into it; None if this window's digest exists.

    A digest with nothing in it is stored ``cancelled``: it marks the window as done.
    """
    empty = not shown and not asks
    created = session.execute(
        insert(Notification)
        .values(
            chat_id=chat_id,
            kind=NotificationKind.DIGEST,
            digest_key=key,
            status=NotificationStatus.CANCELLED if empty else NotificationStatus.PENDING,
            last_error="nothing to send" if empty else None,
        )
        .on_conflict_do_nothing(index_elements=["chat_id", "digest_key"])
        .returning(col(Notification.id))
    ).first()
    if created is None:
        return None
    digest_id = created.id
    if shown:
        session.execute(
            update(Notification).where(col(Notification.id).in_(shown)).values(digest_id=digest_id)
        )
    if cut:
        session.execute(
            update(Notification)
            .where(col(Notification.id).in_(cut))
            .values(digest_id=digest_id, status=NotificationStatus.CANCELLED, last_error=OVER_CAP)
        )
    if asks:
        session.execute(
            insert(Notification)
            .values(
                [
                    {
                        "chat_id": chat_id,
                        "kind": NotificationKind.LABEL_REQUEST,
                        "post_id": post_id,
                        "score": score,
                        "model_version_id": model_id,
                        "digest_id": digest_id,
                    }
                    for post_id, score in asks
                ]
            )
            .on_conflict_do_nothing(index_elements=["chat_id", "post_id"])
        )
    return session.get(Notification, digest_id)


def last_digest_at(session: Session) -> dict[int, datetime]:
    """When each chat's latest digest (scheduled or asked for) was composed."""
    rows = session.execute(
        select(col(Notification.chat_id), func.max(col(Notification.created_at)))
        .where(col(Notification.kind) == NotificationKind.DIGEST)
        .group_by(col(Notification.chat_id))
    ).all()
    return {chat_id: at for chat_id, at in rows if at is not None}


# --- statistics ---


@dataclass(frozen=True, slots=True)
class FeedbackCounts:
    notified: int
    with_feedback: int
    legal: int


def feedback_counts(session: Session, chat_id: int, since: datetime) -> dict[str, FeedbackCounts]:
    """Per hit kind: posts sent to the chat since ``since``, how many got its feedback, how many legal."""
    label = and_(
        col(Label.post_id) == col(Notification.post_id),
        col(Label.chat_id) == chat_id,
        col(Label.origin) == LabelOrigin.FEEDBACK,
    )
    rows = session.execute(
        select(
            col(Notification.kind),
            func.count(),
            func.count(col(Label.id)),
            func.count(col(Label.id)).filter(col(Label.is_legal)),
        )
        .outerjoin(Label, label)
        .where(
            col(Notification.chat_id) == chat_id,
            col(Notification.kind).in_(HIT_KINDS),
            col(Notification.status) == NotificationStatus.SENT,
            col(Notification.sent_at) >= since,
        )
        .group_by(col(Notification.kind))
    ).all()
    counts = {
        kind: FeedbackCounts(notified, with_feedback, legal) for kind, notified, with_feedback, legal in rows
    }
    return {kind: counts.get(kind, FeedbackCounts(0, 0, 0)) for kind in HIT_KINDS}


def outbox_counts(session: Session, chat_id: int) -> dict[tuple[str, str], int]:
    """Rows of this chat by (kind, status)."""
    rows = session.execute(
        select(col(Notification.kind), col(Notification.status), func.count())
        .where(col(Notification.chat_id) == chat_id)
        .group_by(col(Notification.kind), col(Notification.status))
    ).all()
    return {(kind, status): n for kind, status, n in rows}
