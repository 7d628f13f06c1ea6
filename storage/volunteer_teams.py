"""Volunteer teams that residents join; a lead organises activities and messages the team."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    String,
    UniqueConstraint,
    bindparam,
    func,
    select,
    union,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.audience import Recipient, one_identity_each
from storage.base import Base, affected, by_id, utcnow
from storage.volunteering import ACTIVE, Signup, SignupStatus


class VolunteerTeam(Base):
    __tablename__ = "volunteer_teams"
    __table_args__ = (UniqueConstraint("name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(60))
    committee_id: Mapped[int | None] = mapped_column(ForeignKey("committees.id"))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("residents.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class VolunteerTeamMember(Base):
    __tablename__ = "volunteer_team_members"
    __table_args__ = (UniqueConstraint("team_id", "resident_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("volunteer_teams.id"))
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), index=True)
    # A team lead may organise activities and message the team.
    is_lead: Mapped[bool] = mapped_column(Boolean, default=False)
    joined_at: Mapped[datetime] = mapped_column(default=utcnow)


async def team(session: AsyncSession, team_id: int | None) -> VolunteerTeam | None:
    return await by_id(session, VolunteerTeam, team_id)


async def create_team(session: AsyncSession, name: str, committee_id: int | None,
                      lead_id: int) -> VolunteerTeam | None:
    """A new team with its creator as lead; None when the name is taken."""
    try:
        async with session.begin_nested():
            team = VolunteerTeam(name=name, committee_id=committee_id, created_by=lead_id)
            session.add(team)
            await session.flush()
    except IntegrityError:
        return None
    session.add(VolunteerTeamMember(team_id=team.id, resident_id=lead_id, is_lead=True))
    await session.flush()
    return team


async def teams(session: AsyncSession) -> list[tuple[VolunteerTeam, int]]:
    rows = await session.execute(
        select(VolunteerTeam, func.count(VolunteerTeamMember.id))
        .outerjoin(VolunteerTeamMember, VolunteerTeamMember.team_id == VolunteerTeam.id)
        .group_by(VolunteerTeam.id).order_by(VolunteerTeam.name))
    return [tuple(r) for r in rows.all()]


async def join_team(session: AsyncSession, team_id: int, resident_id: int) -> bool:
    """True when they joined now; False when they were already a member."""
    try:
        async with session.begin_nested():
            session.add(VolunteerTeamMember(team_id=team_id, resident_id=resident_id))
            await session.flush()
    except IntegrityError:
        return False
    return True


async def leave_team(session: AsyncSession, team_id: int, resident_id: int) -> bool:
    member = await session.scalar(select(VolunteerTeamMember).where(
        VolunteerTeamMember.team_id == team_id, VolunteerTeamMember.resident_id == resident_id))
    if member is None:
        return False
    await session.delete(member)
    await session.flush()
    return True


async def make_lead(session: AsyncSession, team_id: int, resident_id: int) -> bool:
    """A member becomes a lead; False when they are not a member."""
    result = await session.execute(
        update(VolunteerTeamMember)
        .where(VolunteerTeamMember.team_id == team_id,
               VolunteerTeamMember.resident_id == resident_id)
        .values(is_lead=True).execution_options(synchronize_session=False))
    return affected(result) == 1


async def led_teams(session: AsyncSession, resident_id: int) -> list[VolunteerTeam]:
    rows = await session.scalars(
        select(VolunteerTeam).join(VolunteerTeamMember,
                                   VolunteerTeamMember.team_id == VolunteerTeam.id)
        .where(VolunteerTeamMember.resident_id == resident_id,
               VolunteerTeamMember.is_lead.is_(True)).order_by(VolunteerTeam.id))
    return list(rows.all())


async def leads_any(session: AsyncSession, resident_id: int) -> bool:
    found = (await session.execute(_LEADS_ANY, {"resident": resident_id})).first()
    return found is not None


# Built once, on the table rather than the mapped class (a Core statement skips the ORM's
# half of the execution: a third of its cost): /help asks it of every person.
_MEMBERS = VolunteerTeamMember.__table__
_LEADS_ANY = (
    select(_MEMBERS.c.team_id)
    .where(_MEMBERS.c.resident_id == bindparam("resident"), _MEMBERS.c.is_lead.is_(True))
    .limit(1))


async def memberships(session: AsyncSession, resident_id: int) -> set[int]:
    rows = await session.scalars(select(VolunteerTeamMember.team_id).where(
        VolunteerTeamMember.resident_id == resident_id))
    return set(rows.all())


async def team_recipients(session: AsyncSession, team_id: int) -> list[Recipient]:
    """Every member, one identity each."""
    return await one_identity_each(session, select(VolunteerTeamMember.resident_id).where(
        VolunteerTeamMember.team_id == team_id))


def volunteer_resident_ids():
    """Everyone signed up as a volunteer: residents with a sign-up that was not cancelled
    (waiting, confirmed or attended), or in a volunteer team. A select of resident ids."""
    return union(
        select(Signup.resident_id).where(
            Signup.status.in_([*ACTIVE, SignupStatus.ATTENDED.value])),
        select(VolunteerTeamMember.resident_id))
