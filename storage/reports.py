"""Reports: a resident's problem from filing to fixed, with every transition kept.

Transitions are guarded UPDATEs (`WHERE status IN (...)`), so two staff pressing "fixed" at the
same moment produce one transition and the other is told the report has moved on. References
(`Z-2026-00042`) come from a per-year counter row that the database increments.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    ColumnElement,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    and_,
    case,
    cast,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, affected, must_get, utcnow


class Status(enum.StrEnum):
    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    FIXED = "fixed"
    CLOSED = "closed"
    REOPENED = "reopened"


class CloseReason(enum.StrEnum):
    NOT_RESPONSIBLE = "not_responsible"
    DUPLICATE = "duplicate"
    UNABLE = "unable"


OPEN = (Status.NEW, Status.ACKNOWLEDGED, Status.IN_PROGRESS, Status.REOPENED)
# Which states each transition may start from; anything else means the report moved on.
ALLOWED_FROM: dict[Status, tuple[Status, ...]] = {
    Status.ACKNOWLEDGED: (Status.NEW, Status.REOPENED),
    Status.IN_PROGRESS: (Status.NEW, Status.ACKNOWLEDGED, Status.REOPENED),
    Status.FIXED: OPEN,
    Status.CLOSED: OPEN,
    Status.REOPENED: (Status.FIXED,),
}


def can_become(status: str, to: Status) -> bool:
    """A report in `status` may move to `to` (what a desk offers is what may happen)."""
    return status in ALLOWED_FROM[to]


class Report(Base):
    __tablename__ = "reports"
    __table_args__ = (
        CheckConstraint("rating IS NULL OR (rating BETWEEN 1 AND 5)", name="rating_range"),
        Index("ix_reports_team_open", "team_id", "status", "fix_due_at"),
        Index("ix_reports_near", "category", "status", "latitude"),
        Index("ix_reports_escalate", "status", "escalated_at", "fix_due_at"),
        # Covers /stats: the period's rows are read from the index alone.
        Index("ix_reports_period", "created_at", "zone_id", "team_id", "acknowledged_at",
              "fixed_at", "fix_due_at", "reopen_count", "rating"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(20), unique=True)
    reporter_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), index=True)
    category: Mapped[str] = mapped_column(String(40))
    description: Mapped[str] = mapped_column(Text, default="")
    latitude: Mapped[float | None]
    longitude: Mapped[float | None]
    exact_point: Mapped[bool] = mapped_column(default=False)  # shared, not an estate's centre
    estate_id: Mapped[int | None] = mapped_column(ForeignKey("estates.id"), index=True)
    building_id: Mapped[int | None] = mapped_column(ForeignKey("buildings.id"))
    zone_id: Mapped[int | None] = mapped_column(ForeignKey("zones.id"), index=True)
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))
    status: Mapped[str] = mapped_column(String(20), default=Status.NEW.value)
    close_reason: Mapped[str | None] = mapped_column(String(20))
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("reports.id"))
    urgent: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ack_due_at: Mapped[datetime]
    fix_due_at: Mapped[datetime]
    acknowledged_at: Mapped[datetime | None]
    fixed_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]
    reopen_count: Mapped[int] = mapped_column(default=0)
    confirmed_at: Mapped[datetime | None]  # the reporter said it is fixed
    rating: Mapped[int | None]
    version: Mapped[int] = mapped_column(default=0)
    # A report the bot filed itself ("I need help" on an emergency): {"code": ..., values},
    # worded in each reader's language (`description` keeps the filer's wording).
    reason: Mapped[dict | None]


class ReportEvent(Base):
    """One transition (or reassignment, follow, rating): who, when, from what to what, note."""

    __tablename__ = "report_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id"), index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("residents.id"))
    kind: Mapped[str] = mapped_column(String(20))  # status / reassign / escalate / rate
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str | None] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)
    photo: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[dict] = mapped_column(default=dict)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class ReportFollower(Base):
    __tablename__ = "report_followers"
    __table_args__ = (UniqueConstraint("report_id", "resident_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id"))
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class ReportMedia(Base):
    __tablename__ = "report_media"
    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id"), index=True)
    kind: Mapped[str] = mapped_column(String(10))  # photo / voice
    path: Mapped[str] = mapped_column(String(200))  # relative to the media store
    duration: Mapped[int | None]
    position: Mapped[int] = mapped_column(default=0)


class ReportSequence(Base):
    """The last reference number handed out in a year."""

    __tablename__ = "report_sequences"
    year: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(default=0)


# -- references ----------------------------------------------------------------------------

async def next_reference(session: AsyncSession, year: int, prefix: str = "Z") -> str:
    stmt = (update(ReportSequence).where(ReportSequence.year == year)
            .values(last=ReportSequence.last + 1).returning(ReportSequence.last))
    number = (await session.execute(stmt)).scalar()
    if number is None:
        try:
            async with session.begin_nested():
                await session.execute(insert(ReportSequence).values(year=year, last=1))
            number = 1
        except IntegrityError:  # another filing created the year's row first
            number = (await session.execute(stmt)).scalar_one()
    return f"{prefix}-{year}-{number:05d}"


# -- filing --------------------------------------------------------------------------------

@dataclass
class NewReport:
    reporter_id: int
    category: str
    description: str
    ack_due_at: datetime
    fix_due_at: datetime
    latitude: float | None = None
    longitude: float | None = None
    exact_point: bool = False
    estate_id: int | None = None
    building_id: int | None = None
    zone_id: int | None = None
    team_id: int | None = None
    urgent: bool = False
    photos: tuple[str, ...] = ()
    voice: str | None = None
    voice_duration: int | None = None
    reason: dict | None = None


async def create(session: AsyncSession, new: NewReport, now: datetime, year: int,
                 prefix: str = "Z") -> Report:
    report = Report(
        reference=await next_reference(session, year, prefix), reporter_id=new.reporter_id,
        category=new.category, description=new.description, latitude=new.latitude,
        longitude=new.longitude, exact_point=new.exact_point, estate_id=new.estate_id,
        building_id=new.building_id, zone_id=new.zone_id, team_id=new.team_id,
        urgent=new.urgent, status=Status.NEW.value, created_at=now,
        ack_due_at=new.ack_due_at, fix_due_at=new.fix_due_at, reason=new.reason,
    )
    session.add(report)
    await session.flush()
    for i, path in enumerate(new.photos):
        session.add(ReportMedia(report_id=report.id, kind="photo", path=path, position=i))
    if new.voice:
        session.add(ReportMedia(report_id=report.id, kind="voice", path=new.voice,
                                duration=new.voice_duration))
    session.add(ReportEvent(report_id=report.id, actor_id=new.reporter_id, kind="status",
                            to_status=Status.NEW.value, at=now))
    await session.flush()
    return report


# -- transitions ---------------------------------------------------------------------------

async def transition(
    session: AsyncSession, report_id: int, to: Status, *, actor_id: int | None, now: datetime,
    note: str | None = None, photo: str | None = None, reason: CloseReason | None = None,
    duplicate_of: int | None = None, expected: tuple[Status, ...] | None = None,
) -> str | None:
    """Move a report to `to`; returns the status it left, or None when it had moved on."""
    allowed = expected or ALLOWED_FROM[to]
    current = await session.scalar(select(Report.status).where(Report.id == report_id))
    if current is None or current not in allowed:
        return None
    values: dict = {"status": to.value, "version": Report.version + 1}
    if to == Status.ACKNOWLEDGED or (to == Status.IN_PROGRESS):
        values["acknowledged_at"] = func.coalesce(Report.acknowledged_at, now)
    if to == Status.FIXED:
        values["fixed_at"] = now
        values["acknowledged_at"] = func.coalesce(Report.acknowledged_at, now)
    if to == Status.CLOSED:
        values["closed_at"] = now
        values["close_reason"] = reason.value if reason else None
        values["duplicate_of"] = duplicate_of
    if to == Status.REOPENED:
        values["reopen_count"] = Report.reopen_count + 1
        values["fixed_at"] = None
        values["escalated_at"] = None
    result = await session.execute(
        update(Report).where(Report.id == report_id, Report.status == current).values(**values)
        .execution_options(synchronize_session=False)
    )
    if affected(result) != 1:
        return None  # someone else's transition committed between our read and our write
    session.add(ReportEvent(report_id=report_id, actor_id=actor_id, kind="status",
                            from_status=current, to_status=to.value, note=note, photo=photo,
                            detail={"reason": reason.value} if reason else {}, at=now))
    await session.flush()
    return current


async def reassign(session: AsyncSession, report_id: int, from_team: int | None, to_team: int,
                   *, actor_id: int, now: datetime, note: str | None = None) -> bool:
    """Hand an open report to another team; it starts again as new there."""
    result = await session.execute(
        update(Report).where(Report.id == report_id, Report.status.in_([s.value for s in OPEN]),
                             Report.team_id == from_team if from_team is not None
                             else Report.team_id.is_(None))
        .values(team_id=to_team, status=Status.NEW.value, acknowledged_at=None,
                version=Report.version + 1)
        .execution_options(synchronize_session=False)
    )
    if affected(result) != 1:
        return False
    session.add(ReportEvent(report_id=report_id, actor_id=actor_id, kind="reassign",
                            to_status=Status.NEW.value, note=note,
                            detail={"from_team": from_team, "to_team": to_team}, at=now))
    await session.flush()
    return True


async def confirm_fixed(session: AsyncSession, report_id: int, reporter_id: int,
                        now: datetime) -> bool:
    result = await session.execute(
        update(Report).where(Report.id == report_id, Report.reporter_id == reporter_id,
                             Report.status == Status.FIXED.value, Report.confirmed_at.is_(None))
        .values(confirmed_at=now).execution_options(synchronize_session=False))
    return affected(result) == 1


async def rate(session: AsyncSession, report_id: int, reporter_id: int, rating: int,
               now: datetime) -> bool:
    if not 1 <= rating <= 5:
        return False
    result = await session.execute(
        update(Report).where(Report.id == report_id, Report.reporter_id == reporter_id,
                             Report.rating.is_(None),
                             Report.status.in_([Status.FIXED.value, Status.CLOSED.value]))
        .values(rating=rating).execution_options(synchronize_session=False))
    if affected(result) != 1:
        return False
    session.add(ReportEvent(report_id=report_id, actor_id=reporter_id, kind="rate",
                            detail={"rating": rating}, at=now))
    return True


# -- followers -----------------------------------------------------------------------------

async def follow(session: AsyncSession, report_id: int, resident_id: int) -> bool:
    """True when newly following; the reporter never follows their own report."""
    reporter = await session.scalar(select(Report.reporter_id).where(Report.id == report_id))
    if reporter is None or reporter == resident_id:
        return False
    try:
        async with session.begin_nested():
            session.add(ReportFollower(report_id=report_id, resident_id=resident_id))
            await session.flush()
    except IntegrityError:
        return False
    return True


async def followers(session: AsyncSession, report_id: int) -> list[int]:
    rows = await session.scalars(
        select(ReportFollower.resident_id).where(ReportFollower.report_id == report_id))
    return list(rows.all())


async def merge_followers(session: AsyncSession, duplicate_id: int, original_id: int) -> list[int]:
    """The duplicate's reporter and followers now follow the original; returns who is new."""
    dup = await must_get(session, Report, duplicate_id)
    added = []
    for resident_id in {dup.reporter_id, *await followers(session, duplicate_id)}:
        if await follow(session, original_id, resident_id):
            added.append(resident_id)
    return added


async def record_need(session: AsyncSession, report: Report, need: str) -> None:
    """The kind of help asked for on a report the bot filed ("I need help")."""
    report.reason = {**(report.reason or {}), "need": need}  # a new dict: the JSON is rewritten
    await session.flush()


# -- reading -------------------------------------------------------------------------------

async def get(session: AsyncSession, report_id: int | None, *, fresh: bool = False
              ) -> Report | None:
    """A report by id; `fresh` reads it again from the database even when the session holds
    it (after a guarded UPDATE that bypassed the session)."""
    if report_id is None:
        return None
    return await session.get(Report, report_id, populate_existing=fresh)


async def by_reference(session: AsyncSession, reference: str) -> Report | None:
    return await session.scalar(select(Report).where(Report.reference == reference.upper()))


async def media_of(session: AsyncSession, report_id: int) -> list[ReportMedia]:
    rows = await session.scalars(select(ReportMedia).where(ReportMedia.report_id == report_id)
                                 .order_by(ReportMedia.kind, ReportMedia.position))
    return list(rows.all())


async def events_of(session: AsyncSession, report_id: int) -> list[ReportEvent]:
    rows = await session.scalars(select(ReportEvent).where(ReportEvent.report_id == report_id)
                                 .order_by(ReportEvent.id))
    return list(rows.all())


async def of_resident(session: AsyncSession, resident_id: int, limit: int = 20
                      ) -> list[tuple[Report, bool]]:
    """The resident's own reports and the ones they follow, newest first: (report, own)."""
    followed = select(ReportFollower.report_id).where(ReportFollower.resident_id == resident_id)
    rows = await session.scalars(
        select(Report).where(or_(Report.reporter_id == resident_id, Report.id.in_(followed)))
        .order_by(Report.created_at.desc(), Report.id.desc()).limit(limit))
    return [(r, r.reporter_id == resident_id) for r in rows.all()]


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    r = 6_371_000.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


async def open_nearby(session: AsyncSession, category: str, latitude: float, longitude: float,
                      radius_m: float, limit: int = 5) -> list[tuple[Report, float]]:
    """Open reports of a category within `radius_m`, nearest first."""
    dlat = radius_m / 111_320.0
    dlon = radius_m / (111_320.0 * max(0.01, math.cos(math.radians(latitude))))
    rows = await session.scalars(
        select(Report).where(
            Report.category == category, Report.status.in_([s.value for s in OPEN]),
            Report.latitude.between(latitude - dlat, latitude + dlat),
            Report.longitude.between(longitude - dlon, longitude + dlon)))
    found = [(r, distance_m(latitude, longitude, r.latitude, r.longitude)) for r in rows.all()
             if r.latitude is not None and r.longitude is not None]  # between() says so
    found = [(r, d) for r, d in found if d <= radius_m]
    return sorted(found, key=lambda rd: rd[1])[:limit]


async def queue(session: AsyncSession, now: datetime, *, team_ids: set[int] | None = None,
                estate_ids: set[int] | None = None, everything: bool = False,
                limit: int = 20) -> tuple[list[Report], int]:
    """Open reports of some teams (or estates): overdue first, then oldest; and how many."""
    cond: list[ColumnElement[bool]] = [Report.status.in_([s.value for s in OPEN])]
    if not everything:
        who = []
        if team_ids:
            who.append(Report.team_id.in_(team_ids))
        if estate_ids:
            who.append(Report.estate_id.in_(estate_ids))
        if not who:
            return [], 0
        cond.append(or_(*who))
    overdue = case((Report.fix_due_at < now, 0), else_=1)
    rows = await session.scalars(
        select(Report).where(*cond).order_by(overdue, Report.fix_due_at, Report.created_at,
                                             Report.id).limit(limit))
    total = await session.scalar(select(func.count()).select_from(Report).where(*cond))
    return list(rows.all()), int(total or 0)


@dataclass(frozen=True)
class QueueFilter:
    """The staff dashboard's queue: who sees what (as `queue`), and the filters picked."""

    team_ids: frozenset[int] = frozenset()
    estate_ids: frozenset[int] = frozenset()
    everything: bool = False
    zone_id: int | None = None
    team_id: int | None = None
    category: str | None = None
    statuses: tuple[str, ...] = tuple(s.value for s in OPEN)


async def queue_page(session: AsyncSession, now: datetime, flt: QueueFilter, *,
                     limit: int = 50, offset: int = 0) -> tuple[list[Report], int]:
    """One page of reports a viewer may see, filtered: overdue (still open) first, then by
    deadline; and how many match."""
    cond: list[ColumnElement[bool]] = [Report.status.in_(flt.statuses)]
    if not flt.everything:
        who = []
        if flt.team_ids:
            who.append(Report.team_id.in_(flt.team_ids))
        if flt.estate_ids:
            who.append(Report.estate_id.in_(flt.estate_ids))
        if not who:
            return [], 0
        cond.append(or_(*who))
    if flt.zone_id is not None:
        cond.append(Report.zone_id == flt.zone_id)
    if flt.team_id is not None:
        cond.append(Report.team_id == flt.team_id)
    if flt.category:
        cond.append(Report.category == flt.category)
    open_values = [s.value for s in OPEN]
    overdue = case((and_(Report.fix_due_at < now, Report.status.in_(open_values)), 0), else_=1)
    rows = await session.scalars(
        select(Report).where(*cond).order_by(overdue, Report.fix_due_at, Report.id)
        .limit(limit).offset(offset))
    total = await session.scalar(select(func.count()).select_from(Report).where(*cond))
    return list(rows.all()), int(total or 0)


async def media_by_id(session: AsyncSession, media_id: int) -> ReportMedia | None:
    return await session.get(ReportMedia, media_id)


async def claim_overdue(session: AsyncSession, now: datetime, limit: int = 100) -> list[Report]:
    """Open reports past an SLA, not yet escalated; each is claimed once, across workers."""
    late = or_(Report.fix_due_at < now,
               and_(Report.acknowledged_at.is_(None), Report.ack_due_at < now))
    ids = list((await session.scalars(
        select(Report.id).where(Report.status.in_([s.value for s in OPEN]),
                                Report.escalated_at.is_(None), late)
        .order_by(Report.fix_due_at).limit(limit))).all())
    claimed = []
    for report_id in ids:
        result = await session.execute(
            update(Report).where(Report.id == report_id, Report.escalated_at.is_(None))
            .values(escalated_at=now).execution_options(synchronize_session=False))
        if affected(result) == 1:
            session.add(ReportEvent(report_id=report_id, kind="escalate", at=now))
            claimed.append(report_id)
    if not claimed:
        return []
    rows = await session.scalars(select(Report).where(Report.id.in_(claimed))
                                 .execution_options(populate_existing=True))
    return list(rows.all())


def seconds_between(session: AsyncSession, later, earlier):
    """`later - earlier` in seconds, computed by the database (no datetimes to parse here)."""
    if session.bind.dialect.name == "postgresql":
        return cast(func.extract("epoch", later - earlier), Float)  # numeric otherwise
    return (func.julianday(later) - func.julianday(earlier)) * 86400.0


async def period_rows(session: AsyncSession, since: datetime, until: datetime,
                      estate_ids: set[int] | None = None):
    """Per report received in [since, until): zone, team, seconds to acknowledge, seconds to
    fix, fixed within SLA (0/1), reopened (0/1), rating. `ix_reports_period` covers it.
    `estate_ids`: only reports at these estates (None: everywhere)."""
    q = (select(Report.zone_id, Report.team_id,
                seconds_between(session, Report.acknowledged_at, Report.created_at),
                seconds_between(session, Report.fixed_at, Report.created_at),
                case((Report.fixed_at <= Report.fix_due_at, 1), else_=0),
                case((Report.reopen_count > 0, 1), else_=0), Report.rating)
         .where(Report.created_at >= since, Report.created_at < until))
    if estate_ids is not None:
        q = q.where(Report.estate_id.in_(estate_ids or {-1}))
    return (await session.execute(q)).all()


async def team_members(session: AsyncSession, team_id: int | None) -> list[int]:
    from storage.people import Role, RoleKind

    if team_id is None:
        return []
    rows = await session.scalars(select(Role.resident_id).where(
        Role.kind == RoleKind.TEAM.value, Role.scope_id == team_id).order_by(Role.resident_id))
    return list(dict.fromkeys(rows.all()))


async def station_staff_for(session: AsyncSession, estate_id: int | None) -> list[int]:
    """Staff of the station an estate belongs to; with no estate, every station's staff."""
    from storage.people import Role, RoleKind
    from storage.territory import Committee, Estate

    q = select(Role.resident_id).where(Role.kind == RoleKind.STAFF.value)
    if estate_id is not None:
        station = (select(Committee.station_id).join(Estate, Estate.committee_id == Committee.id)
                   .where(Estate.id == estate_id).scalar_subquery())
        q = q.where(Role.scope_id == station)
    rows = await session.scalars(q.order_by(Role.resident_id))
    return list(dict.fromkeys(rows.all()))
