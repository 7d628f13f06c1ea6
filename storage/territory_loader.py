"""Load (or reload) the territory from its data file; rows are matched by code, so reloading
an edited file updates in place and never breaks residents' homes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import kv
from storage.people import normalize_unit
from storage.territory import Building, Committee, Estate, Station, Subdistrict, Team, Zone


class TerritoryError(ValueError):
    pass


async def _upsert(session: AsyncSession, model, code: str, **values):
    row = await session.scalar(select(model).where(model.code == code))
    if row is None:
        row = model(code=code, **values)
        session.add(row)
    else:
        for key, value in values.items():
            setattr(row, key, value)
    await session.flush()
    return row


def _names(item: dict[str, Any]) -> dict[str, str]:
    try:
        return {"name_zh": item["name_zh"], "name_en": item["name_en"]}
    except KeyError as exc:
        raise TerritoryError(f"{item.get('code', '?')}: missing {exc.args[0]}") from None


async def load_territory(session: AsyncSession, data: dict[str, Any]) -> dict[str, int]:
    """Upsert every place in `data` (geometry already validated); returns counts by kind."""
    counts = dict.fromkeys(
        ("stations", "committees", "estates", "buildings", "zones", "teams"), 0
    )
    sd = data.get("subdistrict")
    if not sd:
        raise TerritoryError("no subdistrict")
    subdistrict = await _upsert(session, Subdistrict, sd["code"], boundary=sd.get("boundary"),
                                **_names(sd))
    for st in data.get("stations", []):
        station = await _upsert(session, Station, st["code"], subdistrict_id=subdistrict.id,
                                **_names(st))
        counts["stations"] += 1
        for cm in st.get("committees", []):
            committee = await _upsert(session, Committee, cm["code"], station_id=station.id,
                                      **_names(cm))
            counts["committees"] += 1
            await kv.put(session, proposal_threshold_key(cm["code"]), _threshold(cm))
            for es in cm.get("estates", []):
                estate = await _upsert(
                    session, Estate, es["code"], committee_id=committee.id,
                    aliases=list(es.get("aliases", [])), latitude=float(es["latitude"]),
                    longitude=float(es["longitude"]), boundary=es.get("boundary"), **_names(es),
                )
                counts["estates"] += 1
                known = {b.number: b for b in (await session.scalars(
                    select(Building).where(Building.estate_id == estate.id))).all()}
                for item in es.get("buildings", []):
                    # "3", or {"number": "3", "units": ["1-101", "1-102", ...]}
                    number = str(item["number"] if isinstance(item, dict) else item)
                    units = _units(item.get("units")) if isinstance(item, dict) else None
                    if number not in known:
                        session.add(Building(estate_id=estate.id, number=number, units=units))
                    else:
                        known[number].units = units
                    counts["buildings"] += 1
    zone_ids = {}
    for feature in data.get("zones", {}).get("features", []):
        props = feature.get("properties", {})
        zone = await _upsert(session, Zone, props["code"], boundary=feature["geometry"],
                             **_names(props))
        zone_ids[zone.code] = zone.id
        counts["zones"] += 1
    for tm in data.get("teams", []):
        zone_code = tm.get("zone")
        if zone_code is not None and zone_code not in zone_ids:
            raise TerritoryError(f"team {tm['code']}: unknown zone {zone_code}")
        await _upsert(session, Team, tm["code"], zone_id=zone_ids.get(zone_code),
                      categories=list(tm.get("categories", [])), **_names(tm))
        counts["teams"] += 1
    await session.flush()
    return counts


def proposal_threshold_key(committee_code: str) -> str:
    return f"proposal_threshold:{committee_code}"


def _threshold(committee: dict[str, Any]) -> str | None:
    # Supporters a proposal needs in this committee; a small demo community needs fewer than
    # the setting's default. Absent: the setting decides (and a value once loaded is removed).
    value = committee.get("proposal_threshold")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise TerritoryError(f"{committee['code']}: proposal_threshold must be a whole number "
                             "of at least 1")
    return str(value)


def _units(listed) -> list[str] | None:
    units = sorted({normalize_unit(str(u)) for u in listed or []} - {""})
    return units or None
