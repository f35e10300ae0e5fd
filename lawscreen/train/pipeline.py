"""``train_and_register``: labels in, a registered candidate out, as a sequence of plain steps.

    1. base       resolve and check the base offline             (BaseModelError)
    2. data       labels, frozen evaluation set, train/validation (TrainingDataError), and
                  the unlabeled posts
    3. train      fine-tune (lawscreen.train.loop); self-train on the unlabeled posts
                  (lawscreen.train.selftraining); calibrate on validation
    4. judge      the model and the TF-IDF baseline on the same split, threshold on validation
    5. write      the model directory, in a hidden staging directory
    6. export     optional hook, run on the staging directory (the ONNX export goes here)
    7. publish    rename the staging directory to models_dir/<version>
    8. register   a ``candidate`` row in model_versions

Nothing is registered before the directory is complete, and the directory appears only complete:
an exception or ^C at any step leaves no model row and no directory that looks like a model. The
promotion decision is not taken here; the caller runs the gate (``lawscreen.repo.registry.gate``).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from secrets import token_hex
from typing import Any

import numpy as np
from numpy.typing import NDArray
from tokenizers import Tokenizer
from transformers import BertForSequenceClassification

from lawscreen.artifacts import REPORT_FILE, TOKENIZER_FILE, ModelMeta, read_meta, write_meta
from lawscreen.database import transaction
from lawscreen.repo.registry import register_candidate
from lawscreen.settings import get_settings
from lawscreen.train import baseline as tfidf
from lawscreen.train.bootstrap import read_bootstrap_record
from lawscreen.train.calibration import Calibration, calibrate
from lawscreen.train.config import TrainConfig
from lawscreen.train.data import DataSplit, examples, load_split, posts_hash, unlabeled_posts
from lawscreen.train.evaluation import choose_threshold, judge
from lawscreen.train.loop import FineTuned, fine_tune
from lawscreen.train.modeling import Base, load_base, quiet_transformers, score_texts
from lawscreen.train.report import write_report
from lawscreen.train.selftraining import self_train
from lawscreen.train.staging import staged_directory

# export(model_dir, evaluation_texts, evaluation_labels): may add files to model_dir and update
# meta.json; raising aborts the run before anything is published or registered.
ExportHook = Callable[[Path, list[str], list[int]], object]
GIT_TIMEOUT_SECONDS = 5


@dataclass(frozen=True, slots=True)
class Judgement:
    metrics: dict[str, Any]  # {"model": ..., "baseline": ..., "training": ...}
    threshold: float
    evaluation_scores: NDArray[np.float64]
    baseline_evaluation_scores: NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class TrainResult:
    version: str
    model_dir: Path
    meta: ModelMeta
    split: DataSplit
    baseline: tfidf.Baseline  # fitted on the same training part, for comparisons on other data

    @property
    def metrics(self) -> dict[str, Any]:
        return self.meta.metrics


def train_and_register(config: TrainConfig, *, export: ExportHook | None = None) -> TrainResult:
    settings = get_settings()
    base = load_base(config.base, config.max_length)  # 1
    with transaction() as session:  # 2
        split = load_split(session, config)
        unlabeled = unlabeled_posts(session, config.max_unlabeled) if config.self_training else []
    train = examples(split.train)
    validation, evaluation = examples(split.validation), examples(split.evaluation)
    baseline = tfidf.fit_baseline(train.texts, train.labels)
    tuned = fine_tune(config, base, train, validation)  # 3
    self_training = None
    if config.self_training:
        texts = [post.text for post in unlabeled]
        tuned, self_training = self_train(config, base, tuned, baseline, train, validation, texts)
    calibration = (
        calibrate(
            tuned.model,
            base.tokenizer,
            config.max_length,
            (validation.texts, validation.labels),
            (evaluation.texts, evaluation.labels),
        )
        if config.calibrate
        else None
    )
    judgement = judge_both(config, split, tuned, base.tokenizer, baseline, calibration)  # 4
    judgement.metrics["training"]["self_training"] = self_training.as_dict() if self_training else None

    version = new_version()
    meta = ModelMeta(
        version=version,
        base=base.name,
        threshold=judgement.threshold,
        max_length=config.max_length,
        created_at=datetime.now(UTC),
        git_sha=git_sha(),
        data_snapshot={
            **split.snapshot(),
            "unlabeled": {"posts": len(unlabeled), "hash": posts_hash(unlabeled)},
            "base": _base_record(base),
        },
        metrics=judgement.metrics,
    )
    target = settings.models_dir / version
    with staged_directory(target) as staging:
        write_model_directory(staging, tuned.model, base.tokenizer, meta, judgement, split)  # 5
        if export is not None:  # 6: the ONNX export step
            export(staging, list(evaluation.texts), list(evaluation.labels))
    meta = read_meta(target)  # 7 happened when the block ended; the export may have added to meta
    try:  # 8
        with transaction() as session:
            register_candidate(
                session,
                version=version,
                base=meta.base,
                artifact_path=str(target),
                threshold=meta.threshold,
                metrics=meta.metrics,
                data_snapshot=meta.data_snapshot,
                label_revision=split.label_revision,
            )
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # a published directory with no row would be an orphan
        raise
    return TrainResult(version=version, model_dir=target, meta=meta, split=split, baseline=baseline)


def judge_both(
    config: TrainConfig,
    split: DataSplit,
    tuned: FineTuned,
    tokenizer: Tokenizer,
    baseline: tfidf.Baseline,
    calibration: Calibration | None,
) -> Judgement:
    """Each model picks its threshold on validation and is judged with it on the evaluation set."""
    validation_texts = examples(split.validation).texts
    evaluation_texts = examples(split.evaluation).texts
    results: dict[str, Any] = {}
    evaluation_scores: dict[str, NDArray[np.float64]] = {}
    thresholds: dict[str, float] = {}
    for name, score in (
        ("model", lambda texts: score_texts(tuned.model, tokenizer, texts, config.max_length)),
        ("baseline", baseline.score),
    ):
        validation_scores = score(validation_texts)
        evaluation_scores[name] = score(evaluation_texts)
        threshold = choose_threshold(split, validation_scores, config.target_precision)
        thresholds[name] = threshold.threshold
        results[name] = judge(
            split, validation_scores, evaluation_scores[name], threshold, config.target_precision
        )
    results["model"]["calibration"] = calibration.as_dict() if calibration else None
    results["baseline"]["name"] = tfidf.NAME
    results["training"] = {
        **tuned.summary(),
        "history": [
            {
                "epoch": e.epoch,
                "train_loss": round(e.train_loss, 4),
                "validation_f1": round(e.validation_f1, 4),
            }
            for e in tuned.history
        ],
        "config": config.model_dump(mode="json", exclude={"progress"}),
    }
    return Judgement(
        metrics=results,
        threshold=thresholds["model"],
        evaluation_scores=evaluation_scores["model"],
        baseline_evaluation_scores=evaluation_scores["baseline"],
    )


def write_model_directory(
    directory: Path,
    model: BertForSequenceClassification,
    tokenizer: Tokenizer,
    meta: ModelMeta,
    judgement: Judgement,
    split: DataSplit,
) -> None:
    """The files of lawscreen.artifacts' contract that training owns: checkpoint, tokenizer, meta, report."""
    with quiet_transformers():
        model.save_pretrained(directory)
    tokenizer.save(str(directory / TOKENIZER_FILE))
    model_metrics = judgement.metrics["model"]["evaluation"]
    baseline_metrics = judgement.metrics["baseline"]["evaluation"]
    f1s = f"F1 {model_metrics['f1']:.3f} (baseline {baseline_metrics['f1']:.3f})"
    write_report(
        directory / REPORT_FILE,
        title=f"{meta.version}: evaluation {f1s} on {model_metrics['n']} posts",
        labels=list(examples(split.evaluation).labels),
        model_scores=judgement.evaluation_scores,
        baseline_scores=judgement.baseline_evaluation_scores,
        model_metrics=model_metrics,
        baseline_metrics=baseline_metrics,
    )
    write_meta(directory, meta)  # last: a directory with meta.json has everything else


def new_version() -> str:
    """Sortable by creation time; the random suffix keeps two runs in the same second apart."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{token_hex(2)}"


def git_sha() -> str | None:
    """The commit of the code that trained the model, or None outside a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 - git from PATH, as a developer runs it
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def _base_record(base: Base) -> dict[str, Any]:
    """Which base, and how it was made when it was bootstrapped here (bases can be replaced later)."""
    return {"name": base.name, "path": str(base.path), "bootstrap": read_bootstrap_record(base.path)}
