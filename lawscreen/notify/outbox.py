"""Deciding who hears about a post. Called in the transaction that stores the post's prediction,
so a prediction and its notification rows commit together or not at all (transactional outbox).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Session, col, select

from lawscreen.models import Chat, Notification, NotificationKind, Post


@dataclass(frozen=True, slots=True)
class Hit:
    """A post the model scored at or above its decision threshold."""

    post_id: int
    score: float
    model_version_id: int


def enqueue_hits(session: Session, hits: Sequence[Hit], *, alert_threshold: float) -> int:
    """One outbox row per hit and enabled chat; return how many rows were created.

    A score at or above ``alert_threshold`` is an alert, sent at once; a lower one waits for the
    chat's digest. A cross-post (a copy of an earlier post on another forum) gets no row of its
    own: its original's message lists every copy. A post already queued for a chat, by an earlier
    model say, is never queued twice for it (unique chat and post).
    """
    if not hits:
        return 0
    chat_ids = session.exec(select(Chat.chat_id).where(col(Chat.enabled))).all()
    originals = set(
        session.exec(
            select(Post.id).where(
                col(Post.id).in_([hit.post_id for hit in hits]), col(Post.duplicate_of_id).is_(None)
            )
        ).all()
    )
    rows = [
        {
            "chat_id": chat_id,
            "post_id": hit.post_id,
            "kind": NotificationKind.ALERT if hit.score >= alert_threshold else NotificationKind.DIGEST_ITEM,
            "score": hit.score,
            "model_version_id": hit.model_version_id,
        }
        for hit in hits
        if hit.post_id in originals
        for chat_id in chat_ids
    ]
    if not rows:
        return 0
    stmt = insert(Notification).values(rows).on_conflict_do_nothing(index_elements=["chat_id", "post_id"])
    return len(session.execute(stmt.returning(col(Notification.id))).all())
