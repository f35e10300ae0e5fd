"""Storing posts: one batched upsert used by the importer and every crawler source."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Boolean, bindparam, delete, literal_column, text
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Session, col, select

from lawscreen.models import Post, Prediction
from lawscreen.text import content_hash, post_text

# Rows per INSERT statement: well under PostgreSQL's 65,535 bind parameters (11 per row) and
# large enough that round trips stop mattering.
UPSERT_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class NewPost:
    """A post as a source delivers it, with its normalized text already computed (see ``build``)."""

    external_id: str
    text: str
    title: str = ""
    body_raw: str = ""
    url: str | None = None
    author: str | None = None
    posted_at: datetime | None = None
    edited_at: datetime | None = None

    @classmethod
    def build(
        cls,
        *,
        external_id: str,
        title: str,
        body_text: str,
        body_raw: str | None = None,
        url: str | None = None,
        author: str | None = None,
        posted_at: datetime | None = None,
        edited_at: datetime | None = None,
    ) -> NewPost:
        """``body_text`` is the plain-text body; ``body_raw`` what was fetched (defaults to the text)."""
        return cls(
            external_id=external_id,
            text=post_text(title, body_text),
            title=title,
            body_raw=body_text if body_raw is None else body_raw,
            url=url,
            author=author,
            posted_at=posted_at,
            edited_at=edited_at,
        )


@dataclass
class UpsertResult:
    id_by_external_id: dict[str, int] = field(default_factory=dict)  # every post of the batch
    new_ids: list[int] = field(default_factory=list)
    edited_ids: list[int] = field(default_factory=list)

    @property
    def changed_ids(self) -> list[int]:
        return self.new_ids + self.edited_ids

    @property
    def unchanged(self) -> int:
        return len(self.id_by_external_id) - len(self.new_ids) - len(self.edited_ids)


def upsert_posts(session: Session, source_id: int, posts: Iterable[NewPost]) -> UpsertResult:
    """Insert new posts, update those whose content changed, leave identical ones untouched.

    An edited post loses its predictions so the classifier scores it again. New and edited posts
    are then linked to an earlier copy of the same content (a cross-post, or a repost on the same forum).
    Within one batch the last copy of an external id wins: ON CONFLICT cannot touch a row twice.
    """
    unique = list({post.external_id: post for post in posts}.values())
    result = UpsertResult()
    for start in range(0, len(unique), UPSERT_CHUNK):
        _upsert_chunk(session, source_id, unique[start : start + UPSERT_CHUNK], result)
    if result.edited_ids:
        session.execute(delete(Prediction).where(col(Prediction.post_id).in_(result.edited_ids)))
    _link_cross_posts(session, result.changed_ids, result.edited_ids)
    return result


_POSTS = Post.metadata.tables["posts"]
_INSERT = insert(_POSTS)
# Built once: executed with a list of rows, SQLAlchemy sends it as multi-row INSERTs from one cached
# compilation ("insertmanyvalues"); a statement built per call with .values(rows) costs a fresh
# compilation of thousands of bind parameters every time, which dominated the cost of a crawl.
_UPSERT = _INSERT.on_conflict_do_update(
    index_elements=["source_id", "external_id"],
    set_={
        **{
            name: _INSERT.excluded[name]
            for name in ("url", "title", "body_raw", "text", "content_hash", "author", "edited_at")
        },
        "fetched_at": text("now()"),
    },
    where=_POSTS.c.content_hash.is_distinct_from(_INSERT.excluded.content_hash),
).returning(_POSTS.c.id, _POSTS.c.external_id, literal_column("xmax = 0", Boolean).label("inserted"))


def _upsert_chunk(session: Session, source_id: int, chunk: Sequence[NewPost], result: UpsertResult) -> None:
    rows = [
        {
            "source_id": source_id,
            "external_id": post.external_id,
            "url": post.url,
            "title": post.title,
            "body_raw": post.body_raw,
            "text": post.text,
            "content_hash": content_hash(post.text),
            "author": post.author,
            "posted_at": post.posted_at,
            "edited_at": post.edited_at,
        }
        for post in chunk
    ]
    # xmax = 0 marks a row this statement inserted; an updated row carries our transaction id.
    for post_id, external_id, inserted in session.execute(_UPSERT, rows).all():
        result.id_by_external_id[external_id] = post_id
        (result.new_ids if inserted else result.edited_ids).append(post_id)

    # Unchanged rows are not returned by the upsert; they exist now (a concurrent insert of the same
    # key made ON CONFLICT wait for its commit), so one SELECT finds them.
    unchanged = [post.external_id for post in chunk if post.external_id not in result.id_by_external_id]
    if unchanged:
        found = session.exec(
            select(col(Post.external_id), col(Post.id)).where(
                col(Post.source_id) == source_id, col(Post.external_id).in_(unchanged)
            )
        ).all()
        result.id_by_external_id.update((external_id, post_id) for external_id, post_id in found if post_id)


# Only rows whose link changes are written. The candidates are found through the primary key and
# the duplicate_of_id index; coalesce() keeps the planner from ANDing that index into each probe for
# an original (with statistics still stale after a bulk insert it did, scanning every unlinked post
# per probe): the content_hash index alone is selective.
_LINK_CROSS_POSTS = text(
    """
    UPDATE posts AS p SET duplicate_of_id = link.original
    FROM (
        SELECT t.id, (
            SELECT min(o.id) FROM posts AS o
            WHERE o.content_hash = t.content_hash
              AND o.id < t.id AND coalesce(o.duplicate_of_id, 0) = 0
        ) AS original
        FROM posts AS t
        WHERE t.id IN (
            SELECT unnest(CAST(:ids AS bigint[]))
            UNION ALL SELECT id FROM posts WHERE duplicate_of_id = ANY(CAST(:edited AS bigint[]))
        )
          AND t.text <> ''
    ) AS link
    WHERE p.id = link.id AND p.duplicate_of_id IS DISTINCT FROM link.original
    """
).bindparams(bindparam("ids"), bindparam("edited"))


def _link_cross_posts(session: Session, ids: list[int], edited_ids: list[int]) -> None:
    # Links always point to an older post, so they can never form a cycle. Posts that pointed at an
    # edited post are re-linked too, since their original may no longer match.
    if ids:
        session.execute(_LINK_CROSS_POSTS, {"ids": ids, "edited": edited_ids})
