"""Batched ONNX inference: ``Classifier.load(model_dir).score(texts)``.

onnxruntime, tokenizers and numpy only; importing this package never imports torch or
transformers. See docs/inference.md.
"""

from lawscreen.inference.batching import PAD_MULTIPLE, Batch, padded_length, plan_batches
from lawscreen.inference.classifier import (
    DEFAULT_MAX_BATCH_TOKENS,
    Classifier,
    margin_probabilities,
    physical_cores,
    probabilities,
    session_options,
)

__all__ = [
    "DEFAULT_MAX_BATCH_TOKENS",
    "PAD_MULTIPLE",
    "Batch",
    "Classifier",
    "margin_probabilities",
    "padded_length",
    "physical_cores",
    "plan_batches",
    "probabilities",
    "session_options",
]
