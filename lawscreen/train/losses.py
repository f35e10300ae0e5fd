"""Classification losses for imbalanced labels.

Real feedback is imbalanced (most crawled posts are not legal questions), so both losses weight the
classes. Focal loss also scales each example's loss by ``(1 - p_true)^γ``: posts the model already
gets right stop dominating the gradient, and the hard ones (a loan between friends that sounds like
a lawsuit) get the attention. With ``γ = 0`` it is weighted cross-entropy.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional

from lawscreen.train.config import TrainConfig


def balanced_weights(labels: Sequence[int]) -> torch.Tensor:
    """Inverse class frequency, scaled so that a balanced dataset gets weight 1 for both classes."""
    counts = torch.bincount(torch.tensor(list(labels)), minlength=2).double()
    return (counts.sum() / (2 * counts.clamp(min=1))).float()


class FocalLoss(nn.Module):
    def __init__(self, gamma: float, class_weights: torch.Tensor | None) -> None:
        super().__init__()
        self.gamma = gamma
        self.class_weights: torch.Tensor | None
        self.register_buffer("class_weights", class_weights)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_p_true = functional.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
        loss = -((1 - log_p_true.exp()) ** self.gamma) * log_p_true
        if self.class_weights is not None:
            loss = loss * self.class_weights[targets]
        return loss.mean()


def make_loss(config: TrainConfig, labels: Sequence[int]) -> nn.Module:
    if config.loss == "focal":
        if config.focal_alpha is None:
            weights = balanced_weights(labels)
        else:
            # α weighs the positive class and 1 - α the negative one; doubled so α = 0.5 is neutral.
            weights = torch.tensor([2 * (1 - config.focal_alpha), 2 * config.focal_alpha])
        return FocalLoss(config.focal_gamma, weights)
    return nn.CrossEntropyLoss(weight=balanced_weights(labels) if config.class_weights else None)
