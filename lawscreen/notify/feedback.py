"""One-tap feedback: a button press becomes the chat's label for the post; the message shows it.

A press is accepted only for a post that was sent to the pressing chat (the button data is
validated, and clients can forge it). The label is upserted, one per post and chat, so pressing
twice or changing one's mind keeps exactly one label: the latest. The message the button sits on
is rendered again from the database with the verdicts now, for the bot to edit it in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import or_, update
from sqlmodel import Session, col

from lawscreen.models import Chat, LabelOrigin, Notification, NotificationKind, NotificationStatus
from lawscreen.notify.render import Part, render_alert, render_digest
from lawscreen.repo import notifications as outbox
from lawscreen.repo.labels import NewLabel, upsert_labels


@dataclass(frozen=True, slots=True)
class Feedback:
    message: Part  # the message holding the post's buttons, as it should read now
    changed: bool  # False when the press repeated the chat's current verdict


def record_feedback(
    session: Session,
    *,
    chat_id: int,
    post_id: int,
    is_legal: bool,
    user_id: int | None,
    annotator: str | None,
) -> Feedback | None:
    """Store the verdict; None if the post was never sent to this chat (nothing is stored)."""
    row = outbox.notified(session, chat_id, post_id)
    if row is None:
        return None
    label = NewLabel(
        post_id, is_legal, LabelOrigin.FEEDBACK, chat_id=chat_id, user_id=user_id, annotator=annotator
    )
    changed = upsert_labels(session, [label]) > 0
    _confirm_delivered(session, row)
    return Feedback(_message(session, row), changed)


def _confirm_delivered(session: Session, row: Notification) -> None:
    # A press proves the message arrived: an uncertain row (and its digest) is sent after all.
    message_id = row.id if row.kind == NotificationKind.ALERT else row.digest_id
    session.execute(
        update(Notification)
        .where(
            or_(col(Notification.id) == message_id, col(Notification.digest_id) == message_id),
            col(Notification.status) == NotificationStatus.UNCERTAIN,
        )
        .values(status=NotificationStatus.SENT, last_error=None)
    )


def _message(session: Session, row: Notification) -> Part:
    chat = session.get(Chat, row.chat_id)
    assert chat is not None  # a foreign key
    assert row.post_id is not None  # a check constraint
    tz = ZoneInfo(chat.timezone)
    if row.kind == NotificationKind.ALERT:
        post = outbox.post_views(session, [row.post_id])[row.post_id]
        verdict = outbox.verdicts(session, row.chat_id, [row.post_id]).get(row.post_id)
        return render_alert(post, row.score, tz, verdict)[-1]
    digest = session.get(Notification, row.digest_id)
    assert digest is not None  # notified() found the row through its digest
    view = outbox.digest_view(session, digest)
    verdicts = outbox.verdicts(session, row.chat_id, [entry.post.post_id for entry in view.entries])
    # The same split as when it was sent (marks have one length), so this is the pressed message.
    return next(part for part in render_digest(view, tz, verdicts) if part.holds(row.post_id))
