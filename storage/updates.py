"""Platform update ids already handled, so a redelivered update is handled once."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import String, delete
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, utcnow


class ProcessedUpdate(Base):
    __tablename__ = "processed_updates"
    platform: Mapped[str] = mapped_column(String(20), primary_key=True)
    update_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


async def claim(session: AsyncSession, platform: str, update_id: str) -> bool:
    """True the first time an update is seen; the primary key decides between racers (one
    INSERT ... ON CONFLICT DO NOTHING: no savepoint on the path of every update)."""
    if session.bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(ProcessedUpdate).values(platform=platform, update_id=update_id, at=utcnow())
    result = await session.execute(stmt.on_conflict_do_nothing())
    return result.rowcount == 1


async def prune(session: AsyncSession, older_than: timedelta = timedelta(days=3)) -> int:
    result = await session.execute(
        delete(ProcessedUpdate).where(ProcessedUpdate.at < utcnow() - older_than)
    )
    return result.rowcount or 0
