"""Small named values the bot keeps across restarts (its signing secret, say)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import String, Text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base


class KeyValue(Base):
    __tablename__ = "kv"
    key: Mapped[str] = mapped_column(String(60), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


async def get_or_set(session: AsyncSession, key: str, make) -> str:
    row = await session.get(KeyValue, key)
    if row is not None:
        return row.value
    try:
        async with session.begin_nested():
            session.add(KeyValue(key=key, value=make()))
    except IntegrityError:
        pass  # another process set it first; theirs wins
    row = await session.get(KeyValue, key, populate_existing=True)
    assert row is not None  # inserted above, or by the process that won the race
    return row.value


async def claim_period(session: AsyncSession, key: str, now: datetime, every: timedelta
                       ) -> bool:
    """True for the one caller, across processes, whose turn it is: `key` holds when the
    last turn began, and a turn comes once `every` has passed since. The row is locked (or,
    the first time, inserted) in the caller's transaction, so two workers never both win."""
    row = await session.get(KeyValue, key, with_for_update=True)
    if row is not None and now - datetime.fromisoformat(row.value) < every:
        return False
    if row is None:
        try:
            async with session.begin_nested():
                session.add(KeyValue(key=key, value=now.isoformat()))
        except IntegrityError:
            return False  # another worker took the first turn just now
    else:
        row.value = now.isoformat()
    return True


async def get(session: AsyncSession, key: str) -> str | None:
    row = await session.get(KeyValue, key)
    return row.value if row is not None else None


async def put(session: AsyncSession, key: str, value: str | None) -> None:
    """Set (or, with None, remove) a value; last writer wins."""
    row = await session.get(KeyValue, key)
    if value is None:
        if row is not None:
            await session.delete(row)
    elif row is None:
        session.add(KeyValue(key=key, value=value))
    else:
        row.value = value
