"""The council's agenda: residents' proposals, support (one per resident, held by the primary
key), the threshold that puts a proposal on the agenda, the council's decision and what the
committee did about it. Every step is a guarded update, so it happens once."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, affected, utcnow

DECISIONS = ("adopted", "rejected", "referred")


class Status(enum.StrEnum):
    OPEN = "open"  # gathering support
    AGENDA = "agenda"  # on the council's agenda
    ADOPTED = "adopted"
    REJECTED = "rejected"
    REFERRED = "referred"
    DONE = "done"  # adopted and carried out


class Proposal(Base):
    __tablename__ = "proposals"
    id: Mapped[int] = mapped_column(primary_key=True)
    committee_id: Mapped[int] = mapped_column(ForeignKey("committees.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), index=True)
    title: Mapped[str] = mapped_column(String(120))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), default=Status.OPEN.value, index=True)
    supporters: Mapped[int] = mapped_column(default=0)
    threshold: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    agenda_at: Mapped[datetime | None]
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("residents.id"))
    decided_at: Mapped[datetime | None]
    decision_note: Mapped[str | None] = mapped_column(Text)
    implemented_by: Mapped[int | None] = mapped_column(ForeignKey("residents.id"))
    implemented_at: Mapped[datetime | None]
    implementation_note: Mapped[str | None] = mapped_column(Text)


class ProposalSupport(Base):
    __tablename__ = "proposal_supports"
    proposal_id: Mapped[int] = mapped_column(ForeignKey("proposals.id"), primary_key=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), primary_key=True,
                                             index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)


async def submit(session: AsyncSession, *, committee_id: int, author_id: int, title: str,
                 body: str, threshold: int) -> Proposal:
    row = Proposal(committee_id=committee_id, author_id=author_id, title=title, body=body,
                   threshold=threshold)
    session.add(row)
    await session.flush()
    return row


class Support(enum.StrEnum):
    COUNTED = "counted"
    REACHED = "reached"  # this support put it on the agenda
    ALREADY = "already"
    OWN = "own"
    NOT_OPEN = "not_open"


async def support(session: AsyncSession, proposal: Proposal, resident_id: int,
                  now: datetime) -> Support:
    if proposal.author_id == resident_id:
        return Support.OWN
    if await has_supported(session, proposal.id, resident_id):
        # The usual second tap; the primary key below still decides a true race.
        return Support.ALREADY
    try:
        async with session.begin_nested():
            session.add(ProposalSupport(proposal_id=proposal.id, resident_id=resident_id, at=now))
            await session.flush()
            counted = await session.execute(
                update(Proposal).where(Proposal.id == proposal.id,
                                       Proposal.status == Status.OPEN.value)
                .values(supporters=Proposal.supporters + 1)
                .execution_options(synchronize_session=False))
            if affected(counted) != 1:
                raise _NotOpen
    except _NotOpen:
        return Support.NOT_OPEN
    except IntegrityError:
        return Support.ALREADY
    reached = await session.execute(
        update(Proposal).where(Proposal.id == proposal.id, Proposal.status == Status.OPEN.value,
                               Proposal.supporters >= Proposal.threshold)
        .values(status=Status.AGENDA.value, agenda_at=now)
        .execution_options(synchronize_session=False))
    await session.refresh(proposal)
    return Support.REACHED if affected(reached) == 1 else Support.COUNTED


class _NotOpen(Exception):
    pass


async def decide(session: AsyncSession, proposal_id: int, decision: str, note: str,
                 actor_id: int, now: datetime) -> bool:
    if decision not in DECISIONS:
        raise ValueError(decision)
    done = await session.execute(
        update(Proposal).where(Proposal.id == proposal_id, Proposal.status == Status.AGENDA.value)
        .values(status=decision, decision_note=note, decided_by=actor_id, decided_at=now)
        .execution_options(synchronize_session=False))
    return affected(done) == 1


async def implemented(session: AsyncSession, proposal_id: int, note: str, actor_id: int,
                      now: datetime) -> bool:
    done = await session.execute(
        update(Proposal).where(Proposal.id == proposal_id,
                               Proposal.status == Status.ADOPTED.value)
        .values(status=Status.DONE.value, implementation_note=note, implemented_by=actor_id,
                implemented_at=now)
        .execution_options(synchronize_session=False))
    return affected(done) == 1


async def get(session: AsyncSession, proposal_id: int) -> Proposal | None:
    return await session.get(Proposal, proposal_id)


async def supporters_of(session: AsyncSession, proposal_id: int) -> list[int]:
    rows = await session.scalars(select(ProposalSupport.resident_id).where(
        ProposalSupport.proposal_id == proposal_id).order_by(ProposalSupport.resident_id))
    return list(rows.all())


async def has_supported(session: AsyncSession, proposal_id: int, resident_id: int) -> bool:
    return await session.get(ProposalSupport, (proposal_id, resident_id)) is not None


async def of_committee(session: AsyncSession, committee_ids: set[int], *,
                       statuses: tuple[str, ...] | None = None, limit: int = 15
                       ) -> list[Proposal]:
    q = select(Proposal).where(Proposal.committee_id.in_(committee_ids))
    if statuses:
        q = q.where(Proposal.status.in_(statuses))
    rows = await session.scalars(q.order_by(Proposal.id.desc()).limit(limit))
    return list(rows.all())
