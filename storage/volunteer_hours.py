"""Volunteer hours from attended shifts, and the committee leaderboard residents opt into."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base
from storage.people import Resident
from storage.territory import Estate
from storage.volunteering import Activity, Shift, Signup, SignupStatus


class VolunteerProfile(Base):
    __tablename__ = "volunteer_profiles"
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), primary_key=True)
    leaderboard: Mapped[bool] = mapped_column(Boolean, default=False)


async def attended(session: AsyncSession, resident_id: int
                   ) -> list[tuple[Activity, Shift]]:
    rows = await session.execute(
        select(Activity, Shift)
        .join(Shift, Shift.activity_id == Activity.id)
        .join(Signup, Signup.shift_id == Shift.id)
        .where(Signup.resident_id == resident_id,
               Signup.status == SignupStatus.ATTENDED.value)
        .order_by(Shift.starts_at)
    )
    return [tuple(r) for r in rows.all()]


def shift_hours(shift: Shift) -> float:
    return (shift.ends_at - shift.starts_at).total_seconds() / 3600


async def set_leaderboard(session: AsyncSession, resident_id: int, opt_in: bool) -> None:
    profile = await session.get(VolunteerProfile, resident_id)
    if profile is None:
        session.add(VolunteerProfile(resident_id=resident_id, leaderboard=opt_in))
    else:
        profile.leaderboard = opt_in
    await session.flush()


async def on_leaderboard(session: AsyncSession, resident_id: int) -> bool:
    profile = await session.get(VolunteerProfile, resident_id)
    return bool(profile and profile.leaderboard)


async def leaderboard(session: AsyncSession, committee_id: int, start: datetime,
                      end: datetime, limit: int = 10) -> list[tuple[int, str, float]]:
    """(resident id, name, hours) of opted-in residents of one committee's estates."""
    rows = (await session.execute(
        select(Resident.id, Resident.display_name, Shift.starts_at, Shift.ends_at)
        .join(VolunteerProfile, VolunteerProfile.resident_id == Resident.id)
        .join(Estate, Estate.id == Resident.estate_id)
        .join(Signup, Signup.resident_id == Resident.id)
        .join(Shift, Shift.id == Signup.shift_id)
        .where(VolunteerProfile.leaderboard.is_(True), Estate.committee_id == committee_id,
               Signup.status == SignupStatus.ATTENDED.value,
               Shift.starts_at >= start, Shift.starts_at < end)
    )).all()
    totals: dict[int, list] = {}
    for rid, name, starts, ends in rows:
        entry = totals.setdefault(rid, [name or f"#{rid}", 0.0])
        entry[1] += (ends - starts).total_seconds() / 3600
    ranked = sorted(((rid, n, h) for rid, (n, h) in totals.items()), key=lambda x: (-x[2], x[0]))
    return ranked[:limit]
