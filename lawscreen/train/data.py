"""Training data from the database: labeled posts, the frozen evaluation set, hard negatives, the split.

The evaluation set is chosen once, the first time a model is trained, and stored in
``evaluation_posts``: every later candidate and the production model are compared on the same
posts, and none of them ever trains on them. It grows only by hard negatives: posts the model
flagged (a positive prediction or a notification) that the lawyer then marked "not legal". Those
are the mistakes that cost the lawyer time, so they are kept for judging every later model (the
gate refuses one that flags more of them) and never used for training.

Posts with the same text (cross-posts) are one example: a copy in training and another in the
evaluation set would grade the model on a post it has seen.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import exists, func
from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Session, col, select

from lawscreen.errors import TrainingDataError
from lawscreen.models import (
    EvaluationPost,
    EvaluationReason,
    Label,
    LabelOrigin,
    Notification,
    Post,
    Prediction,
    Source,
)
from lawscreen.repo.labels import effective_labels, latest_revision
from lawscreen.train.config import TrainConfig
from lawscreen.train.loop import Examples
from lawscreen.train.splits import stratified_split

# The evaluation set is drawn once; a fixed seed makes that draw independent of the training seed.
EVALUATION_SEED = 0
# Arbitrary number naming the advisory lock held while the evaluation set is extended or drawn.
FREEZE_LOCK = 0x1A35C7EE
CLASS_NAMES = {0: "not_legal", 1: "legal"}


@dataclass(frozen=True, slots=True)
class LabeledPost:
    post_id: int
    text: str
    label: int  # 1: legal consultation
    source: str
    content_hash: str


class UnlabeledPost(NamedTuple):
    post_id: int
    text: str


@dataclass(frozen=True, slots=True)
class DataSplit:
    train: list[LabeledPost]
    validation: list[LabeledPost]
    evaluation: list[LabeledPost]  # the frozen set: holdout posts and hard negatives
    hard_negative_ids: frozenset[int]
    label_revision: int  # the newest label revision this split reflects

    def snapshot(self) -> dict[str, Any]:
        """What the model was trained and judged on, for meta.json and the registry."""
        parts = {"train": self.train, "validation": self.validation, "evaluation": self.evaluation}
        return {
            "label_revision": self.label_revision,
            "counts": {name: class_counts(posts) for name, posts in parts.items()},
            "hard_negatives": len(self.hard_negative_ids),
            # Two models with the same evaluation hash were judged on exactly the same posts.
            "hashes": {name: posts_hash(posts) for name, posts in parts.items()},
        }


def examples(posts: Sequence[LabeledPost]) -> Examples:
    return Examples(texts=[post.text for post in posts], labels=[post.label for post in posts])


def class_counts(posts: Iterable[LabeledPost]) -> dict[str, int]:
    counts = Counter(post.label for post in posts)
    return {name: counts.get(label, 0) for label, name in CLASS_NAMES.items()}


def posts_hash(posts: Iterable[LabeledPost | UnlabeledPost]) -> str:
    ids = ",".join(str(post_id) for post_id in sorted(post.post_id for post in posts))
    return hashlib.sha256(ids.encode()).hexdigest()[:16]


def load_split(session: Session, config: TrainConfig) -> DataSplit:
    """Labels as of now, the evaluation set (frozen on first use), train and validation parts, with
    ``config``'s shares, minimum per class and seed.

    Raises TrainingDataError, before anything is written, when a class has too few labeled posts.
    """
    revision = latest_revision(session)
    posts = labeled_posts(session, revision)
    _require_per_class(_distinct(posts), config.min_per_class, "labeled posts")

    freeze_evaluation_set(session, posts, config.evaluation_share)
    evaluation, hard_negatives = evaluation_set(session, posts)
    evaluated = {post.content_hash for post in evaluation}
    rest = _distinct(post for post in posts if post.content_hash not in evaluated)
    _require_per_class(rest, 2, "labeled posts outside the evaluation set")

    train_at, validation_at = stratified_split(
        [post.label for post in rest], config.validation_share, config.seed
    )
    return DataSplit(
        train=[rest[i] for i in train_at],
        validation=[rest[i] for i in validation_at],
        evaluation=evaluation,
        hard_negative_ids=hard_negatives,
        label_revision=revision,
    )


def evaluation_set(
    session: Session, posts: Sequence[LabeledPost]
) -> tuple[list[LabeledPost], frozenset[int]]:
    """The frozen evaluation set among ``posts``, one post per text, and which of them are hard negatives.

    A text is in the set when any of its copies is, and a hard negative when any copy is one.
    """
    reasons = dict(session.exec(select(EvaluationPost.post_id, EvaluationPost.reason)).all())
    evaluated = {post.content_hash for post in posts if post.post_id in reasons}
    hard = {
        post.content_hash for post in posts if reasons.get(post.post_id) == EvaluationReason.HARD_NEGATIVE
    }
    evaluation = _distinct(post for post in posts if post.content_hash in evaluated)
    return evaluation, frozenset(post.post_id for post in evaluation if post.content_hash in hard)


def labeled_posts(session: Session, revision: int) -> list[LabeledPost]:
    """Every labeled post with text, with its effective label as of ``revision``, oldest first."""
    labels = effective_labels().where(col(Label.revision) <= revision).subquery()
    rows = session.execute(
        sa_select(col(Post.id), col(Post.text), labels.c.is_legal, col(Source.name), col(Post.content_hash))
        .join(labels, labels.c.post_id == Post.id)
        .join(Source, col(Source.id) == Post.source_id)
        .where(col(Post.text) != "")
        .order_by(col(Post.id))
    ).all()
    return [
        LabeledPost(post_id, text, int(is_legal), source, digest)
        for post_id, text, is_legal, source, digest in rows
        if post_id is not None
    ]


def unlabeled_posts(session: Session, limit: int) -> list[UnlabeledPost]:
    """The newest ``limit`` posts with text and no label, one per text, for self-training.

    A post whose text some labeled post shares is left out: a cross-post of an evaluation post,
    pseudo-labeled into training, would grade the model on a post it has seen.
    """
    labeled = exists().where(col(Label.post_id) == col(Post.id))
    labeled_texts = sa_select(col(Post.content_hash)).where(labeled)
    rows = session.execute(
        sa_select(col(Post.id), col(Post.text), col(Post.content_hash))
        .where(col(Post.text) != "", ~labeled, col(Post.content_hash).not_in(labeled_texts))
        .order_by(col(Post.id).desc())
        .limit(limit)
    ).all()
    unique: dict[str, UnlabeledPost] = {}
    for post_id, text, digest in rows:
        unique.setdefault(digest, UnlabeledPost(post_id, text))
    return list(unique.values())


def hard_negative_ids(session: Session) -> set[int]:
    """Posts the model flagged and the lawyer's feedback, their effective verdict, called not legal."""
    labels = effective_labels().subquery()
    flagged = exists().where(
        col(Prediction.post_id) == labels.c.post_id, col(Prediction.label).is_(True)
    ) | exists().where(col(Notification.post_id) == labels.c.post_id)
    said_not_legal = exists().where(
        col(Label.post_id) == labels.c.post_id,
        col(Label.origin) == LabelOrigin.FEEDBACK,
        col(Label.is_legal).is_(False),
    )
    query = select(labels.c.post_id).where(labels.c.is_legal.is_(False), said_not_legal, flagged)
    return set(session.exec(query).all())


def freeze_evaluation_set(session: Session, posts: Sequence[LabeledPost], share: float) -> None:
    """Add new hard negatives; draw the holdout part once, the first time, and never again."""
    # Serialise: two trainings starting together must not each draw a holdout set.
    session.execute(select(func.pg_advisory_xact_lock(FREEZE_LOCK)))
    hard_negatives = hard_negative_ids(session)
    if hard_negatives:
        rows = [{"post_id": post_id, "reason": EvaluationReason.HARD_NEGATIVE} for post_id in hard_negatives]
        statement = insert(EvaluationPost).values(rows)
        # A holdout post that turns out to be a hard negative is relabelled, so the gate counts it.
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["post_id"], set_={"reason": statement.excluded.reason}
            )
        )
    holdout = select(func.count()).where(col(EvaluationPost.reason) == EvaluationReason.HOLDOUT)
    if session.exec(holdout).one():
        return
    hard_texts = {post.content_hash for post in posts if post.post_id in hard_negatives}
    candidates = _distinct(post for post in posts if post.content_hash not in hard_texts)
    _, chosen = stratified_split([post.label for post in candidates], share, EVALUATION_SEED)
    session.add_all(
        EvaluationPost(post_id=candidates[i].post_id, reason=EvaluationReason.HOLDOUT) for i in chosen
    )
    session.flush()


def _distinct(posts: Iterable[LabeledPost]) -> list[LabeledPost]:
    """The first post of each text: a cross-post is one example, not two."""
    unique: dict[str, LabeledPost] = {}
    for post in posts:
        unique.setdefault(post.content_hash, post)
    return list(unique.values())


def _require_per_class(posts: Sequence[LabeledPost], minimum: int, what: str) -> None:
    counts = class_counts(posts)
    if min(counts.values()) < minimum:
        raise TrainingDataError(
            f"training needs at least {minimum} {what} of each class; there are {counts['legal']} legal "
            f"and {counts['not_legal']} not legal. Import or label more posts first (lawscreen import)."
        )
