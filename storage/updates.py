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


# Advisory locks in their own key space (two 32-bit keys): the first names "a person's
# updates", the second is the hash of the person. Held until the transaction ends.
_PERSON_SPACE = 0x5045  # "PE"
_HOLD_PERSON = text("SELECT pg_advisory_xact_lock(:space, hashtext(:person))")


async def hold_person(session: AsyncSession, platform: str, user_id: str) -> None:
    """Wait until no other process is handling an update of this person, and keep them until
    this transaction ends: with several workers on one PostgreSQL, one person's updates are
    handled one at a time, whichever worker received them. (In one process the dispatcher's
    lock already does it; on SQLite every update's transaction holds the write lock.)"""
    if session.bind.dialect.name == "postgresql":
        await session.execute(_HOLD_PERSON, {"space": _PERSON_SPACE,
                                             "person": f"{platform}:{user_id}"})


async def prune(session: AsyncSession, older_than: timedelta = timedelta(days=3)) -> int:
    result = await session.execute(
        delete(ProcessedUpdate).where(ProcessedUpdate.at < utcnow() - older_than)
    )
    return affected(result) or 0
