"""Append-only log of every privileged action."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, utcnow

# Who acted when actor_id is empty, kept as detail["by"]; nothing there means the CLI.
SYSTEM_ACTORS = ("cli", "scheduler", "system", "open311")


class AuditEntry(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("residents.id"))  # see SYSTEM_ACTORS
    action: Mapped[str] = mapped_column(String(60), index=True)
    target: Mapped[str | None] = mapped_column(String(120))
    detail: Mapped[dict] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


async def record(
    session: AsyncSession, actor_id: int | None, action: str, target: str | None = None,
    **detail,
) -> None:
    session.add(AuditEntry(actor_id=actor_id, action=action, target=target, detail=detail))


async def recent(session: AsyncSession, limit: int = 50) -> list[AuditEntry]:
    rows = await session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit))
    return list(rows.all())
