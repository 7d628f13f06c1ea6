"""Append-only log of every privileged action."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, utcnow
from storage.people import Resident

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


def system_actor_key(entry: AuditEntry) -> str | None:
    """The text key naming who acted without being a person (the scheduler, the bot itself,
    the command line); None when a person did (entry.actor_id)."""
    if entry.actor_id is not None:
        return None
    by = (entry.detail or {}).get("by", "cli")
    return f"admin.audit_by_{by if by in SYSTEM_ACTORS else 'cli'}"


async def record(
    session: AsyncSession, actor_id: int | None, action: str, target: str | None = None,
    **detail,
) -> None:
    session.add(AuditEntry(actor_id=actor_id, action=action, target=target, detail=detail))


async def recent(session: AsyncSession, limit: int = 50) -> list[AuditEntry]:
    rows = await session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit))
    return list(rows.all())


async def search(session: AsyncSession, *, person_id: int | None = None,
                 action: str | None = None, limit: int = 50, offset: int = 0
                 ) -> tuple[list[AuditEntry], int]:
    """Entries newest first, with how many match: those a person did or that were done to
    them (`resident:N`), and/or whose action is `action` or starts with `action.` (`verify`
    finds verify.approve and verify.reject)."""
    conds = []
    if person_id is not None:
        conds.append(or_(AuditEntry.actor_id == person_id,
                         AuditEntry.target == f"resident:{person_id}"))
    if action:
        conds.append(or_(AuditEntry.action == action,
                         AuditEntry.action.startswith(action.rstrip(".") + ".",
                                                      autoescape=True)))
    total = await session.scalar(select(func.count(AuditEntry.id)).where(*conds))
    rows = await session.scalars(select(AuditEntry).where(*conds)
                                 .order_by(AuditEntry.id.desc()).limit(limit).offset(offset))
    return list(rows.all()), int(total or 0)


async def actions(session: AsyncSession) -> list[str]:
    """Every action the log holds, for the search's choices."""
    rows = await session.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action))
    return list(rows.all())


async def actor_names(session: AsyncSession, entries: list[AuditEntry]) -> dict[int, str | None]:
    """The names of the people who acted in these entries, by resident id."""
    ids = {e.actor_id for e in entries if e.actor_id is not None}
    if not ids:
        return {}
    rows = await session.execute(select(Resident.id, Resident.display_name)
                                 .where(Resident.id.in_(ids)))
    return {resident_id: name for resident_id, name in rows.all()}
