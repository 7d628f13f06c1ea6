"""Per-identity conversation state, kept in the database so it survives restarts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, delete
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, utcnow


class DialogState(Base):
    __tablename__ = "dialog_states"
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(60))
    data: Mapped[dict] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


async def load(session: AsyncSession, identity_id: int) -> DialogState | None:
    return await session.get(DialogState, identity_id)


async def save(session: AsyncSession, identity_id: int, name: str | None, data: dict) -> None:
    row = await session.get(DialogState, identity_id)
    if name is None:
        if row is not None:
            await session.execute(delete(DialogState).where(DialogState.identity_id == identity_id))
        return
    if row is None:
        session.add(DialogState(identity_id=identity_id, name=name, data=dict(data)))
    else:
        row.name = name
        row.data = dict(data)
