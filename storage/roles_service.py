"""Granting and revoking roles by readable names, shared by the CLI, /grant in chat and the
staff dashboard's roles page (which also revokes a listed role by its number)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage.base import must_get
from storage.people import (
    ROLE_SCOPE,
    Identity,
    Resident,
    Role,
    RoleKind,
    all_roles,
    get_or_create_identity,
    grant_role,
    revoke_role,
)
from storage.territory import Committee, Station, Team

_SCOPE_MODEL: dict[str, type[Station] | type[Committee] | type[Team]] = {
    "station": Station, "committee": Committee, "team": Team}


class RoleError(ValueError):
    def __init__(self, code: str, value: str) -> None:
        super().__init__(f"{code}: {value}")
        self.code = code
        self.value = value


async def find_resident(session: AsyncSession, who: str, *, create: bool) -> Resident:
    """`#12` is resident 12; `telegram:12345` a platform account (created when asked)."""
    if who.startswith("#") and who[1:].isdigit():
        resident = await session.get(Resident, int(who[1:]))
        if resident is None:
            raise RoleError("unknown_user", who)
        return resident
    platform, _, user_id = who.partition(":")
    if not platform or not user_id:
        raise RoleError("unknown_user", who)
    if create:
        _, resident, _ = await get_or_create_identity(session, platform, user_id, user_id, None)
        return resident
    identity = await session.scalar(select(Identity).where(
        Identity.platform == platform, Identity.platform_user_id == user_id))
    if identity is None:
        raise RoleError("unknown_user", who)
    return await must_get(session, Resident, identity.resident_id)


async def change_role(session: AsyncSession, who: str, kind: str, scope_code: str | None, *,
                      actor_id: int | None, grant: bool, create_missing: bool) -> bool:
    try:
        role_kind = RoleKind(kind)
    except ValueError:
        raise RoleError("unknown_role", kind) from None
    scope_type = ROLE_SCOPE[role_kind]
    scope_id = None
    if scope_type is not None:
        if not scope_code:
            raise RoleError("scope_needed", scope_type)
        model = _SCOPE_MODEL[scope_type]
        scope_id = await session.scalar(select(model.id).where(model.code == scope_code))
        if scope_id is None:
            raise RoleError("unknown_scope", scope_code)
    resident = await find_resident(session, who, create=create_missing and grant)
    if grant:
        changed = await grant_role(session, resident.id, role_kind, scope_id, actor_id) is not None
    else:
        changed = await revoke_role(session, resident.id, role_kind, scope_id)
    if changed:
        await _audited(session, actor_id, grant, resident.id, kind, scope_code)
    return changed


async def _audited(session: AsyncSession, actor_id: int | None, grant: bool, resident_id: int,
                   kind: str, scope_code: str | None) -> None:
    await audit.record(session, actor_id, "role.grant" if grant else "role.revoke",
                       f"resident:{resident_id}", kind=kind, scope=scope_code)


async def _scope_code(session: AsyncSession, role: Role) -> str | None:
    scope_type = ROLE_SCOPE[RoleKind(role.kind)]
    if scope_type is None:
        return None
    model = _SCOPE_MODEL[scope_type]
    return await session.scalar(select(model.code).where(model.id == role.scope_id))


async def revoke_by_id(session: AsyncSession, role_id: int, *, actor_id: int | None
                       ) -> RoleRow | None:
    """Revoke one listed role (audited as `change_role` does); None when there is no such
    role (any more)."""
    role = await session.get(Role, role_id)
    if role is None:
        return None
    row = (await _rows(session, [role]))[0]
    if not await revoke_role(session, role.resident_id, RoleKind(role.kind), role.scope_id):
        return None
    await _audited(session, actor_id, False, row.resident_id, row.kind, row.scope_code)
    return row


@dataclass(frozen=True)
class RoleRow:
    """A role as people read it: who (number, name, platform accounts), which, where."""

    role_id: int
    resident_id: int
    name: str | None
    accounts: tuple[str, ...]  # platform:user_id
    kind: str
    scope_code: str | None  # the station, committee or team code; None for admin


async def _rows(session: AsyncSession, roles: list[Role]) -> list[RoleRow]:
    rows = []
    for role in roles:
        idents = (await session.scalars(select(Identity).where(
            Identity.resident_id == role.resident_id).order_by(Identity.id))).all()
        resident = await must_get(session, Resident, role.resident_id)
        rows.append(RoleRow(role.id, role.resident_id, resident.display_name,
                            tuple(f"{i.platform}:{i.platform_user_id}" for i in idents),
                            role.kind, await _scope_code(session, role)))
    return rows


async def role_rows(session: AsyncSession) -> list[RoleRow]:
    """Every role, by person."""
    return await _rows(session, await all_roles(session))


async def describe_roles(session: AsyncSession) -> list[str]:
    return [f"#{r.resident_id} ({','.join(r.accounts)}) {r.kind} {r.scope_code or '-'}"
            for r in await role_rows(session)]


async def scope_codes(session: AsyncSession) -> dict[str, list[str]]:
    """Each scope type's codes (station, committee, team), for a grant form's choices."""
    return {name: list((await session.scalars(select(model.code).order_by(model.code))).all())
            for name, model in _SCOPE_MODEL.items()}
