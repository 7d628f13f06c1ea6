"""What official alerts and morning forecasts have been handled, so each goes out once.

Both tables are claimed with guarded inserts/updates: a restart or a second worker finds the
row already there (or already claimed) and does nothing.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import Date, ForeignKey, String, UniqueConstraint, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, affected, utcnow


class AlertCap(Base):
    """One CAP message, by (sender, identifier), whatever became of it."""

    __tablename__ = "alert_cap"
    __table_args__ = (UniqueConstraint("sender", "identifier"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    sender: Mapped[str] = mapped_column(String(255))
    identifier: Mapped[str] = mapped_column(String(255))
    sent: Mapped[datetime | None]
    msg_type: Mapped[str] = mapped_column(String(12))
    status: Mapped[str] = mapped_column(String(12))
    # pushed / ignored (not Actual) / expired / outside (no estate in the area) / unmatched
    outcome: Mapped[str] = mapped_column(String(12))
    headlines: Mapped[dict] = mapped_column(default=dict)  # language → headline
    urgent: Mapped[bool] = mapped_column(default=False)
    category: Mapped[str | None] = mapped_column(String(20))
    estate_ids: Mapped[list] = mapped_column(default=list)
    refers_to: Mapped[list] = mapped_column(default=list)  # ids of earlier rows it refers to
    expires: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class AlertWeatherDay(Base):
    """The morning forecast of one zone on one local date."""

    __tablename__ = "alert_weather_days"
    __table_args__ = (UniqueConstraint("zone_id", "day"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id"))
    day: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending/fetching/sent/failed
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(String(200))
    warning: Mapped[bool] = mapped_column(default=False)


async def cap_seen(session: AsyncSession, sender: str, identifier: str) -> bool:
    return await session.scalar(select(AlertCap.id).where(
        AlertCap.sender == sender, AlertCap.identifier == identifier)) is not None


async def cap_claim(session: AsyncSession, row: AlertCap) -> bool:
    """Record a CAP message; False when it was recorded before (by us or another worker)."""
    try:
        async with session.begin_nested():
            session.add(row)
            await session.flush()
    except IntegrityError:
        return False
    return True


async def cap_referenced(session: AsyncSession, refs: list[tuple[str, str]]) -> list[AlertCap]:
    found = []
    for sender, identifier in refs:
        row = await session.scalar(select(AlertCap).where(
            AlertCap.sender == sender, AlertCap.identifier == identifier))
        if row is not None:
            found.append(row)
    return found


async def cap_thread(session: AsyncSession, rows: list[AlertCap]) -> list[AlertCap]:
    """The whole reference chain of `rows`: what they refer to, and every later message that
    refers to any message of the chain, transitively. A Cancel naming only the original Alert
    thus also finds the Update that reached new estates."""
    thread = {r.id: r for r in rows}
    asked: set[int] = set()
    while thread:
        missing = {i for r in thread.values() for i in (r.refers_to or [])} - set(thread) - asked
        asked |= missing
        found = list(await session.scalars(select(AlertCap).where(
            AlertCap.id.in_(missing)))) if missing else []
        # A message can only refer to earlier ones: rows after the chain's oldest suffice.
        later = (await session.scalars(select(AlertCap).where(
            AlertCap.id > min(thread), AlertCap.id.not_in(list(thread))))).all()
        found += [r for r in later if set(r.refers_to or []) & set(thread)]
        if not found:
            break
        thread.update({r.id: r for r in found})
    return sorted(thread.values(), key=lambda r: r.id)


async def weather_days_ensure(session: AsyncSession, zone_ids: list[int], day: date,
                              now: datetime) -> None:
    """A row per zone for `day`, due from `now` (the bot's clock, as the claim reads it)."""
    existing = set((await session.scalars(select(AlertWeatherDay.zone_id).where(
        AlertWeatherDay.day == day))).all())
    for zone_id in zone_ids:
        if zone_id in existing:
            continue
        try:
            async with session.begin_nested():
                session.add(AlertWeatherDay(zone_id=zone_id, day=day, next_attempt_at=now))
                await session.flush()
        except IntegrityError:
            pass  # another worker made it


async def weather_days_claim(session: AsyncSession, day: date, now: datetime,
                             stale: timedelta) -> list[int]:
    """Claim this day's due zones; claims of a worker that died are taken over when stale."""
    ids = list((await session.scalars(select(AlertWeatherDay.id).where(
        AlertWeatherDay.day == day,
        ((AlertWeatherDay.status == "pending") & (AlertWeatherDay.next_attempt_at <= now))
        | ((AlertWeatherDay.status == "fetching") & (AlertWeatherDay.claimed_at < now - stale)),
    ))).all())
    claimed = []
    for row_id in ids:
        result = await session.execute(
            update(AlertWeatherDay).where(
                AlertWeatherDay.id == row_id,
                ((AlertWeatherDay.status == "pending") & (AlertWeatherDay.next_attempt_at <= now))
                | ((AlertWeatherDay.status == "fetching")
                   & (AlertWeatherDay.claimed_at < now - stale)))
            .values(status="fetching", claimed_at=now, attempts=AlertWeatherDay.attempts + 1))
        if affected(result) == 1:
            claimed.append(row_id)
    return claimed


async def weather_day_retry(session: AsyncSession, row_id: int, at: datetime, error: str) -> None:
    await session.execute(update(AlertWeatherDay).where(AlertWeatherDay.id == row_id).values(
        status="pending", error=error[:200], next_attempt_at=at))


async def weather_day_done(session: AsyncSession, row_id: int, status: str, *,
                           warning: bool = False, error: str | None = None) -> None:
    await session.execute(update(AlertWeatherDay).where(AlertWeatherDay.id == row_id).values(
        status=status, warning=warning, error=error[:200] if error else None))


async def weather_days_give_up(session: AsyncSession, day: date) -> int:
    result = await session.execute(update(AlertWeatherDay).where(
        AlertWeatherDay.day == day, AlertWeatherDay.status.in_(("pending", "fetching"))
    ).values(status="failed"))
    return affected(result) or 0
