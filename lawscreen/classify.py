"""The classification stage: score every post that has no prediction for a model.

``classify_pending()`` is what the hourly flow's task and ``lawscreen classify-pending`` call. It
works in chunks, each in one transaction:

1. claim up to ``chunk_size`` posts with no prediction for the model, ``FOR NO KEY UPDATE SKIP
   LOCKED`` (``lawscreen.repo.predictions``), and re-check them once the locks are held;
2. score the non-empty ones with the ONNX classifier; empty or whitespace-only posts get a
   ``skipped_empty`` prediction and no score;
3. insert the predictions (``ON CONFLICT DO NOTHING``);
4. hand the hits (score ≥ the model's threshold) to ``enqueue_hits``: their outbox rows are
   written in the same transaction, so a prediction and its notifications commit together or not
   at all;
5. commit, which releases the claimed posts.

Any number of workers may run at once (threads, processes, machines): a post locked by one is
skipped by the others, and none scores a post another has already scored. ``shard`` gives each
worker of a large rescore a disjoint share of the backlog; see ``classify_pending``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlmodel import Session, select

from lawscreen.artifacts import ONNX_FILE, ONNX_INT8_FILE
from lawscreen.database import transaction
from lawscreen.errors import ModelNotFoundError
from lawscreen.inference import Classifier
from lawscreen.models import ModelStatus, ModelVersion, PredictionStatus
from lawscreen.notify.outbox import Hit, enqueue_hits
from lawscreen.repo.predictions import (
    ClaimedPost,
    NewPrediction,
    Shard,
    claim_unscored,
    count_unscored,
    insert_predictions,
    unscored_among,
)
from lawscreen.repo.registry import production_model
from lawscreen.settings import get_settings

log = logging.getLogger(__name__)


@dataclass
class ClassifyReport:
    model_version: str
    notify: bool
    pending_at_start: int = 0  # unscored posts (in the shard) when the run started
    scored: int = 0
    skipped_empty: int = 0
    hits: int = 0  # scored at or above the model's threshold
    notifications: int = 0  # outbox rows created for those hits
    chunks: int = 0
    seconds: float = 0.0

    @property
    def processed(self) -> int:
        return self.scored + self.skipped_empty

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "processed": self.processed}


@dataclass(frozen=True, slots=True)
class TargetModel:
    """What the stage needs of a model_versions row, read once at the start of a run."""

    id: int
    version: str
    threshold: float
    artifact_path: str
    production: bool

    @classmethod
    def of(cls, row: ModelVersion) -> TargetModel:
        assert row.id is not None
        return cls(
            id=row.id,
            version=row.version,
            threshold=row.threshold,
            artifact_path=row.artifact_path,
            production=row.status == ModelStatus.PRODUCTION,
        )


def resolve_model(session: Session, version: str | None) -> ModelVersion:
    """The model called ``version``, or the production model when ``version`` is None."""
    if version is None:
        model = production_model(session)
        if model is None:
            raise ModelNotFoundError(
                "there is no production model: train and promote one first, or name a model version"
            )
        return model
    model = session.exec(select(ModelVersion).where(ModelVersion.version == version)).first()
    if model is None:
        raise ModelNotFoundError(f"no model version {version!r} in the registry")
    return model


_cache_lock = threading.Lock()
_classifiers: dict[tuple[Any, ...], Classifier] = {}


def load_classifier(artifact_path: str | Path) -> Classifier:
    """The classifier of a model directory, configured from settings, loaded once per process.

    The cache key includes the ONNX file's modification time: a re-export is picked up.
    """
    settings = get_settings()
    directory = Path(artifact_path)
    onnx = directory / (ONNX_INT8_FILE if settings.inference_int8 else ONNX_FILE)
    try:
        stamp = onnx.stat().st_mtime_ns
    except OSError:
        stamp = None  # Classifier.load raises the clear error
    key = (
        str(directory.resolve()),
        stamp,
        settings.inference_int8,
        settings.inference_max_length,
        settings.inference_max_batch_tokens,
        settings.inference_threads,
    )
    with _cache_lock:
        if key not in _classifiers:
            _classifiers.clear()  # one model at a time: an old production model's session is freed
            _classifiers[key] = Classifier.load(
                directory,
                int8=settings.inference_int8,
                max_length=settings.inference_max_length,
                max_batch_tokens=settings.inference_max_batch_tokens,
                threads=settings.inference_threads,
            )
        return _classifiers[key]


def classify_pending(
    *,
    chunk_size: int | None = None,
    limit: int | None = None,
    model_version: str | None = None,
    shard: Shard | None = None,
    notify: bool | None = None,
    on_progress: Callable[[ClassifyReport], None] | None = None,
) -> ClassifyReport:
    """Score posts that have no prediction for the model; return what was done.

    ``chunk_size``: posts per transaction (default ``LAWSCREEN_CLASSIFY_CHUNK_SIZE``).
    ``limit``: stop after this many posts (default: until none is left).
    ``model_version``: the model to score for; default the production model. The rescore flow
    passes the newly promoted version, so it keeps scoring for that model even if another
    promotion happens meanwhile.
    ``shard``: ``Shard(i, n)`` scores only posts with ``id % n == i``. The rescore flow after a
    promotion starts n workers with shards 0..n-1: each gets a disjoint, deterministic share of
    the backlog, so none spends its time skipping rows the others hold, and one failed shard can
    be retried alone. Shards are an optimization, not the safety mechanism: overlapping workers
    (a retried shard next to the original, the hourly run next to the rescore) stay correct thanks
    to SKIP LOCKED, and whatever a dead worker left behind is picked up by the next hourly run.
    ``notify``: write outbox rows for hits; default only when the model is the production model
    (scoring a candidate for comparison must not alert the lawyer).

    The model is loaded before anything is written: a missing or corrupt model file raises
    ModelArtifactError with no prediction stored.
    """
    started = time.perf_counter()
    settings = get_settings()
    size = chunk_size or settings.classify_chunk_size
    if size < 1:
        raise ValueError("chunk_size must be at least 1")
    with transaction() as session:
        model = TargetModel.of(resolve_model(session, model_version))
        pending = count_unscored(session, model.id, shard)
    classifier = load_classifier(model.artifact_path)
    report = ClassifyReport(
        model_version=model.version,
        notify=model.production if notify is None else notify,
        pending_at_start=pending,
    )

    cursor = 0
    while limit is None or report.processed < limit:
        wanted = size if limit is None else min(size, limit - report.processed)
        with transaction() as session:
            claimed = claim_unscored(session, model.id, limit=wanted, after_id=cursor, shard=shard)
            if not claimed:
                break
            # Posts skipped because another worker holds them are behind the cursor: that worker
            # scores them (or, if it fails, the next run does).
            cursor = claimed[-1].id
            still_unscored = unscored_among(session, model.id, [post.id for post in claimed])
            _score_chunk(session, model, classifier, [p for p in claimed if p.id in still_unscored], report)
        report.chunks += 1
        report.seconds = time.perf_counter() - started
        if on_progress:
            on_progress(report)

    report.seconds = time.perf_counter() - started
    log.info(
        "classified for %s: %d scored, %d skipped (empty), %d hits, %d notifications in %.1fs",
        model.version,
        report.scored,
        report.skipped_empty,
        report.hits,
        report.notifications,
        report.seconds,
    )
    return report


def _score_chunk(
    session: Session,
    model: TargetModel,
    classifier: Classifier,
    posts: list[ClaimedPost],
    report: ClassifyReport,
) -> None:
    texts = [post for post in posts if post.text.strip()]
    empty = [post for post in posts if not post.text.strip()]
    scores = classifier.score([post.text for post in texts]) if texts else np.empty(0)
    predictions = [
        NewPrediction(
            post_id=post.id,
            status=PredictionStatus.SCORED,
            score=float(score),
            label=bool(score >= model.threshold),
        )
        for post, score in zip(texts, scores, strict=True)
    ] + [NewPrediction(post_id=post.id, status=PredictionStatus.SKIPPED_EMPTY) for post in empty]
    inserted = insert_predictions(session, model.id, predictions)
    hits = [
        Hit(post_id=p.post_id, score=p.score, model_version_id=model.id)
        for p in predictions
        if p.label and p.score is not None and p.post_id in inserted
    ]
    if report.notify:
        report.notifications += enqueue_hits(session, hits, alert_threshold=get_settings().alert_threshold)
    stored = [p.status for p in predictions if p.post_id in inserted]
    report.scored += stored.count(PredictionStatus.SCORED)
    report.skipped_empty += stored.count(PredictionStatus.SKIPPED_EMPTY)
    report.hits += len(hits)
