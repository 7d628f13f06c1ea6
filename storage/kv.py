"""Small named values the bot keeps across restarts (its signing secret, say)."""

from __future__ import annotations

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
