"""Territory: sub-district → stations → committees → estates → buildings, and zones with teams."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, by_id


class Subdistrict(Base):
    __tablename__ = "subdistricts"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name_zh: Mapped[str] = mapped_column(String(120))
    name_en: Mapped[str] = mapped_column(String(120))
    boundary: Mapped[dict | None]  # GeoJSON geometry


class Station(Base):
    __tablename__ = "stations"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    subdistrict_id: Mapped[int] = mapped_column(ForeignKey("subdistricts.id"))
    name_zh: Mapped[str] = mapped_column(String(120))
    name_en: Mapped[str] = mapped_column(String(120))


class Committee(Base):
    __tablename__ = "committees"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id"))
    name_zh: Mapped[str] = mapped_column(String(120))
    name_en: Mapped[str] = mapped_column(String(120))


class Estate(Base):
    __tablename__ = "estates"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    committee_id: Mapped[int] = mapped_column(ForeignKey("committees.id"))
    name_zh: Mapped[str] = mapped_column(String(120))
    name_en: Mapped[str] = mapped_column(String(120))
    aliases: Mapped[list] = mapped_column(default=list)
    latitude: Mapped[float]
    longitude: Mapped[float]
    boundary: Mapped[dict | None]


class Building(Base):
    __tablename__ = "buildings"
    __table_args__ = (UniqueConstraint("estate_id", "number"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    estate_id: Mapped[int] = mapped_column(ForeignKey("estates.id"))
    number: Mapped[str] = mapped_column(String(20))
    # The building's units in normal form (people.normalize_unit), when the territory lists
    # them: then a resident picks one of these instead of typing a unit.
    units: Mapped[list | None]


class Zone(Base):
    __tablename__ = "zones"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name_zh: Mapped[str] = mapped_column(String(120))
    name_en: Mapped[str] = mapped_column(String(120))
    boundary: Mapped[dict]


class Team(Base):
    __tablename__ = "teams"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    zone_id: Mapped[int | None] = mapped_column(ForeignKey("zones.id"))
    name_zh: Mapped[str] = mapped_column(String(120))
    name_en: Mapped[str] = mapped_column(String(120))
    # Report categories this team answers for; empty means every category in its zone.
    categories: Mapped[list] = mapped_column(default=list)


def localized(row: Any, lang: str) -> str:
    return row.name_en if lang == "en" else row.name_zh


async def estates(session: AsyncSession) -> list[Estate]:
    return list((await session.scalars(select(Estate).order_by(Estate.id))).all())


async def zones(session: AsyncSession) -> list[Zone]:
    return list((await session.scalars(select(Zone).order_by(Zone.id))).all())


async def zone(session: AsyncSession, zone_id: int | None) -> Zone | None:
    return await by_id(session, Zone, zone_id)


async def estate_by_code(session: AsyncSession, code: str) -> Estate | None:
    return await session.scalar(select(Estate).where(Estate.code == code))


async def building(session: AsyncSession, estate_id: int, number: str) -> Building | None:
    return await session.scalar(
        select(Building).where(Building.estate_id == estate_id, Building.number == number)
    )


async def buildings_of(session: AsyncSession, estate_id: int) -> list[Building]:
    rows = await session.scalars(select(Building).where(Building.estate_id == estate_id))
    return sorted(rows.all(), key=lambda b: (len(b.number), b.number))


async def committees(session: AsyncSession) -> list[Committee]:
    return list((await session.scalars(select(Committee).order_by(Committee.id))).all())


async def committee_ids(session: AsyncSession) -> set[int]:
    return set((await session.scalars(select(Committee.id))).all())


async def committee(session: AsyncSession, committee_id: int) -> Committee | None:
    return await session.get(Committee, committee_id)


async def estate(session: AsyncSession, estate_id: int | None) -> Estate | None:
    """The estate, or None (also without an id: a resident who has not set a home)."""
    return await by_id(session, Estate, estate_id)


async def building_by_id(session: AsyncSession, building_id: int | None) -> Building | None:
    return await by_id(session, Building, building_id)


async def committee_of_estate(session: AsyncSession, estate_id: int | None) -> Committee | None:
    """The committee an estate belongs to (None without an estate)."""
    row = await estate(session, estate_id)
    return await committee(session, row.committee_id) if row is not None else None


async def committee_id_of_area(session: AsyncSession, kind: str, area_id: int) -> int | None:
    """The committee a committee, an estate or a building (`kind`) belongs to."""
    if kind == "committee":
        return area_id
    estate_id: int | None = area_id
    if kind == "building":
        b = await building_by_id(session, area_id)
        estate_id = b.estate_id if b else None
    e = await estate(session, estate_id)
    return e.committee_id if e else None


async def team(session: AsyncSession, team_id: int | None) -> Team | None:
    return await by_id(session, Team, team_id)


async def teams_other_than(session: AsyncSession, team_id: int | None) -> list[Team]:
    """Every team but `team_id`, in id order (the targets of a reassignment)."""
    rows = await session.scalars(select(Team).where(Team.id != (team_id or -1)).order_by(Team.id))
    return list(rows.all())
