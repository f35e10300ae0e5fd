"""Typed settings of one bootstrap and one training run, validated before any work starts.

The defaults are the ones chosen by cross-validation on the development data (``bench/quality.py
--cv``, see docs/training.md) and sized so that bootstrap plus train on about 10,000 posts take at
most 15 minutes on two CPU cores. Work is bounded by epochs and by a step cap, never by the clock,
so a run is reproducible from its seed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lawscreen.settings import get_settings

Device = Literal["auto", "cpu", "cuda"]
LossName = Literal["focal", "cross_entropy"]

# Peak AdamW learning rates when none is given, by the width of the pre-trained weights being
# trained on. The small bootstrapped model learns best at 1e-3: on the development cross-validation
# it beat 3e-4 on both bases tried (F1 0.976 against 0.966, 0.984 against 0.983) and 2e-3 diverged
# (0.950). A full-size BERT (bert-base-chinese is 768 wide) is fine-tuned at 2e-5 to 5e-5, as in the
# BERT paper; at 1e-3 a bert-base-shaped model collapsed to one class (docs/training.md).
SMALL_MODEL_LEARNING_RATE = 1e-3
FULL_SIZE_LEARNING_RATE = 3e-5
FULL_SIZE_WIDTH = 512


def default_learning_rate(hidden_size: int) -> float:
    return FULL_SIZE_LEARNING_RATE if hidden_size >= FULL_SIZE_WIDTH else SMALL_MODEL_LEARNING_RATE


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 0
    device: Device = "auto"
    # CPU threads for torch; None keeps torch's default (all cores). The training worker is
    # usually a machine of its own; a shared one sets this to its fair share.
    threads: int | None = Field(default=None, gt=0)
    progress: bool = True  # rich progress bars on stderr
    bf16: bool = True  # autocast to bfloat16 on CUDA (when the GPU supports it); ignored on CPU


class BootstrapConfig(_Config):
    """A base made offline: a WordPiece tokenizer and a BERT pre-trained with masked-language modelling.

    With ``from_base`` set, the base's tokenizer and weights are kept and MLM pre-training continues
    on the stored posts (domain adaptation); the size fields are then ignored.
    """

    name: str = Field(default="bootstrap", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    from_base: str | None = None
    # Chinese is split per character, as bert-base-chinese does, so the vocabulary is the corpus's
    # characters plus word pieces for Latin-script words; 8,000 covers a forum corpus's long tail.
    vocab_size: int = Field(default=8000, ge=100)
    min_frequency: int = Field(default=1, ge=1)
    # Small on purpose: with a few thousand posts a bigger model pre-trains less per minute and
    # over-fits more; 128 x 2 layers is about 0.4M encoder parameters (plus the embeddings).
    hidden_size: int = Field(default=128, ge=8)
    num_layers: int = Field(default=2, ge=1)
    num_heads: int = Field(default=4, ge=1)
    intermediate_size: int = Field(default=512, ge=8)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    max_length: int = Field(default=256, ge=8)  # tokens per post while pre-training; positions of the model
    # BERT's 15 %. Masking 30 % or 45 % did no better on the held-out forum, and 30 % did worse on
    # the frozen evaluation set (docs/training.md, "Pre-training choices").
    mlm_probability: float = Field(default=0.15, gt=0.0, lt=1.0)
    # Longest run of neighbouring tokens masked together (Chinese words are 2-4 characters and a
    # word's other characters can give a masked one away). Spans of up to 3 did worse on the
    # development cross-validation (F1 0.951 against 0.971), so single tokens are the default.
    mask_span: int = Field(default=1, ge=1)
    # None: SMALL_MODEL_LEARNING_RATE from scratch; with from_base, default_learning_rate of its width.
    learning_rate: float | None = Field(default=None, gt=0.0)
    weight_decay: float = Field(default=0.01, ge=0.0)
    warmup_ratio: float = Field(default=0.06, ge=0.0, lt=1.0)
    batch_size: int = Field(default=32, ge=1)
    # A small corpus needs many passes: on 336 posts, 40 epochs left the MLM loss at 5.9 and 200 at
    # 4.1, and fine-tuned F1 followed. The step cap bounds a large corpus (10,000 posts: ~10 epochs).
    epochs: int = Field(default=200, ge=1)
    max_steps: int = Field(default=3000, ge=1)

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> BootstrapConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}"
            )
        return self


class TrainConfig(_Config):
    """Fine-tuning a base into a legal-consultation classifier, and how it is judged."""

    base: str = Field(default_factory=lambda: get_settings().base_model)
    max_length: int = Field(default=256, ge=3)  # tokens per post, head and tail kept (lawscreen.encoding)
    learning_rate: float | None = Field(default=None, gt=0.0)  # None: default_learning_rate of the base
    weight_decay: float = Field(default=0.01, ge=0.0)
    warmup_ratio: float = Field(default=0.1, ge=0.0, lt=1.0)
    grad_clip: float = Field(default=1.0, gt=0.0)
    # Examples per optimiser step. micro_batch_size splits a step into several forward passes whose
    # gradients accumulate: the same optimisation in less memory (bert-base with long posts on a
    # small GPU). On CUDA the step is cuda_batch_size: a GPU is idle on 16 short posts.
    batch_size: int = Field(default=16, ge=1)
    cuda_batch_size: int = Field(default=64, ge=1)
    micro_batch_size: int | None = Field(default=None, ge=1)
    max_epochs: int = Field(default=40, ge=1)
    max_steps: int = Field(default=2000, ge=1)
    patience: int = Field(default=8, ge=1)  # epochs without a better validation F1 before stopping
    dropout: float | None = Field(default=None, ge=0.0, lt=1.0)  # None keeps the base's
    # Share of input tokens hidden ([MASK], as in pre-training) in each training batch: augmentation.
    # Off by default: 0.15 did not help on the development cross-validation (F1 0.961 against 0.966).
    token_mask_probability: float = Field(default=0.0, ge=0.0, lt=1.0)
    loss: LossName = "focal"
    focal_gamma: float = Field(default=2.0, ge=0.0)
    # Weight of the positive class in the loss; None balances the classes by their frequency.
    focal_alpha: float | None = Field(default=None, gt=0.0, lt=1.0)
    class_weights: bool = True  # cross-entropy only: weight classes by inverse frequency
    # Platt scaling fitted on validation and written into the head (lawscreen.train.calibration):
    # scores read as probabilities whatever the loss, so LAWSCREEN_ALERT_THRESHOLD means the same
    # for every model.
    calibrate: bool = True
    target_precision: float = Field(default_factory=lambda: get_settings().target_precision, gt=0.0, le=1.0)
    evaluation_share: float = Field(default_factory=lambda: get_settings().evaluation_share, gt=0.0, lt=1.0)
    validation_share: float = Field(default=0.2, gt=0.0, lt=1.0)
    # Fewer examples of a class than this and the split leaves too few to train or judge with.
    min_per_class: int = Field(default=10, ge=3)
    # Self-training (lawscreen.train.selftraining) on the database's unlabeled posts: those the first
    # model scores within pseudo_label_margin of 0 or 1, on the side the TF-IDF baseline agrees with,
    # train a second model for self_training_epochs. max_unlabeled bounds the work: the newest ones.
    self_training: bool = True
    pseudo_label_margin: float = Field(default=0.1, gt=0.0, lt=0.5)
    max_unlabeled: int = Field(default=20_000, ge=1)
    self_training_epochs: int = Field(default=4, ge=1)
    self_training_patience: int = Field(default=2, ge=1)
    # Each round's model is the next round's teacher.
    self_training_rounds: int = Field(default=2, ge=1)
