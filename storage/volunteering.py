"""Volunteering: activities, shifts with capacity, sign-ups with a waitlist, attendance, hours.

Capacity is held by the database: a shift's `taken` counter only moves through guarded UPDATEs
(`taken < capacity`) and a CHECK keeps `0 <= taken <= capacity`, so two residents racing for the
last place cannot both get it, on SQLite or PostgreSQL. Every sign-up also draws a number from
the shift's `queue_seq` counter in the same guarded UPDATE, which gives the waitlist its order.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.audience import Audience, Each, Kind, count, one_identity_each, recipients
from storage.base import Base, affected, by_id, must_get, utcnow
from storage.people import Identity, Resident, RoleKind
from storage.territory import Estate

CATEGORIES = ("elderly_care", "environment", "safety_patrol", "culture", "other")
AUDIENCES = ("estate", "committee", "everyone")
MAX_CAPACITY = 500
DEFAULT_REMINDERS = (24, 2)  # hours before a shift; the settings class overrides them


class ActivityStatus(enum.StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    CANCELLED = "cancelled"


class ShiftStatus(enum.StrEnum):
    OPEN = "open"
    CANCELLED = "cancelled"


class SignupStatus(enum.StrEnum):
    CONFIRMED = "confirmed"
    WAITLISTED = "waitlisted"
    CANCELLED = "cancelled"
    ATTENDED = "attended"


ACTIVE = (SignupStatus.CONFIRMED.value, SignupStatus.WAITLISTED.value)


class Activity(Base):
    __tablename__ = "volunteer_activities"
    __table_args__ = (
        CheckConstraint(f"category IN {CATEGORIES}", name="category"),
        CheckConstraint(f"audience IN {AUDIENCES}", name="audience"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(80))
    category: Mapped[str] = mapped_column(String(20))
    # The place is an estate, or a point (which may still fall inside an estate).
    estate_id: Mapped[int | None] = mapped_column(ForeignKey("estates.id"), index=True)
    committee_id: Mapped[int | None] = mapped_column(ForeignKey("committees.id"), index=True)
    latitude: Mapped[float | None]
    longitude: Mapped[float | None]
    description: Mapped[str] = mapped_column(Text, default="")
    audience: Mapped[str] = mapped_column(String(12))
    organiser_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), index=True)
    status: Mapped[str] = mapped_column(String(12), default=ActivityStatus.DRAFT.value)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None]
    # The announcement goes out in batches by a job (none / pending / done), resuming after
    # the last resident id reached, so a restart neither repeats nor skips anyone.
    announce_state: Mapped[str | None] = mapped_column(String(10))
    announce_cursor: Mapped[int] = mapped_column(default=0)
    announced: Mapped[int] = mapped_column(default=0)
    # The adopted proposal this activity carries out ("Recruit volunteers for this"): its
    # supporters are invited first, and the proposal's page follows the activity.
    proposal_id: Mapped[int | None] = mapped_column(ForeignKey("proposals.id"), index=True)


class Shift(Base):
    __tablename__ = "volunteer_shifts"
    __table_args__ = (
        CheckConstraint("taken >= 0 AND taken <= capacity", name="taken_within_capacity"),
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
        Index("ix_volunteer_shifts_starts", "status", "starts_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    activity_id: Mapped[int] = mapped_column(ForeignKey("volunteer_activities.id"), index=True)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    capacity: Mapped[int]
    taken: Mapped[int] = mapped_column(default=0)
    queue_seq: Mapped[int] = mapped_column(default=0)
    skills: Mapped[str] = mapped_column(String(120), default="")
    status: Mapped[str] = mapped_column(String(12), default=ShiftStatus.OPEN.value)
    checkin_code: Mapped[str] = mapped_column(String(8))


class Signup(Base):
    __tablename__ = "volunteer_signups"
    # One row per (shift, resident): a double tap or a second process cannot add another.
    __table_args__ = (
        UniqueConstraint("shift_id", "resident_id"),
        Index("ix_volunteer_signups_queue", "shift_id", "status", "queue_no"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    shift_id: Mapped[int] = mapped_column(ForeignKey("volunteer_shifts.id"))
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), index=True)
    status: Mapped[str] = mapped_column(String(12))
    queue_no: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    attended_at: Mapped[datetime | None]
    attendance_by: Mapped[int | None] = mapped_column(ForeignKey("residents.id"))
    checked_out_at: Mapped[datetime | None]  # left before the end: hours stop here


class Reminder(Base):
    """A reminder due for one sign-up; sent once, claimed by a guarded UPDATE."""

    __tablename__ = "volunteer_reminders"
    __table_args__ = (
        UniqueConstraint("signup_id", "hours_before"),
        Index("ix_volunteer_reminders_due", "status", "due_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    signup_id: Mapped[int] = mapped_column(ForeignKey("volunteer_signups.id"))
    hours_before: Mapped[int]
    due_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(12), default="pending")
    sent_at: Mapped[datetime | None]


# -- activities and shifts ----------------------------------------------------------------

@dataclass(frozen=True)
class ShiftSpec:
    starts_at: datetime
    ends_at: datetime
    capacity: int
    skills: str = ""


async def create_activity(
    session: AsyncSession, *, title: str, category: str, description: str, audience: str,
    organiser_id: int, shifts: list[ShiftSpec], estate_id: int | None = None,
    latitude: float | None = None, longitude: float | None = None,
    committee_id: int | None = None, proposal_id: int | None = None,
) -> Activity:
    if committee_id is None and estate_id is not None:
        committee_id = await session.scalar(
            select(Estate.committee_id).where(Estate.id == estate_id))
    activity = Activity(
        title=title, category=category, description=description, audience=audience,
        organiser_id=organiser_id, estate_id=estate_id, committee_id=committee_id,
        latitude=latitude, longitude=longitude, status=ActivityStatus.DRAFT.value,
        proposal_id=proposal_id,
    )
    session.add(activity)
    await session.flush()
    for spec in shifts:
        session.add(Shift(
            activity_id=activity.id, starts_at=spec.starts_at, ends_at=spec.ends_at,
            capacity=spec.capacity, skills=spec.skills, taken=0, queue_seq=0,
            status=ShiftStatus.OPEN.value, checkin_code=_code(),
        ))
    await session.flush()
    return activity


def _code() -> str:
    return f"{secrets.randbelow(1_000_000):06d}"


async def publish(session: AsyncSession, activity_id: int) -> bool:
    """Draft to published, once: a second tap changes nothing."""
    result = await session.execute(
        update(Activity)
        .where(Activity.id == activity_id, Activity.status == ActivityStatus.DRAFT.value)
        .values(status=ActivityStatus.PUBLISHED.value, published_at=utcnow())
    )
    return affected(result) == 1


async def discard_draft(session: AsyncSession, activity_id: int) -> bool:
    result = await session.execute(
        update(Activity)
        .where(Activity.id == activity_id, Activity.status == ActivityStatus.DRAFT.value)
        .values(status=ActivityStatus.CANCELLED.value)
    )
    return affected(result) == 1


async def get_activity(session: AsyncSession, activity_id: int | None) -> Activity | None:
    return await by_id(session, Activity, activity_id)


async def activity_for_proposal(session: AsyncSession, proposal_id: int) -> Activity | None:
    """The published activity carrying out a proposal, if one was published."""
    return await session.scalar(
        select(Activity).where(Activity.proposal_id == proposal_id,
                               Activity.status == ActivityStatus.PUBLISHED.value)
        .order_by(Activity.id.desc()).limit(1))


async def get_shift(session: AsyncSession, shift_id: int | None) -> Shift | None:
    return await by_id(session, Shift, shift_id)


async def get_signup(session: AsyncSession, signup_id: int | None) -> Signup | None:
    return await by_id(session, Signup, signup_id)


async def shifts_of(session: AsyncSession, activity_id: int) -> list[Shift]:
    rows = await session.scalars(
        select(Shift).where(Shift.activity_id == activity_id).order_by(Shift.starts_at, Shift.id))
    return list(rows.all())


async def upcoming_activities(session: AsyncSession, now: datetime,
                              category: str | None = None) -> list[tuple[Activity, datetime]]:
    """Published activities with an open shift still to start, with their first start."""
    first = func.min(Shift.starts_at)
    q = (
        select(Activity, first)
        .join(Shift, Shift.activity_id == Activity.id)
        .where(Activity.status == ActivityStatus.PUBLISHED.value,
               Shift.status == ShiftStatus.OPEN.value, Shift.starts_at > now)
        .group_by(Activity.id)
    )
    if category:
        q = q.where(Activity.category == category)
    return [(a, s) for a, s in (await session.execute(q)).all()]


def visible_to(activity: Activity, estate_id: int | None, committee_id: int | None) -> bool:
    if activity.audience == "everyone":
        return True
    if activity.audience == "estate":
        return estate_id is not None and activity.estate_id == estate_id
    return committee_id is not None and activity.committee_id == committee_id


# -- sign-ups -----------------------------------------------------------------------------

class SignupOutcome(enum.StrEnum):
    CONFIRMED = "confirmed"
    WAITLISTED = "waitlisted"
    ALREADY = "already"  # a double tap: nothing changed
    OVERLAP = "overlap"
    STARTED = "started"
    CLOSED = "closed"  # the shift or activity was cancelled or is not published
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class SignupResult:
    outcome: SignupOutcome
    signup: Signup | None = None
    position: int | None = None  # place on the waitlist, from 1
    clash: Shift | None = None


async def sign_up(session: AsyncSession, shift_id: int, resident_id: int,
                  now: datetime, reminder_hours: tuple[int, ...] = DEFAULT_REMINDERS
                  ) -> SignupResult:
    shift = await session.get(Shift, shift_id)
    if shift is None:
        return SignupResult(SignupOutcome.NOT_FOUND)
    activity = await must_get(session, Activity, shift.activity_id)
    if shift.status != ShiftStatus.OPEN.value or \
            activity.status != ActivityStatus.PUBLISHED.value:
        return SignupResult(SignupOutcome.CLOSED)
    if now >= shift.starts_at:
        return SignupResult(SignupOutcome.STARTED)
    existing = await session.scalar(select(Signup).where(
        Signup.shift_id == shift_id, Signup.resident_id == resident_id))
    if existing is not None and existing.status != SignupStatus.CANCELLED.value:
        return SignupResult(SignupOutcome.ALREADY, existing,
                            await waitlist_position(session, existing))
    clash = await _overlapping(session, resident_id, shift)
    if clash is not None:
        return SignupResult(SignupOutcome.OVERLAP, clash=clash)
    try:
        async with session.begin_nested():
            status, queue_no = await _take_place(session, shift_id)
            if existing is None:
                signup = Signup(shift_id=shift_id, resident_id=resident_id, status=status,
                                queue_no=queue_no, created_at=now)
                session.add(signup)
            else:
                # Coming back after cancelling: the row is reused, at the end of the queue.
                signup = existing
                signup.status, signup.queue_no, signup.cancelled_at = status, queue_no, None
                signup.attended_at = None
            signup.confirmed_at = now if status == SignupStatus.CONFIRMED.value else None
            await session.flush()
    except IntegrityError:
        # The same resident's other tap won the unique (shift, resident) row; the savepoint
        # undid our counter change.
        won = await session.scalar(select(Signup).where(
            Signup.shift_id == shift_id, Signup.resident_id == resident_id))
        return SignupResult(SignupOutcome.ALREADY, won,
                            await waitlist_position(session, won) if won else None)
    if signup.status == SignupStatus.CONFIRMED.value:
        await schedule_reminders(session, signup, shift, now, reminder_hours,
                                 fresh=existing is None)
        return SignupResult(SignupOutcome.CONFIRMED, signup)
    return SignupResult(SignupOutcome.WAITLISTED, signup, await waitlist_position(session, signup))


async def _take_place(session: AsyncSession, shift_id: int) -> tuple[str, int]:
    """A confirmed place when one is left, else a waitlist number; both from guarded UPDATEs."""
    row = (await session.execute(
        update(Shift)
        .where(Shift.id == shift_id, Shift.taken < Shift.capacity,
               Shift.status == ShiftStatus.OPEN.value)
        .values(taken=Shift.taken + 1, queue_seq=Shift.queue_seq + 1)
        .returning(Shift.queue_seq)
        .execution_options(synchronize_session=False)
    )).first()
    if row is not None:
        return SignupStatus.CONFIRMED.value, row[0]
    row = (await session.execute(
        update(Shift).where(Shift.id == shift_id)
        .values(queue_seq=Shift.queue_seq + 1)
        .returning(Shift.queue_seq)
        .execution_options(synchronize_session=False)
    )).one()
    return SignupStatus.WAITLISTED.value, row[0]


async def _overlapping(session: AsyncSession, resident_id: int, shift: Shift) -> Shift | None:
    return await session.scalar(
        select(Shift)
        .join(Signup, Signup.shift_id == Shift.id)
        .where(Signup.resident_id == resident_id, Signup.status.in_(ACTIVE),
               Shift.id != shift.id, Shift.status == ShiftStatus.OPEN.value,
               Shift.starts_at < shift.ends_at, Shift.ends_at > shift.starts_at)
        .limit(1)
    )


async def waitlist_position(session: AsyncSession, signup: Signup) -> int | None:
    if signup.status != SignupStatus.WAITLISTED.value:
        return None
    ahead = await session.scalar(select(func.count()).select_from(Signup).where(
        Signup.shift_id == signup.shift_id, Signup.status == SignupStatus.WAITLISTED.value,
        Signup.queue_no < signup.queue_no))
    return (ahead or 0) + 1


class CancelOutcome(enum.StrEnum):
    CANCELLED = "cancelled"
    TOO_LATE = "too_late"
    ALREADY = "already"
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class CancelResult:
    outcome: CancelOutcome
    promoted: list[Signup]


async def cancel_signup(session: AsyncSession, signup_id: int, resident_id: int,
                        now: datetime, cutoff: timedelta,
                        reminder_hours: tuple[int, ...] = DEFAULT_REMINDERS) -> CancelResult:
    """The resident gives up a place (up to `cutoff` before the start) or leaves the waitlist.

    The freed place goes to the first on the waitlist in the same transaction."""
    signup = await session.get(Signup, signup_id)
    if signup is None or signup.resident_id != resident_id:
        return CancelResult(CancelOutcome.NOT_FOUND, [])
    shift = await must_get(session, Shift, signup.shift_id)
    if signup.status == SignupStatus.WAITLISTED.value:
        done = await _set_status(session, signup.id, SignupStatus.WAITLISTED,
                                 SignupStatus.CANCELLED, cancelled_at=now)
        return CancelResult(CancelOutcome.CANCELLED if done else CancelOutcome.ALREADY, [])
    if signup.status != SignupStatus.CONFIRMED.value:
        return CancelResult(CancelOutcome.ALREADY, [])
    if now > shift.starts_at - cutoff:
        return CancelResult(CancelOutcome.TOO_LATE, [])
    if not await _set_status(session, signup.id, SignupStatus.CONFIRMED,
                             SignupStatus.CANCELLED, cancelled_at=now):
        return CancelResult(CancelOutcome.ALREADY, [])
    await session.execute(
        update(Shift).where(Shift.id == shift.id, Shift.taken > 0)
        .values(taken=Shift.taken - 1).execution_options(synchronize_session=False))
    await _cancel_reminders(session, [signup.id])
    promoted = await promote_waitlisted(session, shift.id, now, reminder_hours)
    await session.refresh(signup)
    return CancelResult(CancelOutcome.CANCELLED, promoted)


async def _set_status(session: AsyncSession, signup_id: int, old: SignupStatus,
                      new: SignupStatus, **values) -> bool:
    result = await session.execute(
        update(Signup).where(Signup.id == signup_id, Signup.status == old.value)
        .values(status=new.value, **values).execution_options(synchronize_session=False))
    return affected(result) == 1


async def promote_waitlisted(session: AsyncSession, shift_id: int, now: datetime,
                             reminder_hours: tuple[int, ...] = DEFAULT_REMINDERS
                             ) -> list[Signup]:
    """Fill free places from the waitlist, first come first served."""
    promoted: list[Signup] = []
    shift = await session.get(Shift, shift_id)
    if shift is None or now >= shift.starts_at:
        return promoted
    while True:
        candidate = await session.scalar(
            select(Signup)
            .where(Signup.shift_id == shift_id, Signup.status == SignupStatus.WAITLISTED.value)
            .order_by(Signup.queue_no).limit(1)
            .with_for_update(skip_locked=True)
        )
        if candidate is None:
            break
        taken = await session.execute(
            update(Shift)
            .where(Shift.id == shift_id, Shift.taken < Shift.capacity,
                   Shift.status == ShiftStatus.OPEN.value)
            .values(taken=Shift.taken + 1).execution_options(synchronize_session=False))
        if affected(taken) != 1:
            break
        if not await _set_status(session, candidate.id, SignupStatus.WAITLISTED,
                                 SignupStatus.CONFIRMED, confirmed_at=now):
            # They left the queue meanwhile: give the place back and try the next one.
            await session.execute(update(Shift).where(Shift.id == shift_id)
                                  .values(taken=Shift.taken - 1)
                                  .execution_options(synchronize_session=False))
            continue
        await session.refresh(candidate)
        await schedule_reminders(session, candidate, shift, now, reminder_hours)
        promoted.append(candidate)
    await session.refresh(shift)
    return promoted


class CapacityOutcome(enum.StrEnum):
    CHANGED = "changed"
    BELOW_SIGNUPS = "below_signups"
    INVALID = "invalid"
    NOT_FOUND = "not_found"


async def set_capacity(session: AsyncSession, shift_id: int, capacity: int, now: datetime,
                       reminder_hours: tuple[int, ...] = DEFAULT_REMINDERS
                       ) -> tuple[CapacityOutcome, int, list[Signup]]:
    """A new capacity, never below the places already confirmed (those volunteers keep them;
    the organiser must cancel the shift or ask people to withdraw). Raising it promotes from
    the waitlist. Returns (outcome, confirmed count, promoted sign-ups)."""
    if not 1 <= capacity <= MAX_CAPACITY:
        return CapacityOutcome.INVALID, 0, []
    result = await session.execute(
        update(Shift).where(Shift.id == shift_id, Shift.taken <= capacity)
        .values(capacity=capacity).execution_options(synchronize_session=False))
    shift = await session.get(Shift, shift_id)
    if shift is None:
        return CapacityOutcome.NOT_FOUND, 0, []
    await session.refresh(shift)
    if affected(result) != 1:
        return CapacityOutcome.BELOW_SIGNUPS, shift.taken, []
    promoted = await promote_waitlisted(session, shift_id, now, reminder_hours)
    return CapacityOutcome.CHANGED, shift.taken, promoted


async def cancel_shift(session: AsyncSession, shift_id: int, now: datetime
                       ) -> list[Signup] | None:
    """Cancel a shift; returns everyone who was signed up or waiting (to be told), or None
    when it was cancelled already."""
    result = await session.execute(
        update(Shift).where(Shift.id == shift_id, Shift.status == ShiftStatus.OPEN.value)
        .values(status=ShiftStatus.CANCELLED.value, taken=0)
        .execution_options(synchronize_session=False))
    if affected(result) != 1:
        return None
    told = list((await session.scalars(select(Signup).where(
        Signup.shift_id == shift_id, Signup.status.in_(ACTIVE)).order_by(Signup.queue_no))).all())
    await session.execute(
        update(Signup).where(Signup.shift_id == shift_id, Signup.status.in_(ACTIVE))
        .values(status=SignupStatus.CANCELLED.value, cancelled_at=now)
        .execution_options(synchronize_session=False))
    await _cancel_reminders(session, [s.id for s in told])
    shift = await session.get(Shift, shift_id)
    await session.refresh(shift)
    return told


# -- attendance ---------------------------------------------------------------------------

class CheckinOutcome(enum.StrEnum):
    CHECKED_IN = "checked_in"
    ALREADY = "already"
    TOO_EARLY = "too_early"
    OVER = "over"
    NOT_SIGNED_UP = "not_signed_up"


def checkin_window(shift: Shift, early: timedelta) -> tuple[datetime, datetime]:
    return shift.starts_at - early, shift.ends_at


async def check_in(session: AsyncSession, signup: Signup, now: datetime, early: timedelta,
                   by: int | None = None) -> CheckinOutcome:
    shift = await must_get(session, Shift, signup.shift_id)
    if signup.status == SignupStatus.ATTENDED.value:
        return CheckinOutcome.ALREADY
    if signup.status != SignupStatus.CONFIRMED.value or \
            shift.status != ShiftStatus.OPEN.value:
        return CheckinOutcome.NOT_SIGNED_UP
    opens, closes = checkin_window(shift, early)
    if now < opens:
        return CheckinOutcome.TOO_EARLY
    if now > closes:
        return CheckinOutcome.OVER
    done = await _set_status(session, signup.id, SignupStatus.CONFIRMED, SignupStatus.ATTENDED,
                             attended_at=now, attendance_by=by)
    await session.refresh(signup)
    return CheckinOutcome.CHECKED_IN if done else CheckinOutcome.ALREADY


async def mark_attended(session: AsyncSession, signup_id: int, by: int, now: datetime
                        ) -> bool:
    """The organiser marks a confirmed volunteer as present (any time after the start)."""
    return await _set_status(session, signup_id, SignupStatus.CONFIRMED, SignupStatus.ATTENDED,
                             attended_at=now, attendance_by=by)


class CheckoutOutcome(enum.StrEnum):
    CHECKED_OUT = "checked_out"
    ALREADY = "already"
    NOT_CHECKED_IN = "not_checked_in"
    OVER = "over"


def may_check_out(signup: Signup, shift: Shift, now: datetime) -> bool:
    return (signup.status == SignupStatus.ATTENDED.value and signup.checked_out_at is None
            and now < shift.ends_at)


async def check_out(session: AsyncSession, signup: Signup, now: datetime) -> CheckoutOutcome:
    """A volunteer leaves before the end: their hours stop now. At the end they stop anyway,
    so there is nothing to check out of afterwards."""
    shift = await must_get(session, Shift, signup.shift_id)
    if signup.status != SignupStatus.ATTENDED.value:
        return CheckoutOutcome.NOT_CHECKED_IN
    if signup.checked_out_at is not None:
        return CheckoutOutcome.ALREADY
    if now >= shift.ends_at:
        return CheckoutOutcome.OVER
    done = await session.execute(
        update(Signup).where(Signup.id == signup.id,
                             Signup.status == SignupStatus.ATTENDED.value,
                             Signup.checked_out_at.is_(None))
        .values(checked_out_at=now).execution_options(synchronize_session=False))
    await session.refresh(signup)
    return CheckoutOutcome.CHECKED_OUT if affected(done) == 1 else CheckoutOutcome.ALREADY


async def check_in_by_code(session: AsyncSession, resident_id: int, code: str, now: datetime,
                           early: timedelta) -> CheckinOutcome:
    rows = (await session.execute(
        select(Signup).join(Shift, Shift.id == Signup.shift_id)
        .where(Signup.resident_id == resident_id, Shift.checkin_code == code,
               Signup.status.in_([SignupStatus.CONFIRMED.value, SignupStatus.ATTENDED.value]))
        .order_by(Shift.starts_at)
    )).scalars().all()
    if not rows:
        return CheckinOutcome.NOT_SIGNED_UP
    outcome = CheckinOutcome.NOT_SIGNED_UP
    for signup in rows:
        outcome = await check_in(session, signup, now, early, by=resident_id)
        if outcome in (CheckinOutcome.CHECKED_IN, CheckinOutcome.ALREADY):
            return outcome
    return outcome


# -- rosters ------------------------------------------------------------------------------

@dataclass(frozen=True)
class RosterLine:
    signup: Signup
    name: str
    position: int | None


async def roster(session: AsyncSession, shift_id: int) -> list[RosterLine]:
    rows = (await session.execute(
        select(Signup, Resident.display_name)
        .join(Resident, Resident.id == Signup.resident_id)
        .where(Signup.shift_id == shift_id, Signup.status != SignupStatus.CANCELLED.value)
        .order_by(Signup.queue_no)
    )).all()
    lines, waiting = [], 0
    for signup, name in rows:
        position = None
        if signup.status == SignupStatus.WAITLISTED.value:
            waiting += 1
            position = waiting
        lines.append(RosterLine(signup, name or f"#{signup.resident_id}", position))
    return lines


async def my_signups(session: AsyncSession, resident_id: int, since: datetime
                     ) -> list[tuple[Signup, Shift, Activity]]:
    rows = await session.execute(
        select(Signup, Shift, Activity)
        .join(Shift, Shift.id == Signup.shift_id)
        .join(Activity, Activity.id == Shift.activity_id)
        .where(Signup.resident_id == resident_id, Signup.status != SignupStatus.CANCELLED.value,
               Shift.ends_at > since)
        .order_by(Shift.starts_at)
    )
    return [tuple(r) for r in rows.all()]


def may_manage(scope, activity: Activity, resident_id: int, *, leads_team: bool) -> bool:
    """Who may run an activity's rosters (attendance, places, CSV, cancelling), from the roles
    held now, so a revoked organiser loses control at once:
    - admins everywhere; staff and committee members where their scope covers the activity;
    - its organiser while they still lead a volunteer team (a lead organises without a
      territorial role), or, for an activity at a point outside every estate and committee,
      while they still hold a staff or committee role."""
    if scope.everything:
        return True
    if activity.estate_id is not None and activity.estate_id in scope.estate_ids:
        return True
    if activity.committee_id is not None and activity.committee_id in scope.committee_ids:
        return True
    if activity.organiser_id != resident_id:
        return False
    if leads_team:
        return True
    return (activity.estate_id is None and activity.committee_id is None
            and scope.has(RoleKind.STAFF, RoleKind.COMMITTEE))


async def organised_shifts(session: AsyncSession, *, organiser_id: int,
                           estate_ids: set[int] | None, committee_ids: set[int],
                           since: datetime) -> list[tuple[Shift, Activity]]:
    """Shifts someone may manage: their own, and (staff, committees) those in their territory;
    `estate_ids` None means everywhere."""
    q = (select(Shift, Activity).join(Activity, Activity.id == Shift.activity_id)
         .where(Activity.status == ActivityStatus.PUBLISHED.value, Shift.ends_at > since)
         .order_by(Shift.starts_at, Shift.id))
    if estate_ids is not None:
        q = q.where(or_(Activity.organiser_id == organiser_id,
                        Activity.estate_id.in_(estate_ids or {-1}),
                        Activity.committee_id.in_(committee_ids or {-1})))
    return [tuple(r) for r in (await session.execute(q)).all()]


# -- reminders ----------------------------------------------------------------------------

async def schedule_reminders(session: AsyncSession, signup: Signup, shift: Shift,
                             now: datetime, hours: tuple[int, ...], *, fresh: bool = False
                             ) -> None:
    """One reminder row per lead time still in the future; the unique key makes it idempotent.

    `fresh`: the sign-up row was just inserted, so it has no reminders to look up (this runs
    while the shift's row is locked, so every query saved shortens the queue)."""
    for h in hours:
        due = shift.starts_at - timedelta(hours=h)
        if due <= now:
            continue
        existing = None if fresh else await session.scalar(select(Reminder).where(
            Reminder.signup_id == signup.id, Reminder.hours_before == h))
        if existing is None:
            session.add(Reminder(signup_id=signup.id, hours_before=h, due_at=due))
        elif existing.status != "sent":
            existing.status, existing.due_at = "pending", due
    await session.flush()


async def _cancel_reminders(session: AsyncSession, signup_ids: list[int]) -> None:
    if not signup_ids:
        return
    await session.execute(
        update(Reminder).where(Reminder.signup_id.in_(signup_ids), Reminder.status == "pending")
        .values(status="cancelled").execution_options(synchronize_session=False))


@dataclass(frozen=True)
class DueReminder:
    reminder_id: int
    hours_before: int
    signup: Signup
    shift: Shift
    activity: Activity


async def claim_due_reminders(session: AsyncSession, now: datetime, limit: int = 200
                              ) -> list[DueReminder]:
    """Reminders due now, each claimed by exactly one worker (pending → sent)."""
    ids = list((await session.scalars(
        select(Reminder.id).where(Reminder.status == "pending", Reminder.due_at <= now)
        .order_by(Reminder.due_at, Reminder.id).limit(limit).with_for_update(skip_locked=True)
    )).all())
    due = []
    for rid in ids:
        claimed = await session.execute(
            update(Reminder).where(Reminder.id == rid, Reminder.status == "pending")
            .values(status="sent", sent_at=now).execution_options(synchronize_session=False))
        if affected(claimed) != 1:
            continue
        reminder = await must_get(session, Reminder, rid)
        signup = await must_get(session, Signup, reminder.signup_id)
        shift = await must_get(session, Shift, signup.shift_id)
        if signup.status != SignupStatus.CONFIRMED.value or \
                shift.status != ShiftStatus.OPEN.value or shift.starts_at <= now:
            # No longer wanted (cancelled meanwhile, or the bot was down past the start).
            reminder.status = "skipped"
            continue
        due.append(DueReminder(rid, reminder.hours_before, signup, shift,
                               await must_get(session, Activity, shift.activity_id)))
    return due


async def signup_recipients(session: AsyncSession, resident_ids: list[int]
                            ) -> dict[int, list[tuple[int, str | None]]]:
    """Every identity (and the language) of each resident, to tell them something."""
    out: dict[int, list[tuple[int, str | None]]] = {rid: [] for rid in resident_ids}
    if not resident_ids:
        return out
    rows = await session.execute(
        select(Identity.resident_id, Identity.id, Resident.language)
        .join(Resident, Resident.id == Identity.resident_id)
        .where(Identity.resident_id.in_(resident_ids), Identity.unreachable_at.is_(None))
        .order_by(Identity.id))
    for rid, iid, lang in rows.all():
        out[rid].append((iid, lang))
    return out


def audience_of(activity: Activity) -> Audience:
    """Who an activity is for (its stored audience word): everyone with a home, its estate or
    its committee's estates."""
    if activity.audience == "estate":
        return Audience(Kind.ESTATE, activity.estate_id)
    if activity.audience == "committee":
        return Audience(Kind.COMMITTEE, activity.committee_id)
    return Audience(Kind.SUBDISTRICT)


async def audience_size(session: AsyncSession, activity: Activity) -> int:
    """How many residents (besides the organiser) an announcement is for."""
    return await count(session, audience_of(activity), besides=activity.organiser_id)


async def request_announcement(session: AsyncSession, activity_id: int) -> bool:
    result = await session.execute(
        update(Activity).where(Activity.id == activity_id, Activity.announce_state.is_(None),
                               Activity.status == ActivityStatus.PUBLISHED.value)
        .values(announce_state="pending").execution_options(synchronize_session=False))
    return affected(result) == 1


async def claim_announcement_batch(session: AsyncSession, limit: int
                                   ) -> tuple[Activity, list[tuple[int, int, str | None]]] | None:
    """The next batch of one pending announcement; the activity row stays locked (PostgreSQL)
    until the caller commits, so two workers never take the same batch."""
    activity = await session.scalar(
        select(Activity).where(Activity.announce_state == "pending").order_by(Activity.id)
        .limit(1).with_for_update(skip_locked=True))
    if activity is None:
        return None
    # An announcement is an event notice: residents who switched events off are skipped.
    page = await recipients(session, replace(audience_of(activity), category="event"),
                            each=Each.FIRST_IDENTITY, after=activity.announce_cursor,
                            limit=limit)
    batch = [(r.resident_id, r.identity_id, r.language) for r in page.recipients]
    if batch:
        activity.announce_cursor = batch[-1][0]
        activity.announced += sum(1 for rid, _, _ in batch if rid != activity.organiser_id)
    if len(batch) < limit:
        activity.announce_state = "done"
    await session.flush()
    return activity, batch


async def one_identity_of(session: AsyncSession, resident_ids: list[int]
                          ) -> list[tuple[int, int, str | None]]:
    """(resident, identity, language): one reachable identity of each of these residents."""
    if not resident_ids:
        return []
    found = await one_identity_each(session, select(Resident.id).where(
        Resident.id.in_(resident_ids)))
    return [(r.resident_id, r.identity_id, r.language) for r in found]
