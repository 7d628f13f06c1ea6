"""Residents, their platform identities, households and roles.

A household is a unit of a building: (building, unit) with the unit in one normal form, so the
same flat typed as "2-301", "2－301", "２-３０１" or "2单元301室" is one household. Typing a unit
only *claims* it. A resident counts for their household in per-household polls only once staff
approved them with that unit shown (`verified_household_id`); an estate-wide invite code verifies
the estate, not the unit. Any change of estate, building or unit ends verification, clears the
approved household and closes waiting verification requests, so a resident cannot mint
household votes by retyping their unit.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from datetime import datetime

from sqlalchemy import (
    Boolean,
    ForeignKey,
    String,
    UniqueConstraint,
    bindparam,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, by_id, clip, must_get, utcnow

NAME_LIMIT = 120  # residents.display_name


class Resident(Base):
    __tablename__ = "residents"
    id: Mapped[int] = mapped_column(primary_key=True)
    display_name: Mapped[str | None] = mapped_column(String(NAME_LIMIT))
    phone: Mapped[str | None] = mapped_column(String(40))
    language: Mapped[str | None] = mapped_column(String(10))
    estate_id: Mapped[int | None] = mapped_column(ForeignKey("estates.id"), index=True)
    building_id: Mapped[int | None] = mapped_column(ForeignKey("buildings.id"), index=True)
    unit: Mapped[str | None] = mapped_column(String(20))
    household_id: Mapped[int | None] = mapped_column(ForeignKey("households.id"), index=True)
    # The household staff approved this resident for; None until then and after any move.
    verified_household_id: Mapped[int | None] = mapped_column(ForeignKey("households.id"),
                                                              index=True)
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    verified_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Identity(Base):
    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("platform", "platform_user_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(20))
    platform_user_id: Mapped[str] = mapped_column(String(64))
    chat_id: Mapped[str] = mapped_column(String(64))
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), index=True)
    unreachable_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Household(Base):
    __tablename__ = "households"
    __table_args__ = (UniqueConstraint("building_id", "unit"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    building_id: Mapped[int] = mapped_column(ForeignKey("buildings.id"))
    unit: Mapped[str] = mapped_column(String(20))


class RoleKind(enum.StrEnum):
    ADMIN = "admin"  # scope: the whole sub-district
    STAFF = "staff"  # scope: a station
    COMMITTEE = "committee"  # scope: a residents' committee
    TEAM = "team"  # scope: a zone team


ROLE_SCOPE = {
    RoleKind.ADMIN: None,
    RoleKind.STAFF: "station",
    RoleKind.COMMITTEE: "committee",
    RoleKind.TEAM: "team",
}


class Role(Base):
    __tablename__ = "roles"
    __table_args__ = (UniqueConstraint("resident_id", "kind", "scope_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    scope_id: Mapped[int | None]  # station / committee / team id, by kind; none for admin
    granted_by: Mapped[int | None] = mapped_column(ForeignKey("residents.id"))
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)


async def resident_by_id(session: AsyncSession, resident_id: int | None) -> Resident | None:
    return await by_id(session, Resident, resident_id)


async def identity_for(
    session: AsyncSession, platform: str, platform_user_id: str
) -> Identity | None:
    return await session.scalar(
        select(Identity).where(
            Identity.platform == platform, Identity.platform_user_id == platform_user_id
        )
    )


async def get_or_create_identity(
    session: AsyncSession,
    platform: str,
    platform_user_id: str,
    chat_id: str,
    display_name: str | None,
) -> tuple[Identity, Resident, bool]:
    """The identity and resident behind a platform account, created on first contact."""
    identity = await identity_for(session, platform, platform_user_id)
    if identity is not None:
        resident = await must_get(session, Resident, identity.resident_id)
        touch(identity, chat_id)
        return identity, resident, False
    return await create_identity(session, platform, platform_user_id, chat_id, display_name)


def touch(identity: Identity, chat_id: str) -> None:
    """A person wrote to us: pushes go to the chat they wrote from, and they can be reached
    again."""
    if identity.chat_id != chat_id:
        identity.chat_id = chat_id
    if identity.unreachable_at is not None:
        identity.unreachable_at = None


async def create_identity(
    session: AsyncSession, platform: str, platform_user_id: str, chat_id: str,
    display_name: str | None,
) -> tuple[Identity, Resident, bool]:
    # Telegram allows 64 + 64 characters of name; cut what is longer (with an ellipsis) so a
    # long name is never refused by the database.
    resident = Resident(display_name=clip(display_name, NAME_LIMIT))
    session.add(resident)
    await session.flush()
    identity = Identity(
        platform=platform, platform_user_id=platform_user_id, chat_id=chat_id,
        resident_id=resident.id,
    )
    session.add(identity)
    await session.flush()
    return identity, resident, True


_UNIT_WORD = re.compile(r"(单元|單元)")
_UNIT_SUFFIX = re.compile(r"[室号號房户戶]+$")
_SEPARATORS = re.compile(r"[\s\-‐‑‒–—―−_/\\.·・、,，]+")


def normalize_unit(text: str | None) -> str:
    """One spelling per unit: NFKC (full-width digits and dashes become ASCII), upper case,
    "单元" as a separator, no trailing 室/号/房/户, every run of separators one "-"."""
    if not text:
        return ""
    unit = unicodedata.normalize("NFKC", text).upper().strip()
    unit = _UNIT_WORD.sub("-", unit)
    unit = _UNIT_SUFFIX.sub("", unit.strip())
    return _SEPARATORS.sub("-", unit).strip("-")


def household_voter(resident: Resident) -> int | None:
    """The household a resident may vote for: the one staff approved, while they still live
    there (a move clears it, see `verification.set_home`)."""
    if resident.verified and resident.verified_household_id is not None \
            and resident.verified_household_id == resident.household_id:
        return resident.verified_household_id
    return None


async def household_for(session: AsyncSession, building_id: int, unit: str) -> Household:
    unit = normalize_unit(unit)
    row = await session.scalar(
        select(Household).where(Household.building_id == building_id, Household.unit == unit)
    )
    if row is None:
        row = Household(building_id=building_id, unit=unit)
        session.add(row)
        await session.flush()
    return row


async def listed_units(session: AsyncSession, building_id: int | None) -> list[str] | None:
    """The building's own list of units, when the territory has one."""
    if not building_id:
        return None
    from storage.territory import Building

    building = await session.get(Building, building_id)
    return list(building.units) if building is not None and building.units else None


async def unit_in(session: AsyncSession, building_id: int, typed: str | None) -> str | None:
    """The unit in normal form, or None when it is empty or not one of the building's own."""
    unit = normalize_unit(typed)
    listed = await listed_units(session, building_id)
    if not unit or (listed is not None and unit not in listed):
        return None
    return unit


# Set in a session's `info` once it granted or revoked a role: roles read before (the person
# of an update, storage.dialog.load_person) no longer hold for that session.
ROLES_CHANGED = "roles_changed"


async def roles_of(session: AsyncSession, resident_id: int) -> list[Role]:
    rows = await session.scalars(_ROLES_OF, {"resident": resident_id})
    return list(rows.all())


_ROLES_OF = select(Role).where(Role.resident_id == bindparam("resident"))


async def grant_role(
    session: AsyncSession, resident_id: int, kind: RoleKind, scope_id: int | None,
    granted_by: int | None,
) -> Role | None:
    """Grant a role; None when the resident already holds it."""
    existing = await session.scalar(
        select(Role).where(
            Role.resident_id == resident_id, Role.kind == kind.value, Role.scope_id.is_(scope_id)
            if scope_id is None else Role.scope_id == scope_id,
        )
    )
    if existing is not None:
        return None
    role = Role(resident_id=resident_id, kind=kind.value, scope_id=scope_id, granted_by=granted_by)
    session.add(role)
    session.info[ROLES_CHANGED] = True
    await session.flush()
    return role


async def revoke_role(
    session: AsyncSession, resident_id: int, kind: RoleKind, scope_id: int | None
) -> bool:
    cond = Role.scope_id.is_(None) if scope_id is None else Role.scope_id == scope_id
    role = await session.scalar(
        select(Role).where(Role.resident_id == resident_id, Role.kind == kind.value, cond)
    )
    if role is None:
        return False
    await session.delete(role)
    session.info[ROLES_CHANGED] = True
    return True


async def all_roles(session: AsyncSession) -> list[Role]:
    return list((await session.scalars(select(Role).order_by(Role.resident_id, Role.id))).all())


async def mark_unreachable(session: AsyncSession, identity_id: int) -> None:
    identity = await session.get(Identity, identity_id)
    if identity is not None and identity.unreachable_at is None:
        identity.unreachable_at = utcnow()


async def language_of_identity(session: AsyncSession, identity_id: int) -> str | None:
    """The language chosen by the person behind an identity (None: not chosen yet)."""
    return await session.scalar(
        select(Resident.language).join(Identity, Identity.resident_id == Resident.id)
        .where(Identity.id == identity_id))


async def reachable_identities(session: AsyncSession, resident_ids: list[int]
                               ) -> list[tuple[int, str | None]]:
    """(identity id, chosen language) of each identity of these residents still reachable."""
    rows = await session.execute(
        select(Identity.id, Resident.language).join(Resident, Resident.id == Identity.resident_id)
        .where(Resident.id.in_(resident_ids), Identity.unreachable_at.is_(None)))
    return [(identity_id, lang) for identity_id, lang in rows.all()]


async def identities_of(session: AsyncSession, resident_id: int) -> list[Identity]:
    rows = await session.scalars(select(Identity).where(Identity.resident_id == resident_id))
    return list(rows.all())


async def residents_at(session: AsyncSession, name: str, building_number: str,
                       unit: str) -> list[Resident]:
    """Residents whose name contains `name` (case-insensitive) living at this building number
    (in any estate) and unit (compared in normal form): how staff find a resident who is with
    them (`/assist`). Whose estate the finder may act on is the caller's question."""
    from storage.territory import Building

    wanted, folded = normalize_unit(unit), name.strip().casefold()
    if not wanted or not folded or not building_number.strip():
        return []
    rows = await session.scalars(
        select(Resident).join(Building, Building.id == Resident.building_id)
        .where(Building.number == building_number.strip(), Resident.unit == wanted)
        .order_by(Resident.id).limit(200))
    return [r for r in rows.all() if folded in (r.display_name or "").casefold()]
