"""Binary classification metrics in plain numpy.

Training, evaluation and the promotion gate all judge models with these functions, and the
inference install (no scikit-learn, no torch) needs them too. Definitions follow scikit-learn's:
a test checks that they agree. Label 1 is "legal consultation"; a post is positive when its score
is at or above the threshold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True, slots=True)
class BinaryMetrics:
    n: int
    threshold: float
    accuracy: float
    precision: float
    recall: float
    f1: float
    roc_auc: float | None  # None when the data holds one class only
    pr_auc: float | None
    brier: float  # mean squared error of the scores as probabilities: calibration and sharpness
    tp: int
    fp: int
    tn: int
    fn: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ThresholdChoice:
    threshold: float
    precision: float
    recall: float
    reached_target: bool  # False: no threshold reached the target precision; best F1 chosen instead


def binary_metrics(labels: ArrayLike, scores: ArrayLike, threshold: float) -> BinaryMetrics:
    y, s = _as_arrays(labels, scores)
    predicted = s >= threshold
    tp = int(np.sum(predicted & y))
    fp = int(np.sum(predicted & ~y))
    fn = int(np.sum(~predicted & y))
    tn = int(np.sum(~predicted & ~y))
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    return BinaryMetrics(
        n=int(y.size),
        threshold=float(threshold),
        accuracy=_ratio(tp + tn, int(y.size)),
        precision=precision,
        recall=recall,
        f1=_ratio(2 * precision * recall, precision + recall),
        roc_auc=roc_auc(y, s),
        pr_auc=average_precision(y, s),
        brier=brier_score(y, s),
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
    )


def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float | None:
    """Area under the ROC curve: the chance a random positive outscores a random negative."""
    y, s = _as_arrays(labels, scores)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return None
    rank_sum = float(_average_ranks(s)[y].sum())
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def brier_score(labels: ArrayLike, scores: ArrayLike) -> float:
    """Mean squared difference between the scores and the labels: 0 is perfect, 0.25 a coin."""
    y, s = _as_arrays(labels, scores)
    return float(np.mean((s - y) ** 2)) if y.size else 0.0


def reliability_bins(
    labels: ArrayLike, scores: ArrayLike, bins: int = 5
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int_]]:
    """Per equal-width score bin holding posts: mean score, share labeled legal, and post count.
    Calibrated scores put the first two on the diagonal (the points of a reliability diagram)."""
    y, s = _as_arrays(labels, scores)
    which = np.clip((s * bins).astype(int), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    held = counts > 0
    mean_score = np.bincount(which, weights=s, minlength=bins)[held] / counts[held]
    share_legal = np.bincount(which, weights=y.astype(np.float64), minlength=bins)[held] / counts[held]
    return mean_score, share_legal, counts[held]


def precision_recall_curve(
    labels: ArrayLike, scores: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Precision and recall at each distinct score used as threshold, highest threshold first."""
    y, s = _as_arrays(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    # The last index of each run of equal scores: every post at that score is predicted positive.
    last_of_run = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]
    tp = np.cumsum(y_sorted)[last_of_run]
    predicted = last_of_run + 1
    precision = tp / predicted
    recall = tp / max(int(y.sum()), 1)
    return precision.astype(np.float64), recall.astype(np.float64), s_sorted[last_of_run]


def average_precision(labels: ArrayLike, scores: ArrayLike) -> float | None:
    """PR-AUC as average precision (scikit-learn's definition): no interpolation."""
    y, s = _as_arrays(labels, scores)
    if not y.any() or y.all():
        return None
    precision, recall, _ = precision_recall_curve(y, s)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def threshold_for_precision(labels: ArrayLike, scores: ArrayLike, target_precision: float) -> ThresholdChoice:
    """The threshold with the best recall among those reaching ``target_precision``.

    When none reaches it (too few positives, a weak model), the best-F1 threshold is returned with
    ``reached_target=False`` so the caller can report it instead of silently missing the target.

    The threshold is placed halfway between the lowest score it accepts and the next lower score,
    not on the accepted score itself: the validation precision and recall are the same, but a new
    post scoring a little under the lowest validation positive is not missed for nothing.
    """
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    reaching = np.flatnonzero(precision >= target_precision)
    if reaching.size:
        # Among equal recalls the highest threshold wins: fewer borderline alerts for the same catch.
        best = reaching[np.argmax(recall[reaching])]
        reached = True
    else:
        f1 = np.divide(
            2 * precision * recall,
            precision + recall,
            out=np.zeros_like(recall),
            where=precision + recall > 0,
        )
        best = int(np.argmax(f1))
        reached = False
    lower = best + 1  # thresholds run from the highest score down
    threshold = (thresholds[best] + thresholds[lower]) / 2 if lower < thresholds.size else thresholds[best]
    return ThresholdChoice(
        threshold=float(threshold),
        precision=float(precision[best]),
        recall=float(recall[best]),
        reached_target=reached,
    )


def _as_arrays(labels: ArrayLike, scores: ArrayLike) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    return y, s


def _average_ranks(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """1-based ranks, ties sharing their average rank (as in the Mann-Whitney U statistic)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1
    return (first_rank + (counts - 1) / 2)[inverse].astype(np.float64)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0
