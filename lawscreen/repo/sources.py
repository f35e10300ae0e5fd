from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Session, select

from lawscreen.models import Source, SourceKind


def ensure_source(
    session: Session, name: str, kind: SourceKind, config: dict[str, Any] | None = None
) -> Source:
    """The source called ``name``, created on first use. Safe when two processes race to create it."""
    stmt = insert(Source).values(name=name, kind=kind, config=config or {})
    session.execute(stmt.on_conflict_do_nothing(index_elements=[Source.name]))
    return session.exec(select(Source).where(Source.name == name)).one()


def list_sources(session: Session) -> list[Source]:
    return list(session.exec(select(Source).order_by(Source.name)))
