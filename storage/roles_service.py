"""Granting and revoking roles by readable names, shared by the CLI and /grant in chat."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audit
from storage.base import must_get
from storage.people import (
    ROLE_SCOPE,
    Identity,
    Resident,
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
        await audit.record(session, actor_id, "role.grant" if grant else "role.revoke",
                           f"resident:{resident.id}", kind=kind, scope=scope_code)
    return changed


async def describe_roles(session: AsyncSession) -> list[str]:
    lines = []
    for role in await all_roles(session):
        scope_type = ROLE_SCOPE[RoleKind(role.kind)]
        code: str | None = "-"
        if scope_type is not None:
            model = _SCOPE_MODEL[scope_type]
            code = await session.scalar(select(model.code).where(model.id == role.scope_id))
        idents = (await session.scalars(select(Identity).where(
            Identity.resident_id == role.resident_id))).all()
        names = ",".join(f"{i.platform}:{i.platform_user_id}" for i in idents)
        lines.append(f"#{role.resident_id} ({names}) {role.kind} {code}")
    return lines
