"""The model registry: promotion, rollback, the gate, and their commands."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from typer.testing import CliRunner

from lawscreen.cli import app
from lawscreen.database import transaction
from lawscreen.errors import RegistryError
from lawscreen.models import ModelStatus, ModelVersion
from lawscreen.repo import registry
from lawscreen.repo.registry import ModelScores, decide

MARGIN, MIN_F1 = 0.01, 0.7


def _scores(f1: float, flagged: int = 0) -> ModelScores:
    return ModelScores(n=100, f1=f1, hard_negatives=5, hard_negative_fp=flagged)


def test_gate_promotes_a_candidate_that_beats_production() -> None:
    decision = decide(_scores(0.95, flagged=1), _scores(0.93, flagged=1), margin=MARGIN, min_f1=MIN_F1)
    assert decision.promote
    assert "beats production" in decision.reason


@pytest.mark.parametrize("f1", [0.90, 0.93, 0.935])
def test_gate_keeps_a_candidate_that_is_worse_or_not_better_by_the_margin(f1: float) -> None:
    decision = decide(_scores(f1), _scores(0.93), margin=MARGIN, min_f1=MIN_F1)
    assert not decision.promote
    assert "does not beat production" in decision.reason


def test_gate_keeps_a_candidate_that_regresses_on_hard_negatives() -> None:
    decision = decide(_scores(0.99, flagged=2), _scores(0.90, flagged=1), margin=MARGIN, min_f1=MIN_F1)
    assert not decision.promote
    assert "hard negatives" in decision.reason


def test_gate_promotes_a_sane_first_model_only() -> None:
    assert decide(_scores(0.8), None, margin=MARGIN, min_f1=MIN_F1).promote
    refused = decide(_scores(0.5), None, margin=MARGIN, min_f1=MIN_F1)
    assert not refused.promote
    assert "below the minimum" in refused.reason


def _add(version: str, status: ModelStatus = ModelStatus.CANDIDATE, **fields: object) -> None:
    with transaction() as session:
        registry.register_candidate(
            session,
            version=version,
            base="tiny",
            artifact_path=f"/models/{version}",
            threshold=0.5,
            metrics={"model": {"evaluation": {"f1": 0.9}}, "baseline": {"evaluation": {"f1": 0.8}}},
            data_snapshot={"counts": {"train": {"legal": 3, "not_legal": 4}}},
            label_revision=7,
        )
        if status != ModelStatus.CANDIDATE or fields:
            model = registry.get_model(session, version)
            model.status = status
            for name, value in fields.items():
                setattr(model, name, value)


def _statuses() -> dict[str, str]:
    with transaction() as session:
        return {model.version: model.status for model in session.exec(select(ModelVersion)).all()}


def test_promotion_retires_the_previous_production_model(database: str) -> None:
    _add("a")
    _add("b")
    with transaction() as session:
        registry.promote(session, "a")
    with transaction() as session:
        promoted = registry.promote(session, "b")
        assert promoted.promoted_at is not None
    assert _statuses() == {"a": "retired", "b": "production"}
    with transaction() as session:
        registry.promote(session, "b")  # already production: nothing changes
    assert _statuses() == {"a": "retired", "b": "production"}


def test_the_database_refuses_a_second_production_model(database: str) -> None:
    _add("a", ModelStatus.PRODUCTION)
    with pytest.raises(IntegrityError):
        _add("b", ModelStatus.PRODUCTION)


def test_promoting_an_unknown_version_is_an_error(database: str) -> None:
    with pytest.raises(RegistryError, match="no model version 'nope'"), transaction() as session:
        registry.promote(session, "nope")


def test_rollback_walks_back_through_the_promotions(database: str) -> None:
    for version in ("a", "b", "c"):
        _add(version)
        with transaction() as session:
            registry.promote(session, version)
    with transaction() as session:
        assert registry.rollback(session).version == "b"
    assert _statuses() == {"a": "retired", "b": "production", "c": "retired"}
    with transaction() as session:
        assert registry.rollback(session).version == "a"
    with pytest.raises(RegistryError, match="nothing to roll back to"), transaction() as session:
        registry.rollback(session)
    assert _statuses() == {"a": "production", "b": "retired", "c": "retired"}


def test_rollback_needs_a_production_model(database: str) -> None:
    _add("a")
    with pytest.raises(RegistryError, match="no production model"), transaction() as session:
        registry.rollback(session)


def test_never_promoted_candidates_are_not_rollback_targets(database: str) -> None:
    _add("old", ModelStatus.RETIRED)  # retired without ever being promoted
    _add("prod", ModelStatus.PRODUCTION, promoted_at=datetime.now(UTC) - timedelta(days=1))
    with pytest.raises(RegistryError, match="nothing to roll back to"), transaction() as session:
        registry.rollback(session)


def test_gate_records_its_reason_and_promotes(database: str) -> None:
    _add("prod")
    with transaction() as session:
        registry.promote(session, "prod")
    _add("worse")
    _add("better")
    scores = {"prod": _scores(0.90), "worse": _scores(0.89), "better": _scores(0.95)}

    with transaction() as session:
        kept = registry.gate(session, "worse", lambda m: scores[m.version], margin=MARGIN, min_f1=MIN_F1)
    with transaction() as session:
        promoted = registry.gate(session, "better", lambda m: scores[m.version], margin=MARGIN, min_f1=MIN_F1)

    assert not kept.promote
    assert promoted.promote
    assert _statuses() == {"prod": "retired", "worse": "candidate", "better": "production"}
    with transaction() as session:
        assert registry.get_model(session, "worse").gate_reason == kept.reason
        assert registry.get_model(session, "better").gate_reason == promoted.reason
    with pytest.raises(RegistryError, match="not a candidate"), transaction() as session:
        registry.gate(session, "prod", lambda m: scores[m.version], margin=MARGIN, min_f1=MIN_F1)


def test_model_commands(database: str) -> None:
    runner = CliRunner()
    _add("m1")
    _add("m2")

    listed = runner.invoke(app, ["model", "list"])
    assert listed.exit_code == 0, listed.output
    assert "m1" in listed.output
    assert "m2" in listed.output

    no_production = runner.invoke(app, ["model", "show"])
    assert no_production.exit_code != 0

    promoted = runner.invoke(app, ["model", "promote", "m1"])
    assert promoted.exit_code == 0, promoted.output
    promoted = runner.invoke(app, ["model", "promote", "m2"])
    assert "retired m1" in promoted.output

    shown = runner.invoke(app, ["model", "show"])
    assert shown.exit_code == 0, shown.output
    assert "m2" in shown.output
    assert "production" in shown.output
    assert "baseline" in shown.output
    as_json = json.loads(runner.invoke(app, ["model", "show", "m1", "--json"]).output)
    assert (as_json["version"], as_json["status"]) == ("m1", "retired")

    rolled = runner.invoke(app, ["model", "rollback"])
    assert rolled.exit_code == 0, rolled.output
    assert "production: m1" in rolled.output
    assert _statuses() == {"m1": "production", "m2": "retired"}
