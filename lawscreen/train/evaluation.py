"""Judging a model, and the baseline beside it, on the same split with the same metrics.

The threshold is chosen on the validation scores (best recall at the target precision) and then
applied, unchanged, to the frozen evaluation set: the evaluation figures are what the lawyer
would have seen.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lawscreen.metrics import ThresholdChoice, binary_metrics, threshold_for_precision
from lawscreen.train.data import DataSplit, LabeledPost

Scores = NDArray[np.float64]


def choose_threshold(split: DataSplit, validation_scores: Scores, target_precision: float) -> ThresholdChoice:
    return threshold_for_precision(
        [post.label for post in split.validation], validation_scores, target_precision
    )


def judge(
    split: DataSplit,
    validation_scores: Scores,
    evaluation_scores: Scores,
    threshold: ThresholdChoice,
    target: float,
) -> dict[str, Any]:
    """Validation and evaluation metrics, the per-source breakdown and the hard negatives, as JSON."""
    evaluation = _metrics(split.evaluation, evaluation_scores, threshold.threshold)
    evaluation["by_source"] = by_source(split.evaluation, evaluation_scores, threshold.threshold)
    return {
        "threshold": {
            "value": threshold.threshold,
            "target_precision": target,
            "reached_target": threshold.reached_target,
            "validation_precision": threshold.precision,
            "validation_recall": threshold.recall,
        },
        "validation": _metrics(split.validation, validation_scores, threshold.threshold),
        "evaluation": evaluation,
        "hard_negatives": hard_negative_summary(
            split.evaluation, split.hard_negative_ids, evaluation_scores, threshold.threshold
        ),
    }


def by_source(posts: Sequence[LabeledPost], scores: Scores, threshold: float) -> dict[str, dict[str, Any]]:
    positions: defaultdict[str, list[int]] = defaultdict(list)
    for i, post in enumerate(posts):
        positions[post.source].append(i)
    return {
        source: _metrics([posts[i] for i in indices], scores[indices], threshold)
        for source, indices in sorted(positions.items())
    }


def hard_negative_summary(
    evaluation: Sequence[LabeledPost], hard_negative_ids: frozenset[int], scores: Scores, threshold: float
) -> dict[str, int]:
    """How many hard negatives the evaluation set holds, and how many of them are flagged again."""
    hard = [i for i, post in enumerate(evaluation) if post.post_id in hard_negative_ids]
    return {"n": len(hard), "flagged": int(np.sum(scores[hard] >= threshold))}


def _metrics(posts: Sequence[LabeledPost], scores: Scores, threshold: float) -> dict[str, Any]:
    return binary_metrics([post.label for post in posts], scores, threshold).as_dict()
