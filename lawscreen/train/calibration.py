"""Platt scaling of a fine-tuned classifier, written into its head so every score is calibrated.

Focal loss stops pushing posts it already gets right, so its scores stay squeezed towards the
middle: on the sample data, trained with the defaults, not one held-out legal post scored 0.95,
the alert threshold, and every hit waited for the digest. The score should mean what the lawyer
reads into it, "how likely is this a legal question", whatever loss or base made the model.

A logistic regression of the validation labels on the validation logit margin ``m = l1 - l0``
gives ``P(legal) = σ(a·m + b)``. Writing ``a`` and ``b`` into the classifier's last linear layer
makes the checkpoint itself calibrated, so PyTorch, the ONNX export, int8 and every later score
agree at no cost at run time. The map is increasing: the ranking, ROC-AUC, PR-AUC and the posts
above a threshold chosen after it are unchanged; only what the numbers say changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression
from tokenizers import Tokenizer
from transformers import BertForSequenceClassification

from lawscreen.inference import margin_probabilities
from lawscreen.metrics import brier_score
from lawscreen.train.modeling import text_logits


@dataclass(frozen=True, slots=True)
class Calibration:
    slope: float  # a in σ(a·m + b)
    intercept: float  # b
    fitted_on: int  # validation posts
    evaluation_brier_before: float | None = None  # mean squared error of the scores, out of sample
    evaluation_brier_after: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"method": "platt", **asdict(self)}


def fit_platt(labels: Sequence[int], margins: NDArray[np.floating[Any]]) -> Calibration | None:
    """Platt scaling of ``margins`` against ``labels``; None when it cannot mean anything: one class
    only, or a model that ranks validation backwards (an increasing map is all this may apply)."""
    y = np.asarray(labels, dtype=int)
    if np.unique(y).size < 2:
        return None
    # Platt's targets: (N+ + 1) / (N+ + 2) for a positive, 1 / (N- + 2) for a negative, not 1 and 0.
    # A validation set the model separates (common with 67 posts) then still has a finite slope,
    # and unlike a penalty this does not depend on the scale of the margins.
    positives, negatives = int(y.sum()), int(y.size - y.sum())
    target = np.where(y == 1, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    x = np.asarray(margins, dtype=np.float64)[:, None]
    fit = LogisticRegression(C=np.inf).fit(  # unpenalized; each post once as each class, weighted
        np.vstack([x, x]), np.r_[np.ones(y.size), np.zeros(y.size)], sample_weight=np.r_[target, 1 - target]
    )
    slope, intercept = float(fit.coef_[0, 0]), float(fit.intercept_[0])
    if slope <= 0:
        return None
    return Calibration(slope=slope, intercept=intercept, fitted_on=int(y.size))


def fold_into_head(model: BertForSequenceClassification, calibration: Calibration) -> None:
    """Rewrite the two-class head so its margin becomes ``a·m + b``: softmax gives σ(a·m + b)."""
    layer = model.classifier
    with torch.no_grad():
        weight, bias = layer.weight, layer.bias
        half_weight = calibration.slope * (weight[1] - weight[0]) / 2
        half_bias = (calibration.slope * (bias[1] - bias[0]) + calibration.intercept) / 2
        weight.copy_(torch.stack([-half_weight, half_weight]))
        bias.copy_(torch.stack([-half_bias, half_bias]))


def calibrate(
    model: BertForSequenceClassification,
    tokenizer: Tokenizer,
    max_length: int,
    validation: tuple[Sequence[str], Sequence[int]],
    evaluation: tuple[Sequence[str], Sequence[int]],
) -> Calibration | None:
    """Fit on validation, fold into ``model`` (in place), and measure the Brier score on the
    evaluation set before and after, out of the fit's sample. None: the model is left unchanged."""
    validation_margins = margins(model, tokenizer, validation[0], max_length)
    calibration = fit_platt(validation[1], validation_margins)
    if calibration is None:
        return None
    evaluation_margins = margins(model, tokenizer, evaluation[0], max_length)
    fold_into_head(model, calibration)
    before = margin_probabilities(evaluation_margins)
    after = margin_probabilities(calibration.slope * evaluation_margins + calibration.intercept)
    return replace(
        calibration,
        evaluation_brier_before=brier_score(evaluation[1], before) if evaluation[0] else None,
        evaluation_brier_after=brier_score(evaluation[1], after) if evaluation[0] else None,
    )


def margins(
    model: BertForSequenceClassification, tokenizer: Tokenizer, texts: Sequence[str], max_length: int
) -> NDArray[np.float64]:
    """Logit margins ``l1 - l0``, the quantity calibration maps."""
    logits = text_logits(model, tokenizer, texts, max_length).double()
    return (logits[:, 1] - logits[:, 0]).numpy()
