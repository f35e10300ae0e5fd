"""The classification stage: chunks, idempotence, skipped posts, outbox, concurrent workers."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, text
from sqlmodel import col, select

from lawscreen.artifacts import ONNX_FILE
from lawscreen.classify import ClassifyReport, classify_pending
from lawscreen.database import transaction
from lawscreen.errors import ModelArtifactError, ModelNotFoundError
from lawscreen.inference import Classifier
from lawscreen.models import Chat, ModelStatus, ModelVersion, Notification, Post, Prediction, SourceKind
from lawscreen.notify.outbox import enqueue_hits
from lawscreen.repo.predictions import Shard
from lawscreen.repo.sources import ensure_source
from lawscreen.text import post_text
from tests.model_fixtures import add_posts, copy_model, shared_model, synthetic_posts


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_model(tmp_path_factory)


def register(model_dir: Path, version: str = "m1", *, production: bool = True, threshold: float = 0.5) -> int:
    with transaction() as session:
        model = ModelVersion(
            version=version,
            status=ModelStatus.PRODUCTION if production else ModelStatus.CANDIDATE,
            base="tiny",
            artifact_path=str(model_dir),
            threshold=threshold,
        )
        session.add(model)
        session.flush()
        assert model.id is not None
        return model.id


def count(model: type[Any]) -> int:
    with transaction() as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


def test_scores_every_unscored_post_once_in_chunks_and_a_second_run_writes_nothing(
    database: str, model_dir: Path
) -> None:
    texts, labels = synthetic_posts(30, seed=2)
    ids = add_posts(texts)
    model_id = register(model_dir)
    progress: list[int] = []

    report = classify_pending(chunk_size=7, on_progress=lambda r: progress.append(r.processed))

    assert (report.scored, report.skipped_empty, report.chunks, report.pending_at_start) == (30, 0, 5, 30)
    assert progress == [7, 14, 21, 28, 30]
    with transaction() as session:
        rows = session.exec(
            select(Prediction.post_id, Prediction.score, Prediction.label, Prediction.status).where(
                Prediction.model_version_id == model_id
            )
        ).all()
    by_post = {post_id: (score, label, status) for post_id, score, label, status in rows}
    expected = Classifier.load(model_dir).score(texts)
    for post_id, score, label in zip(ids, expected, labels, strict=True):
        stored_score, stored_label, status = by_post[post_id]
        assert status == "scored"
        assert stored_score == pytest.approx(score, abs=1e-6)
        assert stored_label == (score >= 0.5) == bool(label)  # the tiny model gets these right

    again = classify_pending(chunk_size=7)
    assert (again.processed, again.chunks, again.pending_at_start) == (0, 0, 0)
    assert count(Prediction) == 30


def test_empty_and_whitespace_posts_are_skipped_without_a_score(database: str, model_dir: Path) -> None:
    add_posts(["房东不退押金，能起诉吗？"])
    with transaction() as session:
        source_id = ensure_source(session, "forum", SourceKind.JSONL).id
        assert source_id is not None
        # Text as stored by an older importer or a crawler bug: empty, or only whitespace.
        for external_id, body in (("empty", ""), ("blank", " \n\t\u3000 ")):
            session.add(
                Post(source_id=source_id, external_id=external_id, text=body, content_hash=external_id)
            )
    register(model_dir)

    report = classify_pending()

    assert (report.scored, report.skipped_empty) == (1, 2)
    with transaction() as session:
        rows = session.exec(select(Prediction.status, Prediction.score, Prediction.label)).all()
    statuses = sorted((status, score is None, label is None) for status, score, label in rows)
    skipped = ("skipped_empty", True, True)
    assert statuses == [("scored", False, False), skipped, skipped]
    assert classify_pending().processed == 0


def test_hits_queue_notifications_in_the_same_transaction(database: str, model_dir: Path) -> None:
    with transaction() as session:
        session.add_all([Chat(chat_id=1), Chat(chat_id=2)])
    legal, other = add_posts(["公司拖欠工资三个月，能起诉吗？", "周末想去海边旅游，求推荐"])
    model_id = register(model_dir)

    report = classify_pending()

    assert (report.scored, report.hits, report.notifications) == (2, 1, 2)
    with transaction() as session:
        queued = session.exec(
            select(Notification.chat_id, Notification.post_id, Notification.model_version_id).order_by(
                col(Notification.chat_id)
            )
        ).all()
    assert queued == [(1, legal, model_id), (2, legal, model_id)]
    assert other not in {post_id for _, post_id, _ in queued}


def test_a_failure_after_the_outbox_write_rolls_back_predictions_and_notifications(
    database: str, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with transaction() as session:
        session.add(Chat(chat_id=1))
    add_posts(["公司拖欠工资三个月，能起诉吗？", "房东不退押金，需要请律师吗？"])
    register(model_dir)
    real = enqueue_hits
    written: list[int] = []

    def enqueue_then_fail(*args: Any, **kwargs: Any) -> int:
        written.append(real(*args, **kwargs))
        raise RuntimeError("connection lost after the outbox write")

    monkeypatch.setattr("lawscreen.classify.enqueue_hits", enqueue_then_fail)
    with pytest.raises(RuntimeError, match="connection lost"):
        classify_pending()
    assert written == [2]  # the rows were written inside the transaction...
    assert count(Prediction) == count(Notification) == 0  # ...and rolled back with the predictions

    monkeypatch.setattr("lawscreen.classify.enqueue_hits", real)
    assert classify_pending().notifications == 2


def test_concurrent_workers_never_score_a_post_twice(
    database: str, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [f"{t} #{i}" for i, t in enumerate(synthetic_posts(120, seed=5)[0])]  # all distinct
    add_posts(texts)
    register(model_dir)
    scored: list[str] = []
    lock = threading.Lock()
    real_score = Classifier.score

    def recording_score(self: Classifier, batch: Sequence[str]) -> Any:
        with lock:
            scored.extend(batch)
        time.sleep(0.05)  # hold the claim a while, so that the workers really overlap
        return real_score(self, batch)

    monkeypatch.setattr(Classifier, "score", recording_score)
    workers = 4
    start = threading.Barrier(workers)
    reports: list[ClassifyReport] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait()
            reports.append(classify_pending(chunk_size=5))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors
    assert len(reports) == workers
    assert all(report.scored > 0 for report in reports), [r.scored for r in reports]  # all took part
    duplicates = [t for t, n in Counter(scored).items() if n > 1]
    assert duplicates == []  # no post's text was ever given to the model twice
    assert sorted(scored) == sorted(post_text("", t) for t in texts)  # as stored: normalized
    assert sum(report.scored for report in reports) == len(texts)
    assert count(Prediction) == len(texts)


def test_shards_split_the_backlog_without_overlap(database: str, model_dir: Path) -> None:
    ids = add_posts(synthetic_posts(20, seed=6)[0])
    model_id = register(model_dir)
    first = classify_pending(shard=Shard(0, 3))
    assert first.scored == sum(1 for i in ids if i % 3 == 0)
    with transaction() as session:
        done = set(session.exec(select(Prediction.post_id)).all())
    assert done == {i for i in ids if i % 3 == 0}
    classify_pending(shard=Shard.parse("1/3"))
    classify_pending(shard=Shard(2, 3))
    with transaction() as session:
        rows = session.exec(select(Prediction.post_id).where(Prediction.model_version_id == model_id)).all()
    assert sorted(rows) == sorted(ids)
    with pytest.raises(ValueError, match="INDEX/COUNT"):
        Shard.parse("3")
    with pytest.raises(ValueError, match="0 <= INDEX < COUNT"):
        Shard.parse("3/3")


def test_a_named_candidate_model_is_scored_without_notifying(database: str, model_dir: Path) -> None:
    with transaction() as session:
        session.add(Chat(chat_id=1))
    add_posts(["公司拖欠工资三个月，能起诉吗？"])
    register(model_dir, "prod")
    candidate = register(model_dir, "cand", production=False)

    report = classify_pending(model_version="cand", limit=1)

    assert (report.model_version, report.scored, report.hits, report.notify) == ("cand", 1, 1, False)
    assert count(Notification) == 0
    with transaction() as session:
        [(model_version_id,)] = session.execute(text("SELECT model_version_id FROM predictions")).all()
    assert model_version_id == candidate
    assert classify_pending().notifications == 1  # the production model's run does notify


def test_the_limit_stops_a_run(database: str, model_dir: Path) -> None:
    add_posts(synthetic_posts(10)[0])
    register(model_dir)
    assert classify_pending(limit=4, chunk_size=3).processed == 4
    assert classify_pending().processed == 6


def test_no_production_model_is_a_clear_error(database: str) -> None:
    add_posts(["房东不退押金"])
    with pytest.raises(ModelNotFoundError, match="there is no production model"):
        classify_pending()
    with pytest.raises(ModelNotFoundError, match="no model version 'nope'"):
        classify_pending(model_version="nope")


def test_a_broken_model_file_fails_before_anything_is_written(
    database: str, model_dir: Path, tmp_path: Path
) -> None:
    broken = copy_model(model_dir, tmp_path / "broken")
    (broken / ONNX_FILE).write_bytes(b"\x08\x07garbage")
    add_posts(["房东不退押金"])
    register(broken)
    with pytest.raises(ModelArtifactError, match=r"cannot load .*model\.onnx"):
        classify_pending()
    (broken / ONNX_FILE).unlink()
    with pytest.raises(ModelArtifactError, match=r"model\.onnx is missing"):
        classify_pending()
    assert count(Prediction) == 0


def test_scores_are_those_of_the_stored_text(database: str, model_dir: Path) -> None:
    """The stage reads posts.text, the normalized title and body the model was trained on."""
    [post_id] = add_posts(["  房东不退押金\u200b，能起诉吗？  "])
    register(model_dir)
    classify_pending()
    with transaction() as session:
        stored_text = session.exec(select(Post.text).where(Post.id == post_id)).one()
        score = session.exec(select(Prediction.score)).one()
    assert score is not None
    assert score == pytest.approx(float(Classifier.load(model_dir).score([stored_text])[0]), abs=1e-6)


def test_a_claimed_post_scored_meanwhile_by_another_worker_is_dropped_before_scoring(
    database: str, model_dir: Path
) -> None:
    """The race ``unscored_among`` closes: a claim's snapshot predates another worker's commit.

    Simulated directly: while this transaction holds its claim, another transaction stores a
    prediction for one of the claimed posts and commits (it is not blocked: the claim's NO KEY
    UPDATE lock lets foreign-key inserts through). The re-check, run after the lock is held,
    sees that prediction.
    """
    from lawscreen.models import PredictionStatus
    from lawscreen.repo.predictions import NewPrediction, claim_unscored, insert_predictions, unscored_among

    first, second = add_posts(["房东不退押金", "工资拖欠"])
    model_id = register(model_dir)
    with transaction() as claiming:
        claimed = claim_unscored(claiming, model_id, limit=10)
        assert [post.id for post in claimed] == [first, second]
        with transaction() as other:
            assert claim_unscored(other, model_id, limit=10) == []  # both skipped: locked
            insert_predictions(other, model_id, [NewPrediction(first, PredictionStatus.SKIPPED_EMPTY)])
        assert unscored_among(claiming, model_id, [first, second]) == {second}
