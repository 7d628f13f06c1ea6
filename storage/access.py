"""Which part of the territory a resident's roles cover."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.people import Role, RoleKind, roles_of
from storage.territory import Committee, Estate, Team


@dataclass
class Scope:
    """Estates (and teams) a person may act on; `everything` for admins."""

    everything: bool = False
    estate_ids: set[int] = field(default_factory=set)
    committee_ids: set[int] = field(default_factory=set)
    station_ids: set[int] = field(default_factory=set)
    team_ids: set[int] = field(default_factory=set)
    kinds: set[str] = field(default_factory=set)

    @property
    def privileged(self) -> bool:
        return bool(self.kinds)

    def covers_estate(self, estate_id: int | None) -> bool:
        return self.everything or (estate_id is not None and estate_id in self.estate_ids)

    def has(self, *kinds: RoleKind) -> bool:
        return self.everything or any(str(k) in self.kinds for k in kinds)


async def scope_of(session: AsyncSession, resident_id: int) -> Scope:
    return await scope_from_roles(session, await roles_of(session, resident_id))


async def scope_from_roles(session: AsyncSession, roles: list[Role]) -> Scope:
    scope = Scope(kinds={r.kind for r in roles})
    for role in roles:
        if role.kind == RoleKind.ADMIN:
            scope.everything = True
        elif role.kind == RoleKind.STAFF:
            scope.station_ids.add(role.scope_id)
        elif role.kind == RoleKind.COMMITTEE:
            scope.committee_ids.add(role.scope_id)
        elif role.kind == RoleKind.TEAM:
            scope.team_ids.add(role.scope_id)
    if scope.station_ids:
        rows = await session.scalars(
            select(Committee.id).where(Committee.station_id.in_(scope.station_ids))
        )
        scope.committee_ids.update(rows.all())
    if scope.committee_ids:
        rows = await session.scalars(
            select(Estate.id).where(Estate.committee_id.in_(scope.committee_ids))
        )
        scope.estate_ids.update(rows.all())
    if scope.everything:
        scope.team_ids.update((await session.scalars(select(Team.id))).all())
    return scope
