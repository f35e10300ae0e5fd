"""lawscreen.metrics must agree with scikit-learn, which the training extra carries."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as sk

from lawscreen.metrics import (
    average_precision,
    binary_metrics,
    reliability_bins,
    roc_auc,
    threshold_for_precision,
)

# Scores drawn from a small set so that ties, which the definitions must handle, are common.
samples = st.lists(
    st.tuples(st.booleans(), st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5, 0.75, 0.9, 1.0])),
    min_size=2,
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(samples, st.sampled_from([0.1, 0.5, 0.9]))
def test_agrees_with_scikit_learn(pairs: list[tuple[bool, float]], threshold: float) -> None:
    y = np.array([label for label, _ in pairs])
    s = np.array([score for _, score in pairs])
    ours = binary_metrics(y, s, threshold)
    predicted = s >= threshold
    assert ours.accuracy == pytest.approx(sk.accuracy_score(y, predicted))
    assert ours.precision == pytest.approx(sk.precision_score(y, predicted, zero_division=0))
    assert ours.recall == pytest.approx(sk.recall_score(y, predicted, zero_division=0))
    assert ours.f1 == pytest.approx(sk.f1_score(y, predicted, zero_division=0))
    assert ours.brier == pytest.approx(sk.brier_score_loss(y, s))
    assert [ours.tn, ours.fp, ours.fn, ours.tp] == sk.confusion_matrix(
        y, predicted, labels=[False, True]
    ).ravel().tolist()
    if y.all() or not y.any():
        assert ours.roc_auc is None
        assert ours.pr_auc is None
    else:
        assert ours.roc_auc == pytest.approx(sk.roc_auc_score(y, s))
        assert ours.pr_auc == pytest.approx(sk.average_precision_score(y, s))


def test_threshold_reaches_target_precision_with_best_recall() -> None:
    y = np.array([1, 1, 1, 0, 1, 0, 0, 1, 0, 0])
    s = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    choice = threshold_for_precision(y, s, 0.8)
    assert choice.reached_target
    # 0.7 and up: 4 of 5 right, recall 4/5; lower thresholds drop under 0.8. Halfway to 0.6.
    assert choice.threshold == pytest.approx(0.65)
    assert choice.precision == pytest.approx(0.8)
    assert choice.recall == pytest.approx(0.8)
    metrics = binary_metrics(y, s, choice.threshold)
    assert metrics.precision >= 0.8


def test_unreachable_precision_falls_back_to_best_f1_and_says_so() -> None:
    y = np.array([0, 1, 0, 1])
    s = np.array([0.9, 0.8, 0.7, 0.6])
    choice = threshold_for_precision(y, s, 0.99)
    assert not choice.reached_target
    assert choice.threshold == 0.6  # everything positive: F1 0.667 beats the alternatives; no lower score


def test_single_class_has_no_auc() -> None:
    assert roc_auc([1, 1], [0.2, 0.9]) is None
    assert average_precision([0, 0], [0.2, 0.9]) is None


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="3 labels but 2 scores"):
        binary_metrics([1, 0, 1], [0.5, 0.5], 0.5)


def test_reliability_bins_follow_calibrated_scores() -> None:
    rng = np.random.default_rng(1)
    scores = rng.random(50_000)
    labels = rng.random(scores.size) < scores  # legal with probability equal to the score

    mean_score, share_legal, counts = reliability_bins(labels, scores, bins=5)

    assert counts.sum() == scores.size
    np.testing.assert_allclose(mean_score, [0.1, 0.3, 0.5, 0.7, 0.9], atol=0.01)
    np.testing.assert_allclose(share_legal, mean_score, atol=0.02)


def test_reliability_bins_skip_empty_bins_and_keep_score_one() -> None:
    mean_score, share_legal, counts = reliability_bins([0, 0, 1, 1], [0.05, 0.1, 0.95, 1.0], bins=5)

    assert counts.tolist() == [2, 2]
    np.testing.assert_allclose(mean_score, [0.075, 0.975])
    assert share_legal.tolist() == [0.0, 1.0]
