"""Volunteer hours from attended shifts, and the committee leaderboard residents opt into."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base
from storage.people import Resident
from storage.territory import Estate
from storage.volunteering import (
    Activity,
    ActivityStatus,
    Shift,
    ShiftStatus,
    Signup,
    SignupStatus,
)


class VolunteerProfile(Base):
    __tablename__ = "volunteer_profiles"
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), primary_key=True)
    leaderboard: Mapped[bool] = mapped_column(Boolean, default=False)


async def attended(session: AsyncSession, resident_id: int, now: datetime
                   ) -> list[tuple[Activity, Shift, float]]:
    """Attended shifts whose hours are settled (ended, or checked out of), with the hours."""
    rows = await session.execute(
        select(Activity, Shift, Signup)
        .join(Shift, Shift.activity_id == Activity.id)
        .join(Signup, Signup.shift_id == Shift.id)
        .where(Signup.resident_id == resident_id,
               Signup.status == SignupStatus.ATTENDED.value)
        .order_by(Shift.starts_at)
    )
    out = []
    for activity, shift, signup in rows.all():
        hours = served_hours(shift, signup, now)
        if hours is not None:
            out.append((activity, shift, hours))
    return out


def served_hours(shift: Shift, signup: Signup, now: datetime) -> float | None:
    """Hours credited for one attended shift, or None while they are not settled yet.

    Only time served counts: from the start, or from a later check-in by the volunteer (an
    early check-in adds nothing; an organiser marking someone present vouches for the whole
    shift), up to the end or an earlier check-out. Until the shift ends or the volunteer
    checks out, nothing is credited: the rest of the shift is still in the future.
    """
    if signup.status != SignupStatus.ATTENDED.value or signup.attended_at is None:
        return None
    end = shift.ends_at
    if signup.checked_out_at is not None:
        end = min(end, signup.checked_out_at)
    elif now < shift.ends_at:
        return None
    start = shift.starts_at
    if signup.attendance_by == signup.resident_id:
        start = max(start, signup.attended_at)
    return max(0.0, (end - start).total_seconds() / 3600)


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
                      end: datetime, now: datetime, limit: int = 10
                      ) -> list[tuple[int, str, float]]:
    """(resident id, name, hours) of opted-in residents of one committee's estates."""
    rows = (await session.execute(
        select(Resident.id, Resident.display_name, Shift, Signup)
        .join(VolunteerProfile, VolunteerProfile.resident_id == Resident.id)
        .join(Estate, Estate.id == Resident.estate_id)
        .join(Signup, Signup.resident_id == Resident.id)
        .join(Shift, Shift.id == Signup.shift_id)
        .where(VolunteerProfile.leaderboard.is_(True), Estate.committee_id == committee_id,
               Signup.status == SignupStatus.ATTENDED.value,
               Shift.starts_at >= start, Shift.starts_at < end)
    )).all()
    totals: dict[int, list] = {}
    for rid, name, shift, signup in rows:
        hours = served_hours(shift, signup, now)
        if hours is None:
            continue
        entry = totals.setdefault(rid, [name or f"#{rid}", 0.0])
        entry[1] += hours
    ranked = sorted(((rid, n, h) for rid, (n, h) in totals.items()), key=lambda x: (-x[2], x[0]))
    return ranked[:limit]


# -- an adopted proposal carried out as an activity -------------------------------------------

STAGES = ("planned", "in_progress", "done")


@dataclass(frozen=True)
class Progress:
    """Where the activity carrying out a proposal stands: its stage (planned before the first
    shift starts, in progress until the last one ends, done after), sign-ups (confirmed or
    attended), waiting, and the hours given so far (settled shifts only)."""

    activity: Activity
    starts_at: datetime
    ends_at: datetime
    stage: str
    signups: int
    waiting: int
    hours: float


async def proposal_progress(session: AsyncSession, proposal_id: int, now: datetime
                            ) -> Progress | None:
    """The latest published activity carrying out this proposal, with its figures; None when
    there is none (or all its shifts were cancelled)."""
    activity = await session.scalar(
        select(Activity).where(Activity.proposal_id == proposal_id,
                               Activity.status == ActivityStatus.PUBLISHED.value)
        .order_by(Activity.id.desc()).limit(1))
    if activity is None:
        return None
    shifts = list((await session.scalars(select(Shift).where(
        Shift.activity_id == activity.id, Shift.status == ShiftStatus.OPEN.value))).all())
    if not shifts:
        return None
    starts, ends = min(s.starts_at for s in shifts), max(s.ends_at for s in shifts)
    stage = "planned" if now < starts else "in_progress" if now < ends else "done"
    by_id = {s.id: s for s in shifts}
    signups = list((await session.scalars(select(Signup).where(
        Signup.shift_id.in_(by_id)))).all())
    taken = sum(1 for x in signups if x.status in (SignupStatus.CONFIRMED.value,
                                                   SignupStatus.ATTENDED.value))
    waiting = sum(1 for x in signups if x.status == SignupStatus.WAITLISTED.value)
    hours = sum(h for x in signups
                if (h := served_hours(by_id[x.shift_id], x, now)) is not None)
    return Progress(activity, starts, ends, stage, taken, waiting, round(hours, 1))


def execution(proposal_status: str, progress: Progress | None) -> str | None:
    """A proposal's execution status: what the council recorded (done) wins; otherwise that of
    the activity carrying it out (planned → in progress → done); None without either."""
    if proposal_status == "done":
        return "done"
    if progress is not None and proposal_status == "adopted":
        return progress.stage
    return None
