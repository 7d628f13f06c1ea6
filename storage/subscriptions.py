"""What each resident wants to receive: categories switched off, and quiet hours.

A resident with no row gets everything, any time. Categories are stored as opt-outs so a new
resident (and a new category) is on by default, and the fan-out can filter in SQL with NOT EXISTS.
Emergencies cannot be switched off: `set_category` refuses, and the fan-out ignores opt-outs for
them anyway.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ForeignKey, String, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, utcnow

CATEGORIES = ("emergency", "weather", "guide", "event", "convenience")
ALWAYS_ON = frozenset({"emergency"})


class Subscription(Base):
    """Quiet hours of one resident, as minutes after local midnight (bot timezone)."""

    __tablename__ = "subscriptions"
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), primary_key=True)
    quiet_start: Mapped[int | None]
    quiet_end: Mapped[int | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SubscriptionOptOut(Base):
    __tablename__ = "subscription_optouts"
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), primary_key=True)
    category: Mapped[str] = mapped_column(String(20), primary_key=True)


async def opted_out(session: AsyncSession, resident_id: int) -> set[str]:
    rows = await session.scalars(
        select(SubscriptionOptOut.category).where(SubscriptionOptOut.resident_id == resident_id))
    return set(rows.all())


async def set_category(session: AsyncSession, resident_id: int, category: str, on: bool) -> None:
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}")
    if category in ALWAYS_ON:
        if not on:
            raise ValueError(f"{category} cannot be switched off")
        return
    await session.execute(delete(SubscriptionOptOut).where(
        SubscriptionOptOut.resident_id == resident_id, SubscriptionOptOut.category == category))
    if not on:
        session.add(SubscriptionOptOut(resident_id=resident_id, category=category))
    await session.flush()


async def quiet_hours(session: AsyncSession, resident_id: int) -> tuple[int, int] | None:
    row = await session.get(Subscription, resident_id)
    if row is None or row.quiet_start is None or row.quiet_end is None:
        return None
    return row.quiet_start, row.quiet_end


async def set_quiet_hours(session: AsyncSession, resident_id: int,
                          hours: tuple[int, int] | None) -> None:
    row = await session.get(Subscription, resident_id)
    if row is None:
        row = Subscription(resident_id=resident_id)
        session.add(row)
    row.quiet_start, row.quiet_end = hours if hours else (None, None)
    row.updated_at = utcnow()
    await session.flush()


async def quiet_hours_of(session: AsyncSession, resident_ids: list[int]
                         ) -> dict[int, tuple[int, int]]:
    """Quiet hours (start, end minutes) of those residents who set them, in one query."""
    if not resident_ids:
        return {}
    rows = await session.execute(
        select(Subscription.resident_id, Subscription.quiet_start, Subscription.quiet_end)
        .where(Subscription.resident_id.in_(resident_ids),
               Subscription.quiet_start.is_not(None)))
    return {rid: (start, end) for rid, start, end in rows.all()}


def parse_quiet_hours(text: str) -> tuple[int, int] | None:
    """`22:00-07:00` (also `22-7`, `22：00～07：00`) → minutes; None when it is not that shape
    or both ends are the same."""
    cleaned = (text.replace("：", ":").replace("～", "-").replace("~", "-").replace("—", "-")
               .replace("–", "-").replace("到", "-").replace(" ", ""))
    parts = cleaned.split("-")
    if len(parts) != 2:
        return None
    start, end = (_parse_clock(p) for p in parts)
    if start is None or end is None or start == end:
        return None
    return start, end


def _parse_clock(text: str) -> int | None:
    hour, _, minute = text.partition(":")
    if not hour.isdigit() or (minute and not minute.isdigit()) or len(hour) > 2:
        return None
    h, m = int(hour), int(minute or 0)
    if not (0 <= h <= 23 and 0 <= m <= 59):
        return None
    return h * 60 + m


def format_minutes(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def quiet_until(now: datetime, start: int | None, end: int | None, tz: str) -> datetime | None:
    """When quiet hours (local minutes `start`–`end`, possibly across midnight) end, if `now`
    falls inside them; None when the resident may be disturbed now."""
    if start is None or end is None or start == end:
        return None
    local = now.astimezone(ZoneInfo(tz))
    minute = local.hour * 60 + local.minute
    inside = start <= minute < end if start < end else (minute >= start or minute < end)
    if not inside:
        return None
    end_day = local.date() if minute < end else local.date() + timedelta(days=1)
    end_at = datetime.combine(end_day, time(end // 60, end % 60), tzinfo=ZoneInfo(tz))
    return end_at.astimezone(now.tzinfo)
