"""Platt scaling written into the classifier head (lawscreen.train.calibration)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lawscreen.metrics import brier_score, roc_auc
from lawscreen.train.calibration import Calibration, calibrate, fit_platt, fold_into_head, margins
from lawscreen.train.loop import Examples, fine_tune
from lawscreen.train.modeling import load_base, load_classifier, score_texts
from tests.train_fixtures import TINY_MAX_LENGTH, make_tiny_base, separable_posts, tiny_train_config


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, int]]:
    return separable_posts(per_class=60, seed=3)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory, corpus: list[tuple[str, int]]) -> Path:
    return make_tiny_base(tmp_path_factory.mktemp("base"), [text for text, _ in corpus])


def _examples(rows: list[tuple[str, int]]) -> Examples:
    return Examples([text for text, _ in rows], [label for _, label in rows])


def test_folding_maps_every_margin_exactly(tiny_base: Path, corpus: list[tuple[str, int]]) -> None:
    base = load_base(str(tiny_base), TINY_MAX_LENGTH)
    model = load_classifier(base)
    model.train(False)
    texts = [text for text, _ in corpus[:40]]
    before = margins(model, base.tokenizer, texts, TINY_MAX_LENGTH)

    fold_into_head(model, Calibration(slope=2.5, intercept=-0.7, fitted_on=0))

    after = margins(model, base.tokenizer, texts, TINY_MAX_LENGTH)
    np.testing.assert_allclose(after, 2.5 * before - 0.7, atol=1e-5)
    scores = score_texts(model, base.tokenizer, texts, TINY_MAX_LENGTH)
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-(2.5 * before - 0.7))), atol=1e-6)


def test_fit_recovers_a_known_logistic_map() -> None:
    rng = np.random.default_rng(0)
    m = rng.normal(0, 2, 20_000)
    labels = (rng.random(m.size) < 1 / (1 + np.exp(-(1.5 * m - 0.8)))).astype(int)

    fitted = fit_platt(labels.tolist(), m)

    assert fitted is not None
    assert fitted.slope == pytest.approx(1.5, rel=0.05)
    assert fitted.intercept == pytest.approx(-0.8, abs=0.05)
    assert fitted.fitted_on == m.size


def test_a_separating_validation_set_gives_a_finite_slope() -> None:
    m = np.array([-3.0, -2.0, -1.5, -1.0, 1.0, 1.2, 2.0, 4.0])
    fitted = fit_platt([0, 0, 0, 0, 1, 1, 1, 1], m)

    assert fitted is not None
    assert 0 < fitted.slope < 10
    assert 0.5 < 1 / (1 + np.exp(-(fitted.slope * 4.0 + fitted.intercept))) < 1


@pytest.mark.parametrize(
    ("labels", "m"),
    [([1, 1, 1, 1], [-1.0, 0.0, 1.0, 2.0]), ([1, 1, 0, 0], [-2.0, -1.0, 1.0, 2.0])],
    ids=["one-class", "ranked-backwards"],
)
def test_no_calibration_when_it_cannot_mean_anything(labels: list[int], m: list[float]) -> None:
    assert fit_platt(labels, np.array(m)) is None


def test_calibration_undoes_a_squeezed_model_and_keeps_its_ranking(
    tiny_base: Path, corpus: list[tuple[str, int]]
) -> None:
    train, validation, evaluation = _examples(corpus[:60]), _examples(corpus[60:90]), _examples(corpus[90:])
    # Enough epochs to rank well: at 6 the tiny model had only just separated validation on a CPU
    # (scores 0.016 apart), and bf16 rounding on a GPU left it short of that.
    config = tiny_train_config(tiny_base, max_epochs=12)
    base = load_base(config.base, config.max_length)
    model = fine_tune(config, base, train, validation).model
    # Scores squeezed towards 0.5, as focal loss leaves them: the ranking is right, the numbers not.
    fold_into_head(model, Calibration(slope=0.05, intercept=0.0, fitted_on=0))
    squeezed = score_texts(model, base.tokenizer, evaluation.texts, config.max_length)
    assert np.all(np.abs(squeezed - 0.5) < 0.25)

    calibration = calibrate(
        model,
        base.tokenizer,
        config.max_length,
        (validation.texts, validation.labels),
        (evaluation.texts, evaluation.labels),
    )

    assert calibration is not None
    assert calibration.slope > 1  # stretched back out
    calibrated = score_texts(model, base.tokenizer, evaluation.texts, config.max_length)
    assert calibration.evaluation_brier_before == pytest.approx(brier_score(evaluation.labels, squeezed))
    assert calibration.evaluation_brier_after == pytest.approx(
        brier_score(evaluation.labels, calibrated), abs=1e-6
    )
    assert brier_score(evaluation.labels, calibrated) < brier_score(evaluation.labels, squeezed) / 2
    assert roc_auc(evaluation.labels, calibrated) == roc_auc(evaluation.labels, squeezed)
