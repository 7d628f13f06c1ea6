"""Sign-in to the staff dashboard (web/dashboard): one-time login tokens and browser sessions.

Both are random tokens (32 bytes) of which only the SHA-256 is kept, so the table leaks nothing
a browser could present. A login token is good once, for a few minutes; redeeming it is one
guarded UPDATE, so two tabs (or a link previewer and a person) cannot both use it. A session
remembers the roles its person held when it began: when they differ from the roles held now
(one revoked, or granted), the session ends at its next request.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import ForeignKey, String, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.base import Base, affected, utcnow
from storage.people import Role


class DashboardLogin(Base):
    __tablename__ = "dashboard_logins"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class DashboardSession(Base):
    __tablename__ = "dashboard_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("residents.id"), index=True)
    roles: Mapped[list] = mapped_column(default=list)  # ["kind:scope_id", ...] at sign-in
    language: Mapped[str | None] = mapped_column(String(10))  # chosen with the switch
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def role_marks(roles: list[Role]) -> list[str]:
    return sorted({f"{r.kind}:{'' if r.scope_id is None else r.scope_id}" for r in roles})


# -- login tokens --------------------------------------------------------------------------

async def create_login(session: AsyncSession, resident_id: int, now: datetime,
                       ttl: timedelta) -> str:
    """A new one-time login token for a person (shown only now, kept hashed)."""
    token = secrets.token_urlsafe(32)
    session.add(DashboardLogin(token_hash=hash_token(token), resident_id=resident_id,
                               created_at=now, expires_at=now + ttl))
    await session.flush()
    return token


async def redeem_login(session: AsyncSession, token: str, now: datetime) -> int | None:
    """The person a login token signs in, using it up; None when it is unknown, used or
    expired."""
    digest = hash_token(token)
    result = await session.execute(
        update(DashboardLogin)
        .where(DashboardLogin.token_hash == digest, DashboardLogin.used_at.is_(None),
               DashboardLogin.expires_at > now)
        .values(used_at=now).execution_options(synchronize_session=False))
    if affected(result) != 1:
        return None
    return await session.scalar(select(DashboardLogin.resident_id)
                                .where(DashboardLogin.token_hash == digest))


# -- browser sessions ----------------------------------------------------------------------

async def create_session(session: AsyncSession, resident_id: int, roles: list[Role],
                         now: datetime, lifetime: timedelta,
                         language: str | None = None) -> str:
    token = secrets.token_urlsafe(32)
    session.add(DashboardSession(token_hash=hash_token(token), resident_id=resident_id,
                                 roles=role_marks(roles), language=language, created_at=now,
                                 expires_at=now + lifetime))
    await session.flush()
    return token


async def live_session(session: AsyncSession, token: str, now: datetime
                       ) -> DashboardSession | None:
    """The session a cookie names, when it has neither ended nor expired."""
    return await session.scalar(
        select(DashboardSession).where(DashboardSession.token_hash == hash_token(token),
                                       DashboardSession.ended_at.is_(None),
                                       DashboardSession.expires_at > now))


async def end_session(session: AsyncSession, session_id: int, now: datetime) -> bool:
    result = await session.execute(
        update(DashboardSession)
        .where(DashboardSession.id == session_id, DashboardSession.ended_at.is_(None))
        .values(ended_at=now).execution_options(synchronize_session=False))
    return affected(result) == 1


async def set_language(session: AsyncSession, session_id: int, language: str) -> None:
    await session.execute(update(DashboardSession).where(DashboardSession.id == session_id)
                          .values(language=language).execution_options(
                              synchronize_session=False))


async def prune(session: AsyncSession, before: datetime) -> int:
    """Forget login tokens and sessions that expired (or ended) before `before`."""
    logins = await session.execute(delete(DashboardLogin).where(
        DashboardLogin.expires_at < before))
    sessions = await session.execute(delete(DashboardSession).where(or_(
        DashboardSession.expires_at < before, DashboardSession.ended_at < before)))
    return affected(logins) + affected(sessions)
