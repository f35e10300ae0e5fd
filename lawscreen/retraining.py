"""Starting a retrain: once per label snapshot, whoever asks (the hourly check, `lawscreen retrain`,
the bot's /retrain).

Two guards make it exactly once: the ``retrain_requests`` row is unique per label revision, and
the flow run is created with ``run_deployment(..., idempotency_key=...)`` for that revision, so a
repeated or concurrent start returns the run that already exists. If Prefect cannot be reached,
the request stays recorded without a flow run, and the next retrain check starts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL
from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Session, col, select

from lawscreen.database import transaction
from lawscreen.errors import LawscreenError
from lawscreen.models import RetrainRequest, RetrainStatus
from lawscreen.repo.labels import latest_revision

RETRAIN_DEPLOYMENT = "retrain/retrain"
REQUESTED_BY_CHARS = 200  # the column's width


@dataclass(frozen=True, slots=True)
class RetrainStart:
    request_id: int
    label_revision: int
    created: bool  # False: this snapshot had been requested before
    flow_run_id: str | None  # None: the flow could not be started (see error)
    error: str | None = None


def idempotency_key(label_revision: int) -> str:
    return f"retrain-labels-{label_revision}"


def request_retrain(session: Session, requested_by: str) -> tuple[RetrainRequest, bool]:
    """The request for the current label snapshot, and whether this call created it.

    The snapshot is the newest label revision: a request made when no label changed since the
    last one is the same request.
    """
    revision = latest_revision(session)
    created = session.execute(
        insert(RetrainRequest)
        .values(label_revision=revision, requested_by=requested_by[:REQUESTED_BY_CHARS])
        .on_conflict_do_nothing(index_elements=["label_revision"])
        .returning(col(RetrainRequest.id))
    ).first()
    request = session.exec(select(RetrainRequest).where(col(RetrainRequest.label_revision) == revision)).one()
    return request, created is not None


def start_retrain(requested_by: str) -> RetrainStart:
    """Record a request for the current label snapshot and start the retrain deployment for it."""
    with transaction() as session:
        request, created = request_retrain(session, requested_by)
        request_id, revision, flow_run_id = request.id, request.label_revision, request.flow_run_id
    assert request_id is not None
    if flow_run_id is not None:
        return RetrainStart(request_id, revision, created, flow_run_id)
    try:
        run_id = start_deployment(RETRAIN_DEPLOYMENT, {"label_revision": revision}, idempotency_key(revision))
    except Exception as exc:  # Prefect unreachable, deployment missing: the request waits
        return RetrainStart(request_id, revision, created, None, error=f"{type(exc).__name__}: {exc}")
    with transaction() as session:
        # Earlier requests still waiting for a run are covered by this one: it trains on their labels too.
        session.execute(
            update(RetrainRequest)
            .where(col(RetrainRequest.label_revision) <= revision, col(RetrainRequest.flow_run_id).is_(None))
            .values(flow_run_id=run_id, status=RetrainStatus.STARTED)
        )
    return RetrainStart(request_id, revision, created, run_id)


def start_deployment(name: str, parameters: dict[str, Any], key: str) -> str:
    """Create a run of deployment ``name`` without waiting for it; the same ``key`` gives the same run."""
    if not PREFECT_API_URL.value():
        # Without a server, Prefect would start a temporary one that has no deployments.
        raise LawscreenError("no Prefect server configured (PREFECT_API_URL), e.g. `lawscreen serve`")
    flow_run = run_deployment(name, parameters=parameters, timeout=0, idempotency_key=key, as_subflow=False)
    assert isinstance(flow_run, FlowRun)  # called from synchronous code, so not a coroutine
    return str(flow_run.id)


def waiting_requests() -> int:
    """Requests recorded but not yet started (Prefect was unreachable when they were made)."""
    with transaction() as session:
        waiting = select(func.count()).where(col(RetrainRequest.flow_run_id).is_(None))
        return session.exec(waiting).one()


def finish_requests(label_revision: int, *, succeeded: bool) -> None:
    """Mark the requests a retrain run covered as finished or failed."""
    with transaction() as session:
        session.execute(
            update(RetrainRequest)
            .where(col(RetrainRequest.label_revision) <= label_revision)
            .where(col(RetrainRequest.status).in_([RetrainStatus.REQUESTED, RetrainStatus.STARTED]))
            .values(status=RetrainStatus.FINISHED if succeeded else RetrainStatus.FAILED)
        )
