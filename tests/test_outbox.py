from __future__ import annotations

from sqlmodel import col, select

from lawscreen.database import transaction
from lawscreen.models import Chat, ModelVersion, Notification, SourceKind
from lawscreen.notify.outbox import Hit, enqueue_hits
from lawscreen.repo.posts import NewPost, upsert_posts
from lawscreen.repo.sources import ensure_source


def test_hits_become_alerts_or_digest_items_for_each_enabled_chat(database: str) -> None:
    with transaction() as session:
        session.add_all([Chat(chat_id=1), Chat(chat_id=2), Chat(chat_id=3, enabled=False)])
        model = ModelVersion(version="m1", base="tiny", artifact_path="/m", threshold=0.6)
        session.add(model)
        v2ex = ensure_source(session, "v2ex", SourceKind.V2EX).id
        tieba = ensure_source(session, "tieba", SourceKind.RSS).id
        assert v2ex is not None
        assert tieba is not None
        posts = upsert_posts(
            session,
            v2ex,
            [
                NewPost.build(external_id="1", title="", body_text="公司拖欠工资怎么办"),
                NewPost.build(external_id="2", title="", body_text="房东不退押金"),
            ],
        ).id_by_external_id
        copy = upsert_posts(
            session, tieba, [NewPost.build(external_id="9", title="", body_text="房东不退押金")]
        )
        session.flush()
        assert model.id is not None
        hits = [
            Hit(post_id=posts["1"], score=0.99, model_version_id=model.id),
            Hit(post_id=posts["2"], score=0.7, model_version_id=model.id),
            Hit(post_id=copy.new_ids[0], score=0.7, model_version_id=model.id),  # a cross-post
        ]
        assert enqueue_hits(session, hits, alert_threshold=0.95) == 4
        assert enqueue_hits(session, hits, alert_threshold=0.95) == 0  # never queued twice

    with transaction() as session:
        rows = session.exec(
            select(
                Notification.chat_id, Notification.post_id, Notification.kind, Notification.status
            ).order_by(col(Notification.chat_id), col(Notification.post_id))
        ).all()
    assert rows == [
        (1, posts["1"], "alert", "pending"),
        (1, posts["2"], "digest_item", "pending"),
        (2, posts["1"], "alert", "pending"),
        (2, posts["2"], "digest_item", "pending"),
    ]


def test_no_chats_means_no_rows(database: str) -> None:
    with transaction() as session:
        source = ensure_source(session, "v2ex", SourceKind.V2EX).id
        assert source
        post = upsert_posts(session, source, [NewPost.build(external_id="1", title="", body_text="工伤认定")])
        model = ModelVersion(version="m1", base="tiny", artifact_path="/m", threshold=0.5)
        session.add(model)
        session.flush()
        assert model.id is not None
        hit = Hit(post_id=post.new_ids[0], score=0.99, model_version_id=model.id)
        assert enqueue_hits(session, [hit], alert_threshold=0.9) == 0
