"""Manual retrain requests (/retrain): one per label snapshot, so asking twice starts one retrain.

The snapshot is the newest label revision (``repo.labels.latest_revision``): a request made when
no label changed since the last one is the same request. Until the orchestration wires it to the
retrain flow, the bot records the request and says so. The wiring point: after the transaction
that created a request commits, start the flow with ``run_deployment(...,
idempotency_key=f"retrain-{request.label_revision}")`` and store its ``flow_run_id``.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Session, col

from lawscreen.models import RetrainRequest
from lawscreen.repo.labels import latest_revision

REQUESTED_BY_CHARS = 200  # the column's width


def request_retrain(session: Session, requested_by: str) -> tuple[RetrainRequest, bool]:
    """The request for the current label snapshot, and whether this call created it."""
    revision = latest_revision(session)
    created = session.execute(
        insert(RetrainRequest)
        .values(label_revision=revision, requested_by=requested_by[:REQUESTED_BY_CHARS])
        .on_conflict_do_nothing(index_elements=["label_revision"])
        .returning(col(RetrainRequest.id))
    ).first()
    request = session.scalars(
        select(RetrainRequest).where(col(RetrainRequest.label_revision) == revision)
    ).one()
    return request, created is not None
