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
    return (await session.get(KeyValue, key, populate_existing=True)).value
