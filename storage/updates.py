"""Platform update ids already handled, so a redelivered update is handled once."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import String, delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, utcnow


class ProcessedUpdate(Base):
    __tablename__ = "processed_updates"
    platform: Mapped[str] = mapped_column(String(20), primary_key=True)
    update_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


async def claim(session: AsyncSession, platform: str, update_id: str) -> bool:
    """True the first time an update is seen; the primary key decides between racers."""
    try:
        async with session.begin_nested():
            session.add(ProcessedUpdate(platform=platform, update_id=update_id))
            await session.flush()
    except IntegrityError:
        return False
    return True


async def prune(session: AsyncSession, older_than: timedelta = timedelta(days=3)) -> int:
    result = await session.execute(
        delete(ProcessedUpdate).where(ProcessedUpdate.at < utcnow() - older_than)
    )
    return result.rowcount or 0
