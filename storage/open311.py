"""Open311 GeoReport v2: the API keys other systems file and read reports with, what each
filing brought (contact fields, media URL), and the queries the API answers from.

A key is shown once, when it is created; only its SHA-256 is kept (a key is 32 random bytes,
so a fast hash is enough: there is nothing to guess). Each key is held over one station or one
team, and files reports in the name of a resident row of its own (no chat identity: nothing is
ever pushed to it), so a report filed through the API is an ordinary report in every other way.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, affected, utcnow
from storage.people import Resident
from storage.reports import Report, ReportEvent
from storage.territory import Estate, Station, Team, Zone

SCOPE_KINDS = ("station", "team")
KEY_PREFIX = "o311_"


class ApiKey(Base):
    __tablename__ = "open311_keys"
    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(80))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))  # the key's first characters, for `key list`
    scope_kind: Mapped[str] = mapped_column(String(10))  # station / team
    scope_id: Mapped[int]
    reporter_id: Mapped[int] = mapped_column(ForeignKey("residents.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class Submission(Base):
    """One POST: the report it filed (or was merged into), and what came with it."""

    __tablename__ = "open311_submissions"
    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id"), index=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("open311_keys.id"), index=True)
    merged: Mapped[bool] = mapped_column(default=False)  # an open report nearby took it
    contact: Mapped[dict] = mapped_column(default=dict)  # first/last name, email, phone, ...
    address_string: Mapped[str | None] = mapped_column(Text)
    media_url: Mapped[str | None] = mapped_column(String(500))
    at: Mapped[datetime] = mapped_column(default=utcnow)


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# -- keys ----------------------------------------------------------------------------------

class KeyError_(ValueError):
    """A key that cannot be created as asked (unknown scope)."""


async def scope_target(session: AsyncSession, kind: str, code: str) -> Station | Team | None:
    model = Station if kind == "station" else Team
    return await session.scalar(select(model).where(model.code == code))


async def create_key(session: AsyncSession, label: str, kind: str, code: str,
                     now: datetime) -> tuple[ApiKey, str]:
    """A new key over a station or team: (its row, the key itself, shown only now)."""
    if kind not in SCOPE_KINDS:
        raise KeyError_(f"scope must be station:CODE or team:CODE, not {kind}:{code}")
    target = await scope_target(session, kind, code)
    if target is None:
        raise KeyError_(f"no {kind} with code {code!r}")
    token = KEY_PREFIX + secrets.token_urlsafe(32)
    reporter = Resident(display_name=f"Open311 · {label}", created_at=now)
    session.add(reporter)
    await session.flush()
    key = ApiKey(label=label, key_hash=hash_key(token), hint=token[:10], scope_kind=kind,
                 scope_id=target.id, reporter_id=reporter.id, created_at=now)
    session.add(key)
    await session.flush()
    return key, token


async def key_for(session: AsyncSession, token: str | None) -> ApiKey | None:
    """The live key a client presented, or None (unknown, revoked or missing)."""
    if not token:
        return None
    return await session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(token),
                                                     ApiKey.revoked_at.is_(None)))


async def revoke_key(session: AsyncSession, key_id: int, now: datetime) -> bool:
    result = await session.execute(
        update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now).execution_options(synchronize_session=False))
    return affected(result) == 1


async def keys(session: AsyncSession) -> list[tuple[ApiKey, str]]:
    """Every key with its scope as `kind:code`, oldest first."""
    stations = {s.id: s.code for s in (await session.scalars(select(Station))).all()}
    teams = {t.id: t.code for t in (await session.scalars(select(Team))).all()}
    rows = (await session.scalars(select(ApiKey).order_by(ApiKey.id))).all()
    return [(k, f"{k.scope_kind}:{(stations if k.scope_kind == 'station' else teams).get(k.scope_id, '?')}")
            for k in rows]


async def station_estates(session: AsyncSession, station_id: int) -> set[int]:
    from storage.territory import Committee

    rows = await session.scalars(select(Estate.id).join(Committee, Committee.id == Estate.committee_id)
                                 .where(Committee.station_id == station_id))
    return set(rows.all())


async def stations(session: AsyncSession) -> list[Station]:
    return list((await session.scalars(select(Station).order_by(Station.id))).all())


# -- submissions ---------------------------------------------------------------------------

async def record_submission(session: AsyncSession, report_id: int, key_id: int, *,
                            merged: bool, contact: dict, address_string: str | None,
                            media_url: str | None, now: datetime) -> Submission:
    row = Submission(report_id=report_id, key_id=key_id, merged=merged, contact=contact,
                     address_string=address_string, media_url=media_url, at=now)
    session.add(row)
    await session.flush()
    return row


async def first_submission(session: AsyncSession, report_id: int) -> Submission | None:
    """The POST that filed a report (None for one filed in chat)."""
    return await session.scalar(select(Submission).where(Submission.report_id == report_id,
                                                         Submission.merged.is_(False))
                                .order_by(Submission.id).limit(1))


async def media_urls(session: AsyncSession, report_ids: list[int]) -> dict[int, str]:
    if not report_ids:
        return {}
    rows = await session.execute(
        select(Submission.report_id, Submission.media_url)
        .where(Submission.report_id.in_(report_ids), Submission.merged.is_(False),
               Submission.media_url.is_not(None)).order_by(Submission.id))
    found: dict[int, str] = {}
    for report_id, url in rows.all():
        found.setdefault(report_id, url)
    return found


# -- reading requests ----------------------------------------------------------------------

@dataclass
class RequestQuery:
    references: list[str] | None = None  # overrides everything else but the place
    categories: list[str] | None = None
    statuses: list[str] | None = None  # our statuses (storage.reports.Status values)
    since: datetime | None = None  # created_at >= since
    until: datetime | None = None  # created_at <= until
    # The jurisdiction: reports at these estates, or with no estate in these zones.
    estate_ids: set[int] | None = None
    zone_ids: set[int] | None = None
    limit: int = 100
    offset: int = 0


def _in_place(q: RequestQuery):
    if q.estate_ids is None:
        return None
    return or_(Report.estate_id.in_(q.estate_ids or {-1}),
               and_(Report.estate_id.is_(None), Report.zone_id.in_(q.zone_ids or {-1})))


async def find_requests(session: AsyncSession, q: RequestQuery) -> list[Report]:
    """Reports matching the query, newest first (then by id, so pages never overlap)."""
    cond = []
    place = _in_place(q)
    if place is not None:
        cond.append(place)
    if q.references is not None:
        cond.append(Report.reference.in_([r.upper() for r in q.references]))
    else:
        if q.categories:
            cond.append(Report.category.in_(q.categories))
        if q.statuses is not None:
            cond.append(Report.status.in_(q.statuses))
        if q.since is not None:
            cond.append(Report.created_at >= q.since)
        if q.until is not None:
            cond.append(Report.created_at <= q.until)
    rows = await session.scalars(select(Report).where(*cond)
                                 .order_by(Report.created_at.desc(), Report.id.desc())
                                 .limit(q.limit).offset(q.offset))
    return list(rows.all())


@dataclass(frozen=True)
class LastChange:
    at: datetime  # the latest status change or reassignment
    note: str | None  # the note of the change that set the current status
    close_reason: str | None


async def last_changes(session: AsyncSession, reports: list[Report]) -> dict[int, LastChange]:
    """Per report: when it last changed and the note that came with its current status."""
    if not reports:
        return {}
    rows = await session.execute(
        select(ReportEvent.report_id, ReportEvent.at, ReportEvent.kind, ReportEvent.to_status,
               ReportEvent.note)
        .where(ReportEvent.report_id.in_([r.id for r in reports]),
               ReportEvent.kind.in_(("status", "reassign")))
        .order_by(ReportEvent.report_id, ReportEvent.id))
    by_id = {r.id: r for r in reports}
    latest: dict[int, datetime] = {}
    notes: dict[int, str | None] = {}
    for report_id, at, kind, to_status, note in rows.all():
        latest[report_id] = at
        if kind == "status" and to_status == by_id[report_id].status:
            notes[report_id] = note
    return {r.id: LastChange(latest.get(r.id, r.created_at), notes.get(r.id), r.close_reason)
            for r in reports}


@dataclass(frozen=True)
class Names:
    teams: dict[int, Team]
    estates: dict[int, Estate]
    zones: dict[int, Zone]


async def names(session: AsyncSession) -> Names:
    """Teams, estates and zones by id (a territory is small: read whole, once a request)."""
    return Names({t.id: t for t in (await session.scalars(select(Team))).all()},
                 {e.id: e for e in (await session.scalars(select(Estate))).all()},
                 {z.id: z for z in (await session.scalars(select(Zone))).all()})
