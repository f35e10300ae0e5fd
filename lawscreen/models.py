"""Every table, in one place. Migrations in ``migrations/`` must match this file (a test checks).

    sources ──< crawl_runs, crawl_rejects
       │
       └──< posts ──< predictions >── model_versions
              │  └──< labels             (training data: imports and feedback)
              │  └──  evaluation_posts   (the frozen evaluation set)
              └──< notifications >── chats   (the outbox; a digest groups its items)
    retrain_requests                          (manual triggers, one per label snapshot)

Status-like columns are short strings checked against the ``StrEnum`` beside them rather than
native PostgreSQL enums, so adding a value is a one-line migration of a CHECK constraint.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    Index,
    MetaData,
    Sequence,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

# Stable constraint names, so migrations can refer to them and autogenerate never renames them.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata: MetaData = SQLModel.metadata

# Every label insert or change draws a new number: "labels since the model's snapshot" is then
# ``revision > snapshot``, immune to clock skew and to concurrent writers.
label_revision_seq = Sequence("label_revision_seq", metadata=metadata)


class SourceKind(StrEnum):
    V2EX = "v2ex"
    DISCOURSE = "discourse"
    RSS = "rss"
    JSONL = "jsonl"
    IMPORT = "import"


class PredictionStatus(StrEnum):
    SCORED = "scored"
    SKIPPED_EMPTY = "skipped_empty"


class LabelOrigin(StrEnum):
    IMPORT = "import"
    FEEDBACK = "feedback"
    MANUAL = "manual"


class ModelStatus(StrEnum):
    CANDIDATE = "candidate"
    PRODUCTION = "production"
    RETIRED = "retired"


class EvaluationReason(StrEnum):
    HOLDOUT = "holdout"
    HARD_NEGATIVE = "hard_negative"


class NotificationKind(StrEnum):
    ALERT = "alert"  # sent at once
    DIGEST_ITEM = "digest_item"  # waits for the chat's next digest
    DIGEST = "digest"  # the digest message itself; its items point at it
    # A post near the decision threshold shown in a digest's "please label" section (active
    # learning). A row of its own, so the post is never asked about twice in one chat.
    LABEL_REQUEST = "label_request"


class NotificationStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"  # claimed under a lease by a relay
    SENT = "sent"
    UNCERTAIN = "uncertain"  # may have been delivered; never resent automatically
    FAILED = "failed"
    CANCELLED = "cancelled"


class RetrainStatus(StrEnum):
    REQUESTED = "requested"
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"


def _one_of(column: str, values: type[StrEnum]) -> CheckConstraint:
    allowed = ", ".join(f"'{value}'" for value in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=f"{column}_valid")


def _timestamp(*, nullable: bool = True, now: bool = False) -> Any:
    kwargs: dict[str, Any] = {"server_default": func.now()} if now else {}
    return Field(default=None, sa_type=DateTime(timezone=True), nullable=nullable, sa_column_kwargs=kwargs)


def _jsonb() -> Any:
    return Field(default_factory=dict, sa_type=JSONB, sa_column_kwargs={"server_default": text("'{}'")})


class Source(SQLModel, table=True):
    __tablename__ = "sources"
    __table_args__ = (_one_of("kind", SourceKind),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_type=String(100), unique=True)
    kind: str = Field(sa_type=String(16))
    config: dict[str, Any] = _jsonb()
    # Incremental state owned by the source's fetcher: last seen ids, ETag/Last-Modified, robots.txt.
    cursor: dict[str, Any] = _jsonb()
    enabled: bool = Field(default=True, sa_column_kwargs={"server_default": text("true")})
    last_run_at: datetime | None = _timestamp()
    last_success_at: datetime | None = _timestamp()
    consecutive_failures: int = Field(default=0, sa_column_kwargs={"server_default": text("0")})
    last_error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime | None = _timestamp(nullable=False, now=True)


class CrawlRun(SQLModel, table=True):
    __tablename__ = "crawl_runs"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInteger)
    source_id: int = Field(foreign_key="sources.id", ondelete="CASCADE", index=True)
    started_at: datetime | None = _timestamp(nullable=False, now=True)
    finished_at: datetime | None = _timestamp()
    ok: bool | None = None
    new: int = 0
    updated: int = 0
    skipped: int = 0
    error: str | None = Field(default=None, sa_type=Text)


class CrawlReject(SQLModel, table=True):
    """An item or response a fetcher refused, with why: bad input is skipped, never silently."""

    __tablename__ = "crawl_rejects"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInteger)
    source_id: int = Field(foreign_key="sources.id", ondelete="CASCADE", index=True)
    crawl_run_id: int | None = Field(
        default=None, sa_type=BigInteger, foreign_key="crawl_runs.id", ondelete="SET NULL"
    )
    seen_at: datetime | None = _timestamp(nullable=False, now=True)
    url: str | None = Field(default=None, sa_type=Text)
    external_id: str | None = Field(default=None, sa_type=String(200))
    reason: str = Field(sa_type=String(64))
    detail: str | None = Field(default=None, sa_type=Text)


class Post(SQLModel, table=True):
    __tablename__ = "posts"
    __table_args__ = (UniqueConstraint("source_id", "external_id"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInteger)
    source_id: int = Field(foreign_key="sources.id", ondelete="CASCADE")
    external_id: str = Field(sa_type=String(200))
    url: str | None = Field(default=None, sa_type=Text)
    title: str = Field(default="", sa_type=Text)
    body_raw: str = Field(default="", sa_type=Text)  # as fetched (HTML or text), kept for re-parsing
    # What the model reads: normalized title and body (see lawscreen.text.post_text).
    text: str = Field(default="", sa_type=Text)
    content_hash: str = Field(sa_type=String(64), index=True)
    author: str | None = Field(default=None, sa_type=String(200))
    posted_at: datetime | None = _timestamp()
    edited_at: datetime | None = _timestamp()
    fetched_at: datetime | None = _timestamp(nullable=False, now=True)
    # The first post with the same content (on another forum, or reposted on the same one):
    # the question is notified once.
    duplicate_of_id: int | None = Field(
        default=None, sa_type=BigInteger, foreign_key="posts.id", ondelete="SET NULL", index=True
    )


class ModelVersion(SQLModel, table=True):
    __tablename__ = "model_versions"
    __table_args__ = (
        _one_of("status", ModelStatus),
        # The database itself refuses a second production model.
        Index(
            "uq_model_versions_one_production",
            "status",
            unique=True,
            postgresql_where=text("status = 'production'"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    version: str = Field(sa_type=String(64), unique=True)
    status: str = Field(default=ModelStatus.CANDIDATE, sa_type=String(16))
    base: str = Field(sa_type=Text)
    artifact_path: str = Field(sa_type=Text)
    threshold: float = Field(sa_type=Float)
    metrics: dict[str, Any] = _jsonb()
    data_snapshot: dict[str, Any] = _jsonb()
    label_revision: int = Field(default=0, sa_type=BigInteger)  # newest label revision trained on
    gate_reason: str | None = Field(default=None, sa_type=Text)
    created_at: datetime | None = _timestamp(nullable=False, now=True)
    promoted_at: datetime | None = _timestamp()


class Prediction(SQLModel, table=True):
    __tablename__ = "predictions"
    __table_args__ = (
        UniqueConstraint("post_id", "model_version_id"),
        _one_of("status", PredictionStatus),
        CheckConstraint(
            "(status = 'scored') = (score IS NOT NULL AND label IS NOT NULL)", name="scored_has_score"
        ),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInteger)
    post_id: int = Field(sa_type=BigInteger, foreign_key="posts.id", ondelete="CASCADE")
    model_version_id: int = Field(foreign_key="model_versions.id", ondelete="CASCADE", index=True)
    status: str = Field(sa_type=String(16))
    score: float | None = Field(default=None, sa_type=Float)
    label: bool | None = None
    created_at: datetime | None = _timestamp(nullable=False, now=True)


class Label(SQLModel, table=True):
    """A verdict on a post. One per (post, origin, chat): a changed mind overwrites, keeping the latest."""

    __tablename__ = "labels"
    __table_args__ = (
        _one_of("origin", LabelOrigin),
        UniqueConstraint("post_id", "origin", "chat_id", postgresql_nulls_not_distinct=True),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInteger)
    post_id: int = Field(sa_type=BigInteger, foreign_key="posts.id", ondelete="CASCADE")
    is_legal: bool
    origin: str = Field(sa_type=String(16))
    chat_id: int | None = Field(default=None, sa_type=BigInteger)
    user_id: int | None = Field(default=None, sa_type=BigInteger)
    annotator: str | None = Field(default=None, sa_type=String(200))  # file name, username, ...
    revision: int | None = Field(
        default=None,
        sa_type=BigInteger,
        nullable=False,
        index=True,
        sa_column_kwargs={"server_default": label_revision_seq.next_value()},
    )
    created_at: datetime | None = _timestamp(nullable=False, now=True)
    updated_at: datetime | None = _timestamp(nullable=False, now=True)


class EvaluationPost(SQLModel, table=True):
    """The frozen evaluation set: chosen once, extended only by hard negatives, never trained on."""

    __tablename__ = "evaluation_posts"
    __table_args__ = (_one_of("reason", EvaluationReason),)

    post_id: int = Field(sa_type=BigInteger, primary_key=True, foreign_key="posts.id", ondelete="CASCADE")
    reason: str = Field(sa_type=String(16))
    added_at: datetime | None = _timestamp(nullable=False, now=True)


class Chat(SQLModel, table=True):
    __tablename__ = "chats"

    chat_id: int = Field(sa_type=BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False})
    title: str | None = Field(default=None, sa_type=Text)
    enabled: bool = Field(default=True, sa_column_kwargs={"server_default": text("true")})
    paused: bool = Field(default=False, sa_column_kwargs={"server_default": text("false")})
    disabled_reason: str | None = Field(default=None, sa_type=Text)  # e.g. the bot was blocked (403)
    timezone: str = Field(
        default="Asia/Shanghai", sa_type=String(64), sa_column_kwargs={"server_default": "Asia/Shanghai"}
    )
    digest_times: list[str] = Field(
        default_factory=lambda: ["09:00", "18:00"],
        sa_type=JSONB,
        sa_column_kwargs={"server_default": text('\'["09:00", "18:00"]\'')},
    )
    digest_limit: int = Field(default=10, sa_column_kwargs={"server_default": text("10")})
    created_at: datetime | None = _timestamp(nullable=False, now=True)


class Notification(SQLModel, table=True):
    """The outbox. Written in the transaction that decides to notify; a relay delivers it later."""

    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("chat_id", "post_id"),
        UniqueConstraint("chat_id", "digest_key"),
        _one_of("kind", NotificationKind),
        _one_of("status", NotificationStatus),
        CheckConstraint("(post_id IS NULL) <> (digest_key IS NULL)", name="post_or_digest"),
        Index("ix_notifications_due", "status", "not_before"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInteger)
    chat_id: int = Field(sa_type=BigInteger, foreign_key="chats.chat_id", ondelete="CASCADE")
    kind: str = Field(sa_type=String(16))
    post_id: int | None = Field(default=None, sa_type=BigInteger, foreign_key="posts.id", ondelete="CASCADE")
    digest_key: str | None = Field(default=None, sa_type=String(64))
    digest_id: int | None = Field(
        default=None, sa_type=BigInteger, foreign_key="notifications.id", ondelete="SET NULL", index=True
    )
    model_version_id: int | None = Field(default=None, foreign_key="model_versions.id", ondelete="SET NULL")
    score: float | None = Field(default=None, sa_type=Float)
    status: str = Field(default=NotificationStatus.PENDING, sa_type=String(16))
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": text("0")})
    not_before: datetime | None = _timestamp(nullable=False, now=True)
    lease_owner: str | None = Field(default=None, sa_type=String(64))
    lease_expires_at: datetime | None = _timestamp()
    telegram_message_id: int | None = Field(default=None, sa_type=BigInteger)
    last_error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime | None = _timestamp(nullable=False, now=True)
    sent_at: datetime | None = _timestamp()


class RetrainRequest(SQLModel, table=True):
    """A manual retrain trigger. Unique per label snapshot: asking twice starts one retrain."""

    __tablename__ = "retrain_requests"
    __table_args__ = (_one_of("status", RetrainStatus),)

    id: int | None = Field(default=None, primary_key=True)
    label_revision: int = Field(sa_type=BigInteger, unique=True)
    requested_by: str = Field(sa_type=String(200))
    status: str = Field(default=RetrainStatus.REQUESTED, sa_type=String(16))
    flow_run_id: str | None = Field(default=None, sa_type=String(64))
    created_at: datetime | None = _timestamp(nullable=False, now=True)
