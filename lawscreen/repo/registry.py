from __future__ import annotations

from sqlmodel import Session, select

from lawscreen.models import ModelStatus, ModelVersion


def production_model(session: Session) -> ModelVersion | None:
    return session.exec(select(ModelVersion).where(ModelVersion.status == ModelStatus.PRODUCTION)).first()
