"""Training, evaluation and the offline bootstrap: the ``train`` extra (torch, transformers, scikit-learn).

What the orchestration calls (each opens and commits its own transactions):

    bootstrap_base(BootstrapConfig()) -> Path
        A tokenizer and a small BERT pre-trained with MLM on the stored posts, or continued MLM of
        an existing base, written to LAWSCREEN_DATA_DIR/bases/<name>/.
    train_and_register(TrainConfig(), export=None) -> TrainResult
        Labels -> split (the evaluation set frozen on first use) -> fine-tune -> model and TF-IDF
        baseline judged on the same split -> models_dir/<version>/ -> a registered candidate.
        ``export(model_dir, evaluation_texts, evaluation_labels)`` runs on the finished directory
        before it is published and registered (the ONNX export step).
    lawscreen.repo.registry.gate(session, version, evaluation_scorer(session), margin=..., min_f1=...)
        The automatic promotion decision.

Nothing under this package is imported by the inference install.
"""

from lawscreen.train.bootstrap import bootstrap_base
from lawscreen.train.config import BootstrapConfig, TrainConfig
from lawscreen.train.pipeline import ExportHook, TrainResult, train_and_register
from lawscreen.train.scoring import evaluation_scorer

__all__ = [
    "BootstrapConfig",
    "ExportHook",
    "TrainConfig",
    "TrainResult",
    "bootstrap_base",
    "evaluation_scorer",
    "train_and_register",
]
