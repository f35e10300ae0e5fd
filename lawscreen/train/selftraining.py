"""Self-training: the database's unlabeled posts as pseudo-labeled training posts.

A deployment stores thousands of crawled posts and has a few hundred labels. Pre-training reads
the unlabeled ones as text; this reads them as examples. The model fine-tuned on the labels (the
*teacher*) scores every unlabeled post, and a post becomes a training example, labeled with the
teacher's side, when

- the teacher is confident: its score is within ``pseudo_label_margin`` of 0 or 1, and
- the TF-IDF baseline, fitted on the same training posts, puts it on the same side of 0.5.

The baseline sees the text through character n-grams, the teacher through a transformer; posts
both agree on are rarely wrong, and the ones where they disagree are the ones a pseudo-label
would most likely teach wrongly. A *student* is then fine-tuned from the same base on the labels
plus the pseudo-labels, validated on the same validation posts, and replaces the teacher unless
its validation F1 is lower; it is the next round's teacher. The validation and evaluation posts
never become pseudo-labels: they are labeled, and ``unlabeled_posts`` leaves out every text a
labeled post shares.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from lawscreen.train.baseline import Baseline
from lawscreen.train.config import TrainConfig
from lawscreen.train.loop import Examples, FineTuned, fine_tune
from lawscreen.train.modeling import Base, score_texts

DECISION = 0.5  # the side of a score: legal at or above it


@dataclass(frozen=True, slots=True)
class Round:
    pseudo_legal: int
    pseudo_not_legal: int
    student_validation_f1: float | None  # None: no student (pseudo-labels of one class only)


@dataclass(slots=True)
class SelfTraining:
    unlabeled: int  # posts each teacher scored
    teacher_validation_f1: float  # the model trained on the labels alone
    rounds: list[Round] = field(default_factory=list)
    kept: str = "teacher"  # "teacher" or "student of round N"
    reason: str = ""  # why the rounds stopped early, if they did
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "unlabeled": self.unlabeled,
            "teacher_validation_f1": round(self.teacher_validation_f1, 4),
            "rounds": [
                {
                    "pseudo_labeled": {"legal": r.pseudo_legal, "not_legal": r.pseudo_not_legal},
                    "student_validation_f1": None
                    if r.student_validation_f1 is None
                    else round(r.student_validation_f1, 4),
                }
                for r in self.rounds
            ],
            "kept": self.kept,
            "reason": self.reason,
            "seconds": round(self.seconds, 1),
        }


def pseudo_labels(
    teacher_scores: NDArray[np.float64], baseline_scores: NDArray[np.float64], margin: float
) -> tuple[NDArray[np.intp], NDArray[np.int64]]:
    """Indices of the posts both models agree on with a confident teacher, and their labels."""
    confident = (teacher_scores <= margin) | (teacher_scores >= 1 - margin)
    agreed = (teacher_scores >= DECISION) == (baseline_scores >= DECISION)
    chosen = np.flatnonzero(confident & agreed)
    return chosen, (teacher_scores[chosen] >= DECISION).astype(np.int64)


def self_train(
    config: TrainConfig,
    base: Base,
    teacher: FineTuned,
    baseline: Baseline,
    train: Examples,
    validation: Examples,
    unlabeled_texts: Sequence[str],
) -> tuple[FineTuned, SelfTraining]:
    """The last student that validated at least as well as its teacher, or the teacher."""
    started = time.perf_counter()
    record = SelfTraining(unlabeled=len(unlabeled_texts), teacher_validation_f1=teacher.best_validation_f1)
    student_config = config.model_copy(
        update={"max_epochs": config.self_training_epochs, "patience": config.self_training_patience}
    )
    if not unlabeled_texts:
        record.reason = "no unlabeled posts"
        return teacher, record
    baseline_scores = baseline.score(unlabeled_texts)
    kept = teacher
    for number in range(1, config.self_training_rounds + 1):
        teacher_scores = score_texts(kept.model, base.tokenizer, unlabeled_texts, config.max_length)
        chosen, labels = pseudo_labels(teacher_scores, baseline_scores, config.pseudo_label_margin)
        legal = int(labels.sum())
        not_legal = len(labels) - legal
        if not legal or not not_legal:  # one class only would teach the student a prior, not a boundary
            record.rounds.append(Round(legal, not_legal, None))
            record.reason = f"round {number}: pseudo-labels of one class only"
            break
        augmented = Examples(
            [*train.texts, *(unlabeled_texts[i] for i in chosen)], [*train.labels, *labels.tolist()]
        )
        student = fine_tune(student_config, base, augmented, validation)
        record.rounds.append(Round(legal, not_legal, student.best_validation_f1))
        if student.best_validation_f1 < kept.best_validation_f1:
            record.reason = f"round {number}: the student validated worse than its teacher"
            break
        kept, record.kept = student, f"student of round {number}"
    record.seconds = time.perf_counter() - started
    return kept, record
