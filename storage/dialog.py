"""Per-identity conversation state, kept in the database so it survives restarts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ForeignKey, String, bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.access import RolePlace
from storage.base import Base, utcnow
from storage.people import Identity, Resident, Role, create_identity, touch


class DialogState(Base):
    __tablename__ = "dialog_states"
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(60))
    data: Mapped[dict] = mapped_column(default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


@dataclass(frozen=True)
class Person:
    """Who wrote, where their conversation stands, and the roles they hold (what and where:
    enough for storage.access.scope_from_roles)."""

    identity: Identity
    resident: Resident
    state: DialogState | None
    created: bool  # on this contact, the first
    roles: tuple[RolePlace, ...]


async def load_person(
    session: AsyncSession, platform: str, platform_user_id: str, chat_id: str,
    display_name: str | None,
) -> Person:
    """The person of an update, in one query (every update starts here: a row per role held,
    one without any); created on first contact."""
    rows = (await session.execute(
        _PERSON, {"platform": platform, "user": platform_user_id})).all()
    if not rows:
        identity, resident, _ = await create_identity(
            session, platform, platform_user_id, chat_id, display_name)
        return Person(identity, resident, None, True, ())
    identity, resident, state = rows[0][:3]
    touch(identity, chat_id)
    roles = tuple(RolePlace(kind, place) for *_, kind, place in rows if kind is not None)
    return Person(identity, resident, state, False, roles)


# Built once: every update runs it.
_PERSON = (
    select(Identity, Resident, DialogState, Role.kind, Role.scope_id)
    .join(Resident, Resident.id == Identity.resident_id)
    .outerjoin(DialogState, DialogState.identity_id == Identity.id)
    .outerjoin(Role, Role.resident_id == Resident.id)
    .where(Identity.platform == bindparam("platform"),
           Identity.platform_user_id == bindparam("user"))
)


async def load(session: AsyncSession, identity_id: int) -> DialogState | None:
    return await session.get(DialogState, identity_id)


async def save(session: AsyncSession, identity_id: int, name: str | None, data: dict,
               *, at: datetime | None = None) -> None:
    """Store where the conversation stands; `at` (the bot's clock) dates it for the expiry."""
    row = await session.get(DialogState, identity_id)
    if name is None:
        if row is not None:
            await session.execute(delete(DialogState).where(DialogState.identity_id == identity_id))
        return
    at = at or utcnow()
    if row is None:
        session.add(DialogState(identity_id=identity_id, name=name, data=dict(data),
                                updated_at=at))
    else:
        row.name = name
        row.data = dict(data)
        row.updated_at = at


def expired(state: DialogState | None, now: datetime, ttl: timedelta) -> bool:
    """A conversation nobody touched for `ttl`."""
    if state is None or state.updated_at is None:
        return False
    updated = state.updated_at
    if updated.tzinfo is None:
        updated = updated.replace(tzinfo=UTC)
    return now - updated > ttl
