"""Residents' questions that no service guide answered, and the staff answer that closes each."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, affected, by_id, utcnow
from storage.people import Identity, Resident, Role, RoleKind
from storage.territory import Committee, Estate


class GuideQuestion(Base):
    __tablename__ = "guide_questions"
    __table_args__ = (Index("ix_guide_questions_open", "status", "station_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), index=True)
    estate_id: Mapped[int | None] = mapped_column(ForeignKey("estates.id"))
    station_id: Mapped[int | None] = mapped_column(ForeignKey("stations.id"))
    lang: Mapped[str] = mapped_column(String(10))
    question: Mapped[str] = mapped_column(Text)
    # draft (offered, not yet sent) / open (waiting for staff) / answered
    status: Mapped[str] = mapped_column(String(12), default="open")
    answer: Mapped[str | None] = mapped_column(Text)
    answered_by: Mapped[int | None] = mapped_column(ForeignKey("residents.id"))
    answered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


async def get_question(session: AsyncSession, question_id: int | None
                       ) -> GuideQuestion | None:
    return await by_id(session, GuideQuestion, question_id)


async def station_of_estate(session: AsyncSession, estate_id: int | None) -> int | None:
    if estate_id is None:
        return None
    return await session.scalar(
        select(Committee.station_id).join(Estate, Estate.committee_id == Committee.id)
        .where(Estate.id == estate_id))


async def open_count(session: AsyncSession, resident_id: int) -> int:
    return await session.scalar(select(func.count()).select_from(GuideQuestion).where(
        GuideQuestion.resident_id == resident_id, GuideQuestion.status == "open")) or 0


async def ask(session: AsyncSession, resident: Resident, question: str, lang: str, *,
              draft: bool = False) -> GuideQuestion:
    row = GuideQuestion(resident_id=resident.id, estate_id=resident.estate_id, lang=lang,
                        station_id=await station_of_estate(session, resident.estate_id),
                        question=question, status="draft" if draft else "open")
    session.add(row)
    await session.flush()
    return row


async def send_draft(session: AsyncSession, question_id: int, resident_id: int) -> bool:
    """The resident confirms an offered question; False when it is not their draft any more
    (sent already by a double tap, or never theirs)."""
    result = await session.execute(
        update(GuideQuestion)
        .where(GuideQuestion.id == question_id, GuideQuestion.resident_id == resident_id,
               GuideQuestion.status == "draft")
        .values(status="open", created_at=utcnow()))
    return (affected(result) or 0) == 1


async def prune_drafts(session: AsyncSession, older_than: datetime) -> int:
    result = await session.execute(
        delete(GuideQuestion).where(GuideQuestion.status == "draft",
                                    GuideQuestion.created_at < older_than))
    return affected(result) or 0


async def answerers(session: AsyncSession, station_id: int | None) -> list[Identity]:
    """Reachable identities of admins and of the staff of that station (all staff when the
    resident has not told us their home, so the question still reaches someone)."""
    staff = Role.kind == RoleKind.STAFF.value
    if station_id is not None:
        staff = staff & (Role.scope_id == station_id)
    rows = await session.scalars(
        select(Identity).join(Role, Role.resident_id == Identity.resident_id)
        .where((Role.kind == RoleKind.ADMIN.value) | staff, Identity.unreachable_at.is_(None))
        .order_by(Identity.id).distinct())
    return list(rows.all())


async def answer(session: AsyncSession, question_id: int, text: str, staff_id: int) -> bool:
    """Close an open question; False when someone answered it first (a guarded update, so
    two staff typing at once cannot both send)."""
    result = await session.execute(
        update(GuideQuestion)
        .where(GuideQuestion.id == question_id, GuideQuestion.status == "open")
        .values(status="answered", answer=text, answered_by=staff_id, answered_at=utcnow()))
    return (affected(result) or 0) == 1


async def open_questions(session: AsyncSession, station_ids: set[int] | None, limit: int = 10
                         ) -> list[GuideQuestion]:
    """Oldest open questions first, for the stations given (None: all); questions from
    residents without a home are everyone's."""
    q = select(GuideQuestion).where(GuideQuestion.status == "open")
    if station_ids is not None:
        q = q.where(GuideQuestion.station_id.in_(station_ids)
                    | GuideQuestion.station_id.is_(None))
    return list((await session.scalars(q.order_by(GuideQuestion.id).limit(limit))).all())
