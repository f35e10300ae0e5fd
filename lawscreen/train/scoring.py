"""Scoring registered models on the frozen evaluation set, for the promotion gate.

Runs on the training worker with PyTorch, from each model's checkpoint directory: the gate must
compare the candidate and the production model on today's evaluation set (it may have gained hard
negatives since production was trained), so stored metrics are not enough.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlmodel import Session

from lawscreen.errors import TrainingDataError
from lawscreen.metrics import binary_metrics
from lawscreen.models import ModelVersion
from lawscreen.repo.labels import latest_revision
from lawscreen.repo.registry import ModelScores
from lawscreen.train.data import evaluation_set, labeled_posts
from lawscreen.train.evaluation import hard_negative_summary
from lawscreen.train.modeling import score_model_directory


def evaluation_scorer(session: Session) -> Callable[[ModelVersion], ModelScores]:
    """A function scoring one model on the evaluation set as it stands in ``session``'s database."""
    evaluation, hard_negative_ids = evaluation_set(session, labeled_posts(session, latest_revision(session)))
    if not evaluation:
        raise TrainingDataError(
            "there is no frozen evaluation set yet: it is drawn when the first model trains"
        )
    texts = [post.text for post in evaluation]
    labels = [post.label for post in evaluation]

    def score(model: ModelVersion) -> ModelScores:
        scores = score_model_directory(Path(model.artifact_path), texts)
        hard = hard_negative_summary(evaluation, hard_negative_ids, scores, model.threshold)
        return ModelScores(
            n=len(evaluation),
            f1=binary_metrics(labels, scores, model.threshold).f1,
            hard_negatives=hard["n"],
            hard_negative_fp=hard["flagged"],
        )

    return score
