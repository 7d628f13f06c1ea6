"""Which zone and team a report goes to.

By its point, the zone polygon it falls in; with no point, the zone of the resident's estate.
Then by category: a team that names the category (in that zone, or a zone-less specialist crew)
wins; otherwise the zone's joint team, the one with no categories.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.territory import Team

if TYPE_CHECKING:
    from services.geo import TerritoryIndex


@dataclass(frozen=True)
class Route:
    zone_id: int | None
    team_id: int | None
    estate_id: int | None


async def route(session: AsyncSession, geo: TerritoryIndex, category: str, *, latitude: float | None = None,
                longitude: float | None = None, estate_id: int | None = None) -> Route:
    zone_id = None
    if latitude is not None and longitude is not None:
        place = geo.locate(latitude, longitude)
        zone_id = place.zone_id
        estate_id = place.estate_id or estate_id
    if zone_id is None and estate_id is not None:
        zone_id = geo.zone_of_estate(estate_id)
    teams = list((await session.scalars(select(Team).order_by(Team.id))).all())
    return Route(zone_id, pick_team(teams, category, zone_id), estate_id)


def pick_team(teams: list[Team], category: str, zone_id: int | None) -> int | None:
    specialists = [t for t in teams if category in (t.categories or [])]
    for team in specialists:
        if team.zone_id == zone_id and zone_id is not None:
            return team.id
    for team in specialists:
        if team.zone_id is None:
            return team.id
    for team in teams:
        if team.zone_id == zone_id and zone_id is not None and not team.categories:
            return team.id
    return None
