"""Labels: the training data. Imports and the lawyer's feedback both land here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Select, func
from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Session, col, select

from lawscreen.models import Label, LabelOrigin, label_revision_seq


@dataclass(frozen=True, slots=True)
class NewLabel:
    post_id: int
    is_legal: bool
    origin: LabelOrigin
    chat_id: int | None = None
    user_id: int | None = None
    annotator: str | None = None


def upsert_labels(session: Session, labels: Iterable[NewLabel]) -> int:
    """Store verdicts, one per (post, origin, chat); return how many were new or changed.

    A repeated verdict changes nothing. A changed one replaces the old verdict and draws a new
    revision, so it counts as a new label for the retraining trigger.
    """
    unique = {(label.post_id, label.origin, label.chat_id): label for label in labels}
    if not unique:
        return 0
    insert_rows = insert(Label).values(
        [
            {
                "post_id": label.post_id,
                "is_legal": label.is_legal,
                "origin": label.origin,
                "chat_id": label.chat_id,
                "user_id": label.user_id,
                "annotator": label.annotator,
            }
            for label in unique.values()
        ]
    )
    upsert = insert_rows.on_conflict_do_update(
        index_elements=["post_id", "origin", "chat_id"],
        set_={
            "is_legal": insert_rows.excluded.is_legal,
            "user_id": insert_rows.excluded.user_id,
            "annotator": insert_rows.excluded.annotator,
            "updated_at": func.now(),
            "revision": label_revision_seq.next_value(),
        },
        where=col(Label.is_legal).is_distinct_from(insert_rows.excluded.is_legal),
    ).returning(col(Label.id))
    return len(session.execute(upsert).all())


def effective_labels() -> Select[tuple[int, bool, int | None]]:
    """One verdict per post: a human's (feedback, manual) over an import, then the most recent.

    Columns: post_id, is_legal, revision.
    """
    return (
        sa_select(col(Label.post_id), col(Label.is_legal), col(Label.revision))
        .distinct(col(Label.post_id))  # DISTINCT ON (post_id)
        .order_by(
            col(Label.post_id),
            (col(Label.origin) == LabelOrigin.IMPORT).asc(),
            col(Label.revision).desc(),
        )
    )


def count_by_class(session: Session) -> dict[str, int]:
    labels = effective_labels().subquery()
    rows = session.execute(select(labels.c.is_legal, func.count()).group_by(labels.c.is_legal)).all()
    counts = {bool(is_legal): int(n) for is_legal, n in rows}
    return {"legal": counts.get(True, 0), "not_legal": counts.get(False, 0)}


def count_since(session: Session, revision: int) -> int:
    """Label rows added or changed after ``revision`` (a model's snapshot)."""
    return session.exec(select(func.count()).where(col(Label.revision) > revision)).one()


def latest_revision(session: Session) -> int:
    return int(session.exec(select(func.coalesce(func.max(Label.revision), 0))).one() or 0)
