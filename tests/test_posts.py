from __future__ import annotations

import threading

import pytest
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from lawscreen.database import transaction
from lawscreen.models import ModelStatus, ModelVersion, Post, Prediction, PredictionStatus, SourceKind
from lawscreen.repo.posts import NewPost, upsert_posts
from lawscreen.repo.sources import ensure_source
from lawscreen.text import normalize


def _post(external_id: str, body: str, title: str = "标题") -> NewPost:
    return NewPost.build(external_id=external_id, title=title, body_text=body)


def _source(name: str) -> int:
    with transaction() as session:
        source_id = ensure_source(session, name, SourceKind.JSONL).id
    assert source_id is not None
    return source_id


def _model(session: Session, version: str = "m1", status: ModelStatus = ModelStatus.CANDIDATE) -> int:
    model = ModelVersion(version=version, status=status, base="tiny", artifact_path="/x", threshold=0.5)
    session.add(model)
    session.flush()
    assert model.id is not None
    return model.id


def test_new_edited_and_unchanged_posts(database: str) -> None:
    source = _source("forum")
    with transaction() as session:
        first = upsert_posts(session, source, [_post("1", "房东不退押金怎么办"), _post("2", "路由器推荐")])
    assert len(first.new_ids) == 2
    assert first.edited_ids == []

    with transaction() as session:
        again = upsert_posts(
            session, source, [_post("1", "房东不退押金怎么办"), _post("2", "路由器推荐一下，预算300")]
        )
    assert again.new_ids == []
    assert again.edited_ids == [first.id_by_external_id["2"]]
    assert again.unchanged == 1
    assert again.id_by_external_id == first.id_by_external_id  # ids for unchanged rows too

    with transaction() as session:
        text = session.exec(select(Post.text).where(Post.id == first.id_by_external_id["2"])).one()
    assert text == "标题\n路由器推荐一下,预算300"  # NFKC turned the full-width comma into ','


def test_an_edited_post_loses_its_predictions(database: str) -> None:
    source = _source("forum")
    with transaction() as session:
        ids = upsert_posts(session, source, [_post("1", "原文"), _post("2", "别的帖子")]).id_by_external_id
        model_id = _model(session)
        for post_id in ids.values():
            session.add(
                Prediction(
                    post_id=post_id,
                    model_version_id=model_id,
                    status=PredictionStatus.SCORED,
                    score=0.9,
                    label=True,
                )
            )
    with transaction() as session:
        upsert_posts(session, source, [_post("1", "修改后的内容"), _post("2", "别的帖子")])
    with transaction() as session:
        remaining = session.exec(select(Prediction.post_id)).all()
    assert remaining == [ids["2"]]


def test_duplicate_ids_in_one_batch_keep_the_last_copy(database: str) -> None:
    source = _source("forum")
    with transaction() as session:
        result = upsert_posts(session, source, [_post("1", "第一版"), _post("1", "第二版")])
    assert len(result.new_ids) == 1
    with transaction() as session:
        assert session.exec(select(Post.text)).all() == ["标题\n第二版"]


def test_same_content_on_another_source_is_linked_as_a_cross_post(database: str) -> None:
    v2ex, tieba = _source("v2ex"), _source("tieba")
    question = "公司拖欠工资三个月，可以申请劳动仲裁吗？"
    with transaction() as session:
        original = upsert_posts(session, v2ex, [_post("a", question)]).new_ids[0]
    with transaction() as session:
        # Full-width vs half-width punctuation and stray spaces do not hide a cross-post.
        copy = upsert_posts(session, tieba, [_post("b", "  公司拖欠工资三个月,可以申请劳动仲裁吗?")]).new_ids[
            0
        ]
        unrelated = upsert_posts(session, tieba, [_post("c", "显卡推荐")]).new_ids[0]
    with transaction() as session:
        links = dict(session.exec(select(Post.id, Post.duplicate_of_id)).all())
    assert links == {original: None, copy: original, unrelated: None}

    with transaction() as session:  # the original is edited: the copy no longer matches it
        upsert_posts(session, v2ex, [_post("a", "问题已解决，谢谢大家")])
    with transaction() as session:
        assert session.exec(select(Post.duplicate_of_id).where(Post.id == copy)).one() is None


def test_a_repost_on_the_same_forum_is_linked_too(database: str) -> None:
    forum = _source("forum")
    question = "房东不退押金，可以起诉吗？"
    with transaction() as session:
        first, repost = upsert_posts(session, forum, [_post("1", question), _post("2", question)]).new_ids
    with transaction() as session:
        links = dict(session.exec(select(Post.id, Post.duplicate_of_id)).all())
    assert links == {first: None, repost: first}


def test_empty_posts_are_never_cross_posts(database: str) -> None:
    a, b = _source("a"), _source("b")
    with transaction() as session:
        upsert_posts(session, a, [NewPost.build(external_id="1", title="", body_text="  ")])
        upsert_posts(session, b, [NewPost.build(external_id="1", title="", body_text="\u200b")])
    with transaction() as session:
        assert session.exec(select(Post.duplicate_of_id)).all() == [None, None]


def test_concurrent_upserts_of_one_source_leave_one_row_per_post(database: str) -> None:
    source = _source("forum")
    batch = [_post(str(i), f"帖子 {i}") for i in range(300)]
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def crawl() -> None:
        try:
            barrier.wait()
            with transaction() as session:
                upsert_posts(session, source, batch)
        except BaseException as exc:  # reported below; a thread cannot fail the test itself
            errors.append(exc)

    threads = [threading.Thread(target=crawl) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with transaction() as session:
        assert session.exec(select(func.count()).select_from(Post)).one() == 300


def test_the_database_allows_one_production_model(database: str) -> None:
    with transaction() as session:
        _model(session, "m1", ModelStatus.PRODUCTION)
        _model(session, "m2", ModelStatus.CANDIDATE)
    with pytest.raises(IntegrityError, match="uq_model_versions_one_production"), transaction() as session:
        _model(session, "m3", ModelStatus.PRODUCTION)
    with transaction() as session:
        statuses = session.exec(select(ModelVersion.status).order_by(col(ModelVersion.version))).all()
    assert statuses == ["production", "candidate"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  多余   空格\t和\r\n换行  ", "多余 空格 和\n换行"),
        ("ＡＢＣ１２３，全角", "ABC123,全角"),
        ("零宽\u200b字符\ufeff和\x07控制符", "零宽字符和控制符"),
        ("第一段\n\n\n\n第二段", "第一段\n\n第二段"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected
