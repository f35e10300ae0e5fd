"""What `lawscreen status` reports: one dict, printed as tables or as JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import exists, func
from sqlmodel import Session, col, select

from lawscreen.database import database_url, is_embedded, redacted
from lawscreen.models import ModelVersion, Post, Prediction
from lawscreen.repo import labels
from lawscreen.repo.registry import production_model
from lawscreen.repo.sources import list_sources


def collect(session: Session) -> dict[str, Any]:
    production = production_model(session)
    by_class = labels.count_by_class(session)
    return {
        "database": {"embedded": is_embedded(), "url": redacted(database_url())},
        "posts": session.exec(select(func.count()).select_from(Post)).one(),
        "unscored_posts": _count_unscored(session, production),
        "labels": {
            **by_class,
            "total": by_class["legal"] + by_class["not_legal"],
            "since_last_training": labels.count_since(
                session, production.label_revision if production else 0
            ),
        },
        "production_model": _model(production),
        "sources": [
            {
                "name": source.name,
                "kind": source.kind,
                "enabled": source.enabled,
                "last_run_at": _iso(source.last_run_at),
                "last_success_at": _iso(source.last_success_at),
                "consecutive_failures": source.consecutive_failures,
                "last_error": source.last_error,
            }
            for source in list_sources(session)
        ],
    }


def _count_unscored(session: Session, production: ModelVersion | None) -> int:
    query = select(func.count()).select_from(Post)
    if production is not None:
        scored = exists().where(
            col(Prediction.post_id) == col(Post.id), col(Prediction.model_version_id) == production.id
        )
        query = query.where(~scored)
    return session.exec(query).one()


def _model(model: ModelVersion | None) -> dict[str, Any] | None:
    if model is None:
        return None
    return {
        "version": model.version,
        "base": model.base,
        "threshold": model.threshold,
        "metrics": model.metrics,
        "promoted_at": _iso(model.promoted_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
