"""Predictions: claiming unscored posts for a model, and storing what the model said.

Claiming is safe with any number of concurrent workers. ``claim_unscored`` locks the posts it
returns (``FOR NO KEY UPDATE SKIP LOCKED``): another worker's claim skips them instead of waiting,
and the locks last until the claiming transaction commits, together with the predictions.
``FOR NO KEY UPDATE`` rather than ``FOR UPDATE`` so that rows referencing a claimed post (a label
from the Telegram bot, a notification) can still be inserted meanwhile: their foreign-key check
takes a KEY SHARE lock, which NO KEY UPDATE does not block, while two NO KEY UPDATE locks exclude
each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import ColumnElement, exists, func
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Session, col, select

from lawscreen.models import Post, Prediction, PredictionStatus


@dataclass(frozen=True, slots=True)
class Shard:
    """Posts whose ``id % count == index``: a disjoint share of the backlog for one worker."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: need 0 <= INDEX < COUNT")

    @classmethod
    def parse(cls, value: str) -> Shard:
        """``"2/8"``: shard 2 of 8 (0-based)."""
        try:
            index, count = (int(part) for part in value.split("/"))
        except ValueError:
            raise ValueError(f"shard {value!r} is not INDEX/COUNT, e.g. 0/4") from None
        return cls(index, count)


class ClaimedPost(NamedTuple):
    id: int
    text: str


@dataclass(frozen=True, slots=True)
class NewPrediction:
    post_id: int
    status: PredictionStatus
    score: float | None = None
    label: bool | None = None


def _unscored(model_version_id: int) -> ColumnElement[bool]:
    return ~exists().where(
        col(Prediction.post_id) == col(Post.id), col(Prediction.model_version_id) == model_version_id
    )


def claim_unscored(
    session: Session,
    model_version_id: int,
    *,
    limit: int,
    after_id: int = 0,
    shard: Shard | None = None,
) -> list[ClaimedPost]:
    """Lock and return up to ``limit`` posts with no prediction for the model, oldest id first.

    Posts another transaction has locked are skipped, not waited for. Call ``unscored_among``
    on the result before scoring: see its docstring for the race it closes.
    """
    query = (
        select(col(Post.id), col(Post.text))
        .where(col(Post.id) > after_id, _unscored(model_version_id))
        .order_by(col(Post.id))
        .limit(limit)
        .with_for_update(skip_locked=True, key_share=True, of=Post)  # FOR NO KEY UPDATE SKIP LOCKED
    )
    if shard is not None and shard.count > 1:
        query = query.where(col(Post.id) % shard.count == shard.index)
    return [ClaimedPost(int(post_id or 0), text) for post_id, text in session.exec(query).all()]


def unscored_among(session: Session, model_version_id: int, post_ids: Sequence[int]) -> set[int]:
    """Which of ``post_ids`` (locked by this transaction) still have no prediction for the model.

    The claim's snapshot is taken when its statement starts. A worker that held one of these posts
    may have committed its prediction between that moment and the moment our claim locked the row:
    the claim cannot see that prediction, but this second statement, run after the lock was
    granted, does. Without it such a post would be scored twice (the row would still be written
    once, thanks to ON CONFLICT, but the work would be done twice).
    """
    if not post_ids:
        return set()
    done = session.exec(
        select(col(Prediction.post_id)).where(
            col(Prediction.model_version_id) == model_version_id, col(Prediction.post_id).in_(post_ids)
        )
    ).all()
    return set(post_ids) - set(done)


def insert_predictions(
    session: Session, model_version_id: int, predictions: Sequence[NewPrediction]
) -> set[int]:
    """Store predictions, ignoring posts that already have one for the model; return the post ids
    actually inserted."""
    if not predictions:
        return set()
    stmt = (
        insert(Prediction)
        .values(
            [
                {
                    "post_id": p.post_id,
                    "model_version_id": model_version_id,
                    "status": p.status,
                    "score": p.score,
                    "label": p.label,
                }
                for p in predictions
            ]
        )
        .on_conflict_do_nothing(index_elements=["post_id", "model_version_id"])
        .returning(col(Prediction.post_id))
    )
    return {int(post_id) for post_id in session.execute(stmt).scalars().all()}


def count_unscored(session: Session, model_version_id: int, shard: Shard | None = None) -> int:
    query = select(func.count()).select_from(Post).where(_unscored(model_version_id))
    if shard is not None and shard.count > 1:
        query = query.where(col(Post.id) % shard.count == shard.index)
    return int(session.exec(query).one())
