from __future__ import annotations

import json
from pathlib import Path

from sqlmodel import select
from typer.testing import CliRunner

from lawscreen.cli import app
from lawscreen.database import transaction
from lawscreen.importer import import_file
from lawscreen.models import ModelStatus, ModelVersion, Post, Prediction, PredictionStatus, Source
from lawscreen.repo import labels


def _status() -> dict[str, object]:
    result = CliRunner().invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    report: dict[str, object] = json.loads(result.output)
    return report


def test_status_counts_relative_to_the_production_model(database: str, tmp_path: Path) -> None:
    first = tmp_path / "first.jsonl"
    first.write_text("\n".join(json.dumps({"text": f"欠薪问题{i}", "label": i % 2}) for i in range(6)))
    import_file(first)
    with transaction() as session:
        snapshot = labels.latest_revision(session)
        model = ModelVersion(
            version="m1",
            status=ModelStatus.PRODUCTION,
            base="tiny",
            artifact_path="/models/m1",
            threshold=0.42,
            label_revision=snapshot,
        )
        session.add(model)
        session.flush()
        assert model.id is not None
        post_ids = session.exec(select(Post.id)).all()[:4]
        for post_id in post_ids:
            assert post_id is not None
            session.add(
                Prediction(
                    post_id=post_id,
                    model_version_id=model.id,
                    status=PredictionStatus.SCORED,
                    score=0.1,
                    label=False,
                )
            )
    second = tmp_path / "second.jsonl"
    second.write_text(json.dumps({"text": "新的标签", "label": 1}))
    import_file(second)

    report = _status()

    assert report["posts"] == 7
    assert report["unscored_posts"] == 3  # 2 old ones + the new one
    assert report["labels"] == {"legal": 4, "not_legal": 3, "total": 7, "since_last_training": 1}
    production = report["production_model"]
    assert isinstance(production, dict)
    assert (production["version"], production["threshold"]) == ("m1", 0.42)


def test_status_shows_source_health(database: str) -> None:
    with transaction() as session:
        session.add(Source(name="v2ex-qna", kind="v2ex", consecutive_failures=3, last_error="HTTP 403"))
    sources = _status()["sources"]
    assert isinstance(sources, list)
    assert sources[0]["name"] == "v2ex-qna"
    assert (sources[0]["consecutive_failures"], sources[0]["last_error"]) == (3, "HTTP 403")

    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    assert "v2ex-qna" in result.output
    assert "HTTP 403" in result.output
