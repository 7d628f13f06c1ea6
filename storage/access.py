"""Which part of the territory a resident's roles cover."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.people import Role, RoleKind
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

    def has(self, *kinds: str) -> bool:  # RoleKind values (a StrEnum) or their names
        return self.everything or bool(self.kinds) and any(str(k) in self.kinds for k in kinds)


class HeldRole(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def scope_id(self) -> int | None: ...


class RolePlace(NamedTuple):
    """A role held, as the scope needs it: what, and over which place."""

    kind: str
    scope_id: int | None


# Built once, read as plain rows: many updates ask for the person's scope (every command with
# roles, /help), and the scope needs only what each role is and where.
_ROLE_PLACES = select(Role.kind, Role.scope_id).where(Role.resident_id == bindparam("resident"))


async def scope_of(session: AsyncSession, resident_id: int) -> Scope:
    rows = (await session.execute(_ROLE_PLACES, {"resident": resident_id})).all()
    return await scope_from_roles(session, [RolePlace(kind, place) for kind, place in rows])


async def scope_from_roles(session: AsyncSession, roles: Sequence[HeldRole]) -> Scope:
    scope = Scope(kinds={r.kind for r in roles})
    for role in roles:
        if role.kind == RoleKind.ADMIN:
            scope.everything = True
        elif role.scope_id is None:
            continue  # every other role is held over a place (storage.people.ROLE_SCOPE)
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


async def station_estates(session: AsyncSession, estate_id: int | None) -> set[int]:
    """Every estate of the station an estate belongs to (empty for none)."""
    if estate_id is None:
        return set()
    station_id = await session.scalar(
        select(Committee.station_id).join(Estate, Estate.committee_id == Committee.id)
        .where(Estate.id == estate_id))
    if station_id is None:
        return set()
    rows = await session.scalars(
        select(Estate.id).join(Committee, Committee.id == Estate.committee_id)
        .where(Committee.station_id == station_id))
    return set(rows.all())


async def reach(session: AsyncSession, scope: Scope, geo, extra_estates: set[int] | frozenset[int] = frozenset()
                ) -> tuple[set[int] | None, set[int] | None]:
    """(zone ids, team ids) a person's scope reaches; (None, None) for everything.

    A zone is reached when one of the scope's estates (or `extra_estates`) lies in it, or a
    team the person belongs to works it; a team when its zone is reached, when it works the
    whole sub-district (no zone), or when the person belongs to it."""
    if scope.everything:
        return None, None
    estates = set(scope.estate_ids) | set(extra_estates)
    zone_ids = {z for z in (geo.zone_of_estate(e) for e in estates) if z is not None}
    teams = list((await session.scalars(select(Team))).all())
    zone_ids |= {t.zone_id for t in teams if t.id in scope.team_ids and t.zone_id is not None}
    team_ids = {t.id for t in teams
                if t.id in scope.team_ids or t.zone_id is None or t.zone_id in zone_ids}
    return zone_ids, team_ids


async def council_of_estate(session: AsyncSession, estate_id: int | None) -> list[int]:
    """Who answers for an estate's residents: the members of its committee, or, when the
    committee has none, the staff of its station (resident ids)."""
    estate = await session.get(Estate, estate_id) if estate_id is not None else None
    if estate is None:
        return []
    members = list((await session.scalars(
        select(Role.resident_id).where(Role.kind == RoleKind.COMMITTEE.value,
                                       Role.scope_id == estate.committee_id)
        .order_by(Role.resident_id).distinct())).all())
    if members:
        return members
    station_id = await session.scalar(
        select(Committee.station_id).where(Committee.id == estate.committee_id))
    return list((await session.scalars(
        select(Role.resident_id).where(Role.kind == RoleKind.STAFF.value,
                                       Role.scope_id == station_id)
        .order_by(Role.resident_id).distinct())).all())
