"""Who a notice goes to, within what the sender is responsible for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.access import Scope
from storage.audience import Kind
from storage.notices import NoticeError
from storage.territory import Building, Committee, Estate, Station, Zone, localized

if TYPE_CHECKING:
    from bot.i18n import Texts
    from services.geo import TerritoryIndex

# Typed audience words, both languages.
KIND_WORDS = {
    "all": Kind.SUBDISTRICT, "subdistrict": Kind.SUBDISTRICT,
    "全部": Kind.SUBDISTRICT, "全街道": Kind.SUBDISTRICT, "街道": Kind.SUBDISTRICT,
    "station": Kind.STATION, "工作站": Kind.STATION, "站": Kind.STATION,
    "committee": Kind.COMMITTEE, "居委": Kind.COMMITTEE, "居委会": Kind.COMMITTEE,
    "estate": Kind.ESTATE, "小区": Kind.ESTATE,
    "building": Kind.BUILDING, "楼": Kind.BUILDING, "楼栋": Kind.BUILDING,
    "zone": Kind.ZONE, "片区": Kind.ZONE,
    "volunteers": Kind.VOLUNTEERS, "志愿者": Kind.VOLUNTEERS,
}
Place = Station | Committee | Estate | Zone
MODELS: dict[Kind, type[Place]] = {
    Kind.STATION: Station, Kind.COMMITTEE: Committee, Kind.ESTATE: Estate,
    Kind.ZONE: Zone}


@dataclass
class Resolved:
    kind: str
    target_id: int | None
    estate_ids: list[int] | None  # None: the whole sub-district
    building_ids: list[int] | None


def allowed_kinds(scope: Scope) -> list[Kind]:
    kinds = [Kind.SUBDISTRICT] if scope.everything else []
    if scope.everything or scope.station_ids:
        kinds.append(Kind.STATION)
    if scope.everything or scope.committee_ids:
        kinds += [Kind.COMMITTEE, Kind.ESTATE, Kind.BUILDING, Kind.ZONE]
    if kinds:
        kinds.append(Kind.VOLUNTEERS)
    return kinds


async def targets(session: AsyncSession, geo: TerritoryIndex, scope: Scope, kind: Kind) -> list:
    """Rows the sender may choose for this kind (buildings are chosen by estate, then typed)."""
    if kind == Kind.STATION:
        stations = (await session.scalars(select(Station).order_by(Station.id))).all()
        return [r for r in stations if scope.everything or r.id in scope.station_ids]
    if kind == Kind.COMMITTEE:
        committees = (await session.scalars(select(Committee).order_by(Committee.id))).all()
        return [r for r in committees if scope.everything or r.id in scope.committee_ids]
    if kind in (Kind.ESTATE, Kind.BUILDING):
        estates = (await session.scalars(select(Estate).order_by(Estate.id))).all()
        return [r for r in estates if scope.covers_estate(r.id)]
    if kind == Kind.ZONE:
        zones = (await session.scalars(select(Zone).order_by(Zone.id))).all()
        return [z for z in zones if await _zone_estates(session, geo, scope, z.id)]
    return []


async def _zone_estates(session: AsyncSession, geo: TerritoryIndex, scope: Scope, zone_id: int) -> list[int]:
    ids = (await session.scalars(select(Estate.id).order_by(Estate.id))).all()
    return [e for e in ids if geo.zone_of_estate(e) == zone_id and scope.covers_estate(e)]


async def resolve(session: AsyncSession, geo: TerritoryIndex, scope: Scope, kind: str,
                  target_id: int | None) -> Resolved:
    """The estates/buildings behind an audience, or NoticeError unknown_audience/out_of_scope."""
    if kind not in set(Kind):
        raise NoticeError("unknown_audience")
    kind = Kind(kind)
    if kind not in allowed_kinds(scope):
        raise NoticeError("out_of_scope")
    if kind == Kind.SUBDISTRICT:
        return Resolved(kind, None, None, None)
    if kind == Kind.VOLUNTEERS:
        if scope.everything:
            return Resolved(kind, None, None, None)
        estates = (await session.scalars(select(Estate.id).order_by(Estate.id))).all()
        return Resolved(kind, None, [e for e in estates if scope.covers_estate(e)], None)
    if target_id is None:
        raise NoticeError("unknown_audience")
    if kind == Kind.BUILDING:
        building = await session.get(Building, target_id)
        if building is None:
            raise NoticeError("unknown_audience")
        if not scope.covers_estate(building.estate_id):
            raise NoticeError("out_of_scope")
        return Resolved(kind, target_id, [building.estate_id], [building.id])
    row = cast("Place | None", await session.get(MODELS[kind], target_id))
    if row is None:
        raise NoticeError("unknown_audience")
    if kind == Kind.ZONE:
        estates = await _zone_estates(session, geo, scope, row.id)
        if not estates:
            raise NoticeError("out_of_scope")
        return Resolved(kind, row.id, estates, None)
    if kind == Kind.STATION:
        if not (scope.everything or row.id in scope.station_ids):
            raise NoticeError("out_of_scope")
        estates = (await session.scalars(
            select(Estate.id).join(Committee, Committee.id == Estate.committee_id)
            .where(Committee.station_id == row.id))).all()
        return Resolved(kind, row.id, list(estates), None)
    if kind == Kind.COMMITTEE:
        if not (scope.everything or row.id in scope.committee_ids):
            raise NoticeError("out_of_scope")
        estates = (await session.scalars(
            select(Estate.id).where(Estate.committee_id == row.id))).all()
        return Resolved(kind, row.id, list(estates), None)
    if not scope.covers_estate(row.id):
        raise NoticeError("out_of_scope")
    return Resolved(kind, row.id, [row.id], None)


async def parse_typed(session: AsyncSession, text: str) -> tuple[str, int | None]:
    """"committee zhonghai", "小区 victoria", "building victoria 3", "all" → (kind, target id);
    NoticeError unknown_audience when no such place exists."""
    words = text.replace("，", " ").replace(",", " ").split()
    if not words or words[0].lower() not in KIND_WORDS:
        raise NoticeError("unknown_audience")
    kind = KIND_WORDS[words[0].lower()]
    if kind in (Kind.SUBDISTRICT, Kind.VOLUNTEERS):
        return kind, None
    if kind == Kind.BUILDING:
        if len(words) != 3:
            raise NoticeError("unknown_audience")
        estate = await _by_name(session, Estate, words[1])
        building = estate and await session.scalar(select(Building).where(
            Building.estate_id == estate.id, Building.number == words[2]))
        if not building:
            raise NoticeError("unknown_audience")
        return kind, building.id
    if len(words) != 2:
        raise NoticeError("unknown_audience")
    row = await _by_name(session, MODELS[kind], words[1])
    if row is None:
        raise NoticeError("unknown_audience")
    return kind, row.id


async def _by_name(session: AsyncSession, model: type[Place], word: str) -> Place | None:
    word_l = word.lower()
    rows = cast("list[Place]", (await session.scalars(select(model))).all())
    return next((r for r in rows if word_l in (r.code.lower(), r.name_en.lower(), r.name_zh)),
                None)


async def describe(session: AsyncSession, lang: str, texts: Texts, kind: str,
                   target_id: int | None) -> str:
    label = texts.get(lang, f"notices.aud_{kind}")
    if kind in (Kind.SUBDISTRICT, Kind.VOLUNTEERS) or target_id is None:
        return label
    if kind == Kind.BUILDING:
        building = await session.get(Building, target_id)
        if building is None:
            return label
        estate = await session.get(Estate, building.estate_id)
        return f"{label} {localized(estate, lang)} {building.number}"
    row = cast("Place | None", await session.get(MODELS[Kind(kind)], target_id))
    return f"{label} {localized(row, lang)}" if row else label
