"""The model registry: candidates, the one production model, promotion, rollback and the gate.

Training registers every model as a candidate. A candidate becomes production by an explicit
``promote`` or by the automatic ``gate``; the model it replaces is retired in the same transaction,
and the database's partial unique index refuses a second production model whatever happens.
``rollback`` restores the model promoted before the current one.

The gate's decision is the pure function ``decide``; ``gate`` gathers its inputs. Scoring models
needs torch, which this module must not import (the inference install has none), so ``gate`` takes
the scoring function as an argument: ``lawscreen.train.scoring.evaluation_scorer`` on the training
worker, a stub in tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from lawscreen.errors import RegistryError
from lawscreen.models import ModelStatus, ModelVersion

# Arbitrary number naming the advisory lock that serialises promotions, rollbacks and gates.
REGISTRY_LOCK = 0x1A35C7EF


def production_model(session: Session) -> ModelVersion | None:
    return session.exec(select(ModelVersion).where(ModelVersion.status == ModelStatus.PRODUCTION)).first()


def register_candidate(
    session: Session,
    *,
    version: str,
    base: str,
    artifact_path: str,
    threshold: float,
    metrics: dict[str, Any],
    data_snapshot: dict[str, Any],
    label_revision: int,
) -> ModelVersion:
    model = ModelVersion(
        version=version,
        status=ModelStatus.CANDIDATE,
        base=base,
        artifact_path=artifact_path,
        threshold=threshold,
        metrics=metrics,
        data_snapshot=data_snapshot,
        label_revision=label_revision,
    )
    session.add(model)
    session.flush()
    return model


def get_model(session: Session, version: str) -> ModelVersion:
    model = session.exec(select(ModelVersion).where(ModelVersion.version == version)).first()
    if model is None:
        raise RegistryError(f"no model version {version!r} (lawscreen model list shows them)")
    return model


def list_models(session: Session) -> list[ModelVersion]:
    """Newest first."""
    return list(
        session.exec(
            select(ModelVersion).order_by(col(ModelVersion.created_at).desc(), col(ModelVersion.id).desc())
        ).all()
    )


def promote(session: Session, version: str) -> ModelVersion:
    """Make ``version`` the production model and retire the current one, in the caller's transaction."""
    _lock(session)
    model = get_model(session, version)
    if model.status == ModelStatus.PRODUCTION:
        return model
    current = production_model(session)
    if current is not None:
        current.status = ModelStatus.RETIRED
        # Flush the retirement first: the unique index checks each statement, not the transaction.
        session.flush()
    model.status = ModelStatus.PRODUCTION
    model.promoted_at = datetime.now(UTC)
    session.flush()
    return model


def rollback(session: Session) -> ModelVersion:
    """Retire the production model and restore the one promoted before it; return the restored one.

    The restored model keeps its original ``promoted_at``, so rolling back again goes one further
    back in history instead of swapping the same two models.
    """
    _lock(session)
    current = production_model(session)
    if current is None or current.promoted_at is None:
        raise RegistryError("there is no production model to roll back")
    previous = session.exec(
        select(ModelVersion)
        .where(
            ModelVersion.status == ModelStatus.RETIRED,
            col(ModelVersion.promoted_at) < current.promoted_at,
        )
        .order_by(col(ModelVersion.promoted_at).desc())
    ).first()
    if previous is None:
        raise RegistryError(f"{current.version} is the first model ever promoted: nothing to roll back to")
    current.status = ModelStatus.RETIRED
    session.flush()
    previous.status = ModelStatus.PRODUCTION
    session.flush()
    return previous


@dataclass(frozen=True, slots=True)
class ModelScores:
    """A model judged on the frozen evaluation set, at its own threshold."""

    n: int
    f1: float
    hard_negatives: int  # how many evaluation posts are hard negatives
    hard_negative_fp: int  # how many of them the model flags again

    def describe(self) -> str:
        flagged = f"{self.hard_negative_fp}/{self.hard_negatives}"
        return f"F1 {self.f1:.4f} on {self.n} posts, {flagged} hard negatives flagged"


@dataclass(frozen=True, slots=True)
class GateDecision:
    promote: bool
    reason: str


def decide(
    candidate: ModelScores, production: ModelScores | None, *, margin: float, min_f1: float
) -> GateDecision:
    """Promote a candidate only if it beats production by ``margin`` in F1 on the frozen evaluation
    set and flags no more hard negatives than production does. With no production model, a
    candidate with F1 of at least ``min_f1`` is promoted: something is better than nothing, a
    broken model is not."""
    if production is None:
        if candidate.f1 >= min_f1:
            return GateDecision(True, f"first production model: {candidate.describe()}")
        return GateDecision(False, f"F1 {candidate.f1:.4f} is below the minimum {min_f1} for a first model")
    if candidate.hard_negative_fp > production.hard_negative_fp:
        return GateDecision(
            False,
            f"regresses on hard negatives: flags {candidate.hard_negative_fp} of {candidate.hard_negatives}, "
            f"production {production.hard_negative_fp}",
        )
    if candidate.f1 < production.f1 + margin:
        return GateDecision(
            False,
            f"F1 {candidate.f1:.4f} does not beat production's {production.f1:.4f} by the margin {margin}",
        )
    return GateDecision(True, f"beats production: {candidate.describe()}; production {production.describe()}")


def gate(
    session: Session,
    version: str,
    score: Callable[[ModelVersion], ModelScores],
    *,
    margin: float,
    min_f1: float,
) -> GateDecision:
    """Score the candidate and production on the frozen evaluation set as it is today (it may have
    gained hard negatives since production was trained), then promote or record why not."""
    _lock(session)
    candidate = get_model(session, version)
    if candidate.status != ModelStatus.CANDIDATE:
        raise RegistryError(f"{version} is {candidate.status}, not a candidate")
    current = production_model(session)
    decision = decide(
        score(candidate), score(current) if current is not None else None, margin=margin, min_f1=min_f1
    )
    candidate.gate_reason = decision.reason
    if decision.promote:
        promote(session, version)
    session.flush()
    return decision


def _lock(session: Session) -> None:
    session.execute(select(func.pg_advisory_xact_lock(REGISTRY_LOCK)))
