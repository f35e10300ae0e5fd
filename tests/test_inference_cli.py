"""`lawscreen classify`, `evaluate` and `classify-pending`, run as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lawscreen.database import transaction
from lawscreen.models import ModelStatus, ModelVersion
from tests.conftest import run_cli
from tests.model_fixtures import shared_model, synthetic_posts


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_model(tmp_path_factory)


def _env(database: str, tmp_path: Path) -> dict[str, str]:
    return {"LAWSCREEN_DATABASE_URL": database, "LAWSCREEN_DATA_DIR": str(tmp_path / "data")}


def _register_production(model_dir: Path, threshold: float = 0.5) -> None:
    with transaction() as session:
        session.add(
            ModelVersion(
                version="m1",
                status=ModelStatus.PRODUCTION,
                base="tiny",
                artifact_path=str(model_dir),
                threshold=threshold,
            )
        )


def test_classify_prints_a_json_line_per_text(model_dir: Path, tmp_path: Path) -> None:
    # A model directory path needs no database.
    env = {"LAWSCREEN_DATA_DIR": str(tmp_path / "data")}
    result = run_cli(
        "classify",
        "--text",
        "公司拖欠工资三个月，能起诉吗？",
        "--model",
        str(model_dir),
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    answer = json.loads(line)
    assert set(answer) == {"score", "label"}
    assert answer["score"] > 0.5
    assert answer["label"] == 1


def test_classify_reads_stdin_lines_with_the_production_model(
    model_dir: Path, database: str, tmp_path: Path
) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    _register_production(model_dir)
    lines = "周末想去海边旅游，求推荐\n\n房东不退押金，需要请律师吗？\n"
    result = subprocess.run(
        [sys.executable, "-m", "lawscreen", "classify"],
        input=lines,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), **_env(database, tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["label"] for a in answers] == [0, None, 1]  # one line out per line in, blank skipped
    assert answers[1] == {"score": None, "label": None, "skipped": "empty"}


def test_evaluate_prints_sensible_metrics(model_dir: Path, database: str, tmp_path: Path) -> None:
    _register_production(model_dir)
    texts, labels = synthetic_posts(80, seed=11)
    data = tmp_path / "heldout.jsonl"
    lines = [
        json.dumps({"title": "", "text": t, "label": y}, ensure_ascii=False)
        for t, y in zip(texts, labels, strict=True)
    ]
    data.write_text("\n".join([*lines, "not json"]) + "\n")

    result = run_cli("evaluate", "--data", str(data), env=_env(database, tmp_path), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert {"precision", "recall", "f1", "accuracy", "roc_auc", "n"} <= set(metrics)
    assert metrics["n"] == 80
    assert metrics["model"] == "m1"
    assert metrics["rejected_lines"] == 1
    assert "line 81: not valid JSON" in result.stderr
    assert metrics["tp"] + metrics["fn"] == 40
    assert metrics["f1"] >= 0.9  # the tiny model learned the synthetic task
    assert metrics["roc_auc"] >= 0.95


def test_evaluate_without_a_production_model_is_a_clear_error(database: str, tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "房东不退押金", "label": 1}\n')
    result = run_cli("evaluate", "--data", str(data), env=_env(database, tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert "there is no production model" in result.stderr
    assert "Traceback" not in result.stderr


def test_classify_pending_prints_a_summary(model_dir: Path, database: str, tmp_path: Path) -> None:
    _register_production(model_dir)
    texts, _ = synthetic_posts(12, seed=12)
    data = tmp_path / "posts.jsonl"
    data.write_text("\n".join(json.dumps({"text": t}, ensure_ascii=False) for t in texts) + "\n")
    env = _env(database, tmp_path)
    assert run_cli("import", str(data), "--label", "0", env=env, cwd=tmp_path).returncode == 0

    result = run_cli("classify-pending", "--chunk-size", "5", env=env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "model m1: 12 scored, 0 skipped (empty), 6 hits, 0 notifications queued" in result.stdout
    again = run_cli("classify-pending", env=env, cwd=tmp_path)
    assert "model m1: 0 scored" in again.stdout
