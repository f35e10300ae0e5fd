"""train_and_register and bootstrap_base against a real database, with tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlmodel import col, select
from typer.testing import CliRunner

from lawscreen.artifacts import META_FILE, REPORT_FILE, TOKENIZER_FILE, read_meta
from lawscreen.cli import app
from lawscreen.database import transaction
from lawscreen.errors import TrainingDataError
from lawscreen.importer import import_file
from lawscreen.models import (
    Chat,
    EvaluationPost,
    EvaluationReason,
    LabelOrigin,
    ModelVersion,
    Notification,
    NotificationKind,
    Post,
    Prediction,
    PredictionStatus,
)
from lawscreen.repo import registry
from lawscreen.repo.labels import NewLabel, upsert_labels
from lawscreen.settings import get_settings
from lawscreen.train import bootstrap_base, evaluation_scorer, pipeline, train_and_register
from lawscreen.train.bootstrap import read_bootstrap_record
from lawscreen.train.config import FULL_SIZE_LEARNING_RATE, FULL_SIZE_WIDTH, SMALL_MODEL_LEARNING_RATE
from lawscreen.train.modeling import load_base
from lawscreen.train.selftraining import pseudo_labels
from tests.model_fixtures import add_posts
from tests.train_fixtures import (
    import_posts,
    make_tiny_base,
    separable_posts,
    tiny_bootstrap_config,
    tiny_train_config,
    write_jsonl,
)

CORPUS = separable_posts(per_class=40)


@pytest.fixture
def tiny_base(tmp_path: Path) -> Path:
    return make_tiny_base(tmp_path / "base", [text for text, _ in separable_posts(per_class=60)])


def _evaluation_set() -> dict[int, str]:
    with transaction() as session:
        return dict(session.exec(select(EvaluationPost.post_id, EvaluationPost.reason)).all())


def _registered() -> list[ModelVersion]:
    with transaction() as session:
        return list(session.exec(select(ModelVersion)).all())


def _model_dirs() -> list[Path]:
    models_dir = get_settings().models_dir
    return sorted(models_dir.iterdir()) if models_dir.exists() else []


def test_training_writes_a_complete_model_directory_and_registers_a_candidate(
    database: str, tmp_path: Path, tiny_base: Path
) -> None:
    import_posts(tmp_path, CORPUS)

    result = train_and_register(tiny_train_config(tiny_base))

    directory = result.model_dir
    assert directory == get_settings().models_dir / result.version
    for name in ("config.json", "model.safetensors", TOKENIZER_FILE, META_FILE, REPORT_FILE):
        assert (directory / name).is_file(), name
    assert (directory / REPORT_FILE).read_bytes().startswith(b"\x89PNG")
    meta = read_meta(directory)
    assert meta.version == result.version
    assert meta.base == str(tiny_base.resolve())
    assert meta.max_length == 64
    assert 0.0 <= meta.threshold <= 1.0
    snapshot = meta.data_snapshot
    assert snapshot["label_revision"] > 0
    assert sum(sum(part.values()) for part in snapshot["counts"].values()) == 80
    assert set(snapshot["hashes"]) == {"train", "validation", "evaluation"}
    metrics = meta.metrics
    for who in ("model", "baseline"):
        for part in ("validation", "evaluation"):
            for key in (
                "accuracy",
                "precision",
                "recall",
                "f1",
                "roc_auc",
                "pr_auc",
                "brier",
                "tp",
                "fp",
                "tn",
                "fn",
            ):
                assert key in metrics[who][part], (who, part, key)
    assert metrics["model"]["evaluation"]["by_source"]["import"]["n"] == metrics["model"]["evaluation"]["n"]
    assert metrics["baseline"]["name"].startswith("tfidf")
    assert metrics["model"]["threshold"]["target_precision"] == 0.9
    assert metrics["training"]["learning_rate"] == 3e-3  # as configured
    calibration = metrics["model"]["calibration"]
    assert calibration["method"] == "platt"
    assert calibration["slope"] > 0
    assert calibration["fitted_on"] == metrics["model"]["validation"]["n"]
    assert calibration["evaluation_brier_after"] == pytest.approx(
        metrics["model"]["evaluation"]["brier"], abs=1e-4
    )

    (model,) = _registered()
    assert (model.version, model.status, model.artifact_path) == (result.version, "candidate", str(directory))
    assert model.threshold == meta.threshold
    assert model.metrics == metrics
    assert model.label_revision == snapshot["label_revision"]


@pytest.mark.parametrize(
    ("posts", "message"),
    [
        (CORPUS[:6], "at least 5 labeled posts of each class"),
        ([(text, 1) for text, _ in CORPUS], "0 not legal"),
    ],
    ids=["too-few", "single-class"],
)
def test_bad_labels_stop_training_before_anything_happens(
    database: str,
    tmp_path: Path,
    tiny_base: Path,
    monkeypatch: pytest.MonkeyPatch,
    posts: list[tuple[str, int]],
    message: str,
) -> None:
    import_posts(tmp_path, posts)
    monkeypatch.setattr(pipeline, "fine_tune", _must_not_run)

    with pytest.raises(TrainingDataError, match=message):
        train_and_register(tiny_train_config(tiny_base))

    assert _evaluation_set() == {}
    assert _registered() == []
    assert _model_dirs() == []


def _must_not_run(*args: object, **kwargs: object) -> None:
    raise AssertionError("training started")


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, RuntimeError])
def test_an_interrupted_training_leaves_no_model(
    database: str,
    tmp_path: Path,
    tiny_base: Path,
    monkeypatch: pytest.MonkeyPatch,
    interruption: type[BaseException],
) -> None:
    import_posts(tmp_path, CORPUS)
    written: list[Path] = []

    def interrupted_report(path: Path, **kwargs: object) -> None:
        # The checkpoint and tokenizer are written by now: the worst moment to stop.
        written.append(path.parent)
        raise interruption

    monkeypatch.setattr(pipeline, "write_report", interrupted_report)
    with pytest.raises(interruption):
        train_and_register(tiny_train_config(tiny_base))

    assert written
    assert not written[0].exists()
    assert _model_dirs() == []
    assert _registered() == []


def test_a_failed_registration_removes_the_published_directory(
    database: str, tmp_path: Path, tiny_base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import_posts(tmp_path, CORPUS)

    def refused(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "register_candidate", refused)
    with pytest.raises(KeyboardInterrupt):
        train_and_register(tiny_train_config(tiny_base))

    assert _model_dirs() == []


def test_the_export_hook_runs_on_the_finished_directory_before_registration(
    database: str, tmp_path: Path, tiny_base: Path
) -> None:
    import_posts(tmp_path, CORPUS)
    calls: list[tuple[list[str], list[int], int]] = []

    def export(model_dir: Path, texts: list[str], labels: list[int]) -> None:
        assert (model_dir / META_FILE).is_file()
        calls.append((sorted(p.name for p in model_dir.iterdir()), labels, len(_registered())))
        assert len(texts) == len(labels)
        (model_dir / "model.onnx").write_bytes(b"onnx")

    result = train_and_register(tiny_train_config(tiny_base), export=export)

    ((files, labels, registered_then),) = calls
    assert "model.safetensors" in files
    assert registered_then == 0
    assert len(labels) == result.metrics["model"]["evaluation"]["n"]
    assert (result.model_dir / "model.onnx").is_file()

    def failing_export(model_dir: Path, texts: list[str], labels: list[int]) -> None:
        raise RuntimeError("export failed")

    with pytest.raises(RuntimeError, match="export failed"):
        train_and_register(tiny_train_config(tiny_base), export=failing_export)
    assert len(_registered()) == 1
    assert _model_dirs() == [result.model_dir]


def test_the_evaluation_set_is_frozen_across_retrains(database: str, tmp_path: Path, tiny_base: Path) -> None:
    import_posts(tmp_path, CORPUS)
    first = train_and_register(tiny_train_config(tiny_base))
    frozen = _evaluation_set()
    assert set(frozen.values()) == {EvaluationReason.HOLDOUT}
    assert len(frozen) == round(0.2 * 40) * 2

    import_posts(tmp_path, separable_posts(per_class=10, seed=1), name="more.jsonl")
    second = train_and_register(tiny_train_config(tiny_base, seed=1))

    assert _evaluation_set() == frozen
    first_snapshot, second_snapshot = first.meta.data_snapshot, second.meta.data_snapshot
    assert first_snapshot["hashes"]["evaluation"] == second_snapshot["hashes"]["evaluation"]
    assert second_snapshot["label_revision"] > first_snapshot["label_revision"]
    trained_on = {post.post_id for post in second.split.train + second.split.validation}
    assert not trained_on & set(frozen)
    assert len(trained_on) == 100 - len(frozen)


def test_hard_negatives_are_evaluated_and_never_trained_on(
    database: str, tmp_path: Path, tiny_base: Path
) -> None:
    import_posts(tmp_path, CORPUS)
    train_and_register(tiny_train_config(tiny_base))
    frozen = _evaluation_set()
    with transaction() as session:
        model_id = session.exec(select(ModelVersion.id)).one()
        assert model_id is not None
        candidates = session.exec(
            select(Post.id).where(col(Post.id).not_in(frozen)).order_by(col(Post.id))
        ).all()
        flagged_by_prediction, notified, flagged_but_legal = (
            post_id for post_id in candidates[:3] if post_id
        )
        session.add(Chat(chat_id=42))
        session.flush()
        session.add(
            Prediction(
                post_id=flagged_by_prediction,
                model_version_id=model_id,
                status=PredictionStatus.SCORED,
                score=0.97,
                label=True,
            )
        )
        session.add(Notification(chat_id=42, kind=NotificationKind.ALERT, post_id=notified))
        session.add(
            Prediction(
                post_id=flagged_but_legal,
                model_version_id=model_id,
                status=PredictionStatus.SCORED,
                score=0.9,
                label=True,
            )
        )
        verdicts = [(flagged_by_prediction, False), (notified, False), (flagged_but_legal, True)]
        upsert_labels(
            session,
            [NewLabel(post_id=p, is_legal=v, origin=LabelOrigin.FEEDBACK, chat_id=42) for p, v in verdicts],
        )

    result = train_and_register(tiny_train_config(tiny_base))

    evaluation = _evaluation_set()
    assert evaluation[flagged_by_prediction] == evaluation[notified] == EvaluationReason.HARD_NEGATIVE
    assert flagged_but_legal not in evaluation
    assert {k: v for k, v in evaluation.items() if k in frozen} == frozen
    trained_on = {post.post_id for post in result.split.train + result.split.validation}
    assert flagged_by_prediction not in trained_on
    assert notified not in trained_on
    assert result.split.hard_negative_ids == {flagged_by_prediction, notified}
    assert result.metrics["model"]["hard_negatives"]["n"] == 2
    assert result.meta.data_snapshot["hard_negatives"] == 2


def test_cross_posts_count_once_and_never_straddle_the_split(
    database: str, tmp_path: Path, tiny_base: Path
) -> None:
    import_posts(tmp_path, CORPUS)
    import_posts(tmp_path, CORPUS, name="again.jsonl")  # same texts, same ids: nothing new
    import_file(
        write_jsonl(tmp_path / "forum.jsonl", CORPUS), source_name="forum"
    )  # copies on another source

    result = train_and_register(tiny_train_config(tiny_base))

    split = result.split
    texts = [post.text for post in split.train + split.validation + split.evaluation]
    assert len(texts) == len(set(texts)) == 80


def test_bootstrap_makes_a_base_that_trains(database: str, tmp_path: Path) -> None:
    import_posts(tmp_path, CORPUS)

    path = bootstrap_base(tiny_bootstrap_config(name="tiny"))

    assert path == get_settings().bases_dir / "tiny"
    record = read_bootstrap_record(path)
    assert record["pretraining"]["posts"] == 80
    assert record["pretraining"]["last_epoch_loss"] < record["pretraining"]["first_epoch_loss"]
    assert load_base("tiny", 64).tokenizer.get_vocab_size() == record["vocab_size"]
    assert [p.name for p in path.parent.iterdir()] == ["tiny"]  # no staging directory left

    result = train_and_register(tiny_train_config("tiny"))
    assert result.meta.base == str(path)
    assert result.meta.data_snapshot["base"]["bootstrap"]["pretraining"]["posts"] == 80

    # Continued pre-training of an existing base keeps its tokenizer and writes a new base.
    adapted = bootstrap_base(tiny_bootstrap_config(name="adapted", from_base="tiny", epochs=1))
    assert json.loads((adapted / TOKENIZER_FILE).read_text()) == json.loads(
        (path / TOKENIZER_FILE).read_text()
    )
    assert read_bootstrap_record(adapted)["from_base"] == "tiny"

    # Bootstrapping a name again replaces that base whole, leaving nothing else behind.
    created = read_bootstrap_record(path)["created_at"]
    assert bootstrap_base(tiny_bootstrap_config(name="tiny", epochs=1)) == path
    assert read_bootstrap_record(path)["created_at"] > created
    assert sorted(p.name for p in path.parent.iterdir()) == ["adapted", "tiny"]


def test_the_learning_rate_defaults_by_the_width_of_the_base(database: str, tmp_path: Path) -> None:
    # 1e-3 suits the small bootstrapped model; a full-size BERT collapses to one class there.
    import_posts(tmp_path, CORPUS)
    bootstrap_base(tiny_bootstrap_config(name="small", epochs=1))
    wide = bootstrap_base(tiny_bootstrap_config(name="wide", hidden_size=FULL_SIZE_WIDTH, epochs=1))
    adapted = bootstrap_base(tiny_bootstrap_config(name="adapted", from_base="wide", epochs=1))

    # From scratch, pre-training uses the small model's rate; continuing a wide base, the gentle one.
    assert read_bootstrap_record(wide)["pretraining"]["learning_rate"] == SMALL_MODEL_LEARNING_RATE
    assert read_bootstrap_record(adapted)["pretraining"]["learning_rate"] == FULL_SIZE_LEARNING_RATE
    for base, configured, used in (
        ("small", None, SMALL_MODEL_LEARNING_RATE),
        ("wide", None, FULL_SIZE_LEARNING_RATE),
        ("wide", 1e-4, 1e-4),
    ):
        result = train_and_register(tiny_train_config(base, max_epochs=1, learning_rate=configured))
        assert result.meta.metrics["training"]["learning_rate"] == used, base


def test_bootstrap_needs_posts(database: str) -> None:
    with pytest.raises(TrainingDataError, match="at least 20 posts"):
        bootstrap_base(tiny_bootstrap_config())
    assert not get_settings().bases_dir.exists()


def test_the_gate_scores_the_checkpoints_on_the_evaluation_set(
    database: str, tmp_path: Path, tiny_base: Path
) -> None:
    import_posts(tmp_path, CORPUS)
    first = train_and_register(tiny_train_config(tiny_base))
    with transaction() as session:
        scorer = evaluation_scorer(session)
        # Scoring the saved checkpoint reproduces the metrics measured at training time.
        assert (
            scorer(registry.get_model(session, first.version)).f1
            == first.metrics["model"]["evaluation"]["f1"]
        )
        decision = registry.gate(session, first.version, scorer, margin=0.01, min_f1=0.0)
    assert decision.promote

    # Same data, same seed: the same model, which does not beat production by the margin.
    second = train_and_register(tiny_train_config(tiny_base))
    with transaction() as session:
        decision = registry.gate(session, second.version, evaluation_scorer(session), margin=0.01, min_f1=0.0)
        assert registry.get_model(session, second.version).status == "candidate"
    assert not decision.promote
    assert "does not beat production" in decision.reason


def test_train_and_bootstrap_commands(database: str, tmp_path: Path) -> None:
    import_posts(tmp_path, CORPUS)
    runner = CliRunner()
    tiny = ["--vocab-size", "300", "--hidden-size", "32", "--layers", "1", "--heads", "2"]
    tiny += ["--intermediate-size", "64", "--max-length", "64", "--epochs", "2", "--no-progress"]

    made = runner.invoke(app, ["model", "bootstrap", "--name", "tiny", "--mlm-probability", "0.3", *tiny])
    assert made.exit_code == 0, made.output
    assert "lawscreen train --base tiny" in made.output
    recorded = read_bootstrap_record(get_settings().bases_dir / "tiny")["config"]
    assert (recorded["mlm_probability"], recorded["hidden_size"], recorded["epochs"]) == (0.3, 32, 2)

    trained = runner.invoke(
        app, ["train", "--base", "tiny", "--max-length", "64", "--max-epochs", "3", "--no-progress", "--gate"]
    )
    assert trained.exit_code == 0, trained.output
    for expected in ("model eval", "baseline eval", "per source", "parity on", "candidate", "gate:"):
        assert expected in trained.output
    # Exported as it was trained, so the promoted model scores the backlog straight away.
    with transaction() as session:
        production = registry.production_model(session)
    assert production is not None
    assert (Path(production.artifact_path) / "model.onnx").is_file()
    assert read_meta(Path(production.artifact_path)).export["parity"]["passed"]
    scored = runner.invoke(app, ["classify-pending"])
    assert scored.exit_code == 0, scored.output

    invalid = runner.invoke(app, ["train", "--base", "tiny", "--loss", "hinge"])
    assert invalid.exit_code == 2
    assert "loss" in invalid.output


def test_self_training_learns_from_the_unlabeled_posts(
    database: str, tmp_path: Path, tiny_base: Path
) -> None:
    import_posts(tmp_path, CORPUS)
    unlabeled = [text for text, _ in separable_posts(per_class=30, seed=1)]
    with transaction() as session:
        labeled_text = session.exec(select(Post.text).order_by(col(Post.id))).first()
    assert labeled_text is not None
    add_posts([*unlabeled, labeled_text])  # a cross-post of a labeled post: never a pseudo-label

    # A wide margin: a tiny model trained for seconds scores few posts beyond 0.9.
    result = train_and_register(tiny_train_config(tiny_base, pseudo_label_margin=0.4))

    assert result.meta.data_snapshot["unlabeled"]["posts"] == len(unlabeled)
    summary = result.metrics["training"]["self_training"]
    assert summary["unlabeled"] == len(unlabeled)
    first = summary["rounds"][0]
    assert first["pseudo_labeled"]["legal"] > 0
    assert first["pseudo_labeled"]["not_legal"] > 0
    assert sum(first["pseudo_labeled"].values()) <= len(unlabeled)
    assert first["student_validation_f1"] is not None
    assert len(summary["rounds"]) <= 2  # the default rounds
    kept = [f"student of round {n}" for n in range(1, len(summary["rounds"]) + 1)]
    assert summary["kept"] in ["teacher", *kept]
    if summary["kept"] != "teacher":
        student = summary["rounds"][int(summary["kept"].split()[-1]) - 1]
        assert student["student_validation_f1"] >= summary["teacher_validation_f1"]
    assert result.metrics["model"]["evaluation"]["f1"] >= 0.9


def test_self_training_is_skipped_without_unlabeled_posts_and_when_off(
    database: str, tmp_path: Path, tiny_base: Path
) -> None:
    import_posts(tmp_path, CORPUS)

    alone = train_and_register(tiny_train_config(tiny_base))
    summary = alone.metrics["training"]["self_training"]
    assert (summary["kept"], summary["reason"], summary["rounds"]) == ("teacher", "no unlabeled posts", [])

    add_posts([text for text, _ in separable_posts(per_class=5, seed=1)])
    off = train_and_register(tiny_train_config(tiny_base, self_training=False))
    assert off.metrics["training"]["self_training"] is None
    assert off.meta.data_snapshot["unlabeled"]["posts"] == 0
    # Without the student, the same seed trains the same model as before the posts arrived.
    assert off.metrics["model"]["evaluation"] == alone.metrics["model"]["evaluation"]


def test_pseudo_labels_need_a_confident_teacher_and_the_baselines_agreement() -> None:
    teacher = np.array([0.95, 0.05, 0.95, 0.5, 0.92, 0.02])
    baseline = np.array([0.80, 0.30, 0.40, 0.9, 0.51, 0.60])
    chosen, labels = pseudo_labels(teacher, baseline, margin=0.1)
    assert chosen.tolist() == [0, 1, 4]  # 2 and 5: the baseline disagrees; 3: the teacher is unsure
    assert labels.tolist() == [1, 0, 1]
