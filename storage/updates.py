"""Platform update ids already handled, so a redelivered update is handled once."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import String, bindparam, delete, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, UTCDateTime, affected, utcnow


class ProcessedUpdate(Base):
    __tablename__ = "processed_updates"
    platform: Mapped[str] = mapped_column(String(20), primary_key=True)
    update_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


# Written as text so it is compiled once and cached for every update: the dialects' own
# `insert().on_conflict_do_nothing()` carries no cache key and is compiled anew each time.
# ON CONFLICT DO NOTHING is the same statement on SQLite (3.24+) and PostgreSQL.
_CLAIM = text(
    "INSERT INTO processed_updates (platform, update_id, at) "
    "VALUES (:platform, :update_id, :at) ON CONFLICT DO NOTHING"
).bindparams(bindparam("at", type_=UTCDateTime()))


async def claim(session: AsyncSession, platform: str, update_id: str) -> bool:
    """True the first time an update is seen; the primary key decides between racers (one
    INSERT ... ON CONFLICT DO NOTHING: no savepoint on the path of every update)."""
    result = await session.execute(
        _CLAIM, {"platform": platform, "update_id": update_id, "at": utcnow()})
    return affected(result) == 1


async def prune(session: AsyncSession, older_than: timedelta = timedelta(days=3)) -> int:
    result = await session.execute(
        delete(ProcessedUpdate).where(ProcessedUpdate.at < utcnow() - older_than)
    )
    return affected(result) or 0
