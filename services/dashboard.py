"""The staff dashboard's sign-in rules, shared by the chat's /dashboard, the terminal demo and
the web feature (web/dashboard): who may sign in, the one-time link, and whether a browser
session still stands for the roles its person holds now."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from bot.signing import Signer
from storage import dashboard as dash
from storage.people import roles_of

LOGIN_PATH = "/dashboard/login"
PURPOSE = "dashboard-login"  # what the link's token is signed for (bot.signing.Signer.tag)


def dashboard_url(settings: Settings) -> str | None:
    """The dashboard's address (BOT_WEB_URL/dashboard/), None when the web app is not served."""
    base = settings.bot.web_url
    return f"{base.rstrip('/')}/dashboard/" if base else None


def secure_cookies(settings: Settings) -> bool:
    return (settings.bot.web_url or "").lower().startswith("https://")


async def sign_in_link(session: AsyncSession, settings: Settings, signer: Signer,
                       resident_id: int, now: datetime) -> str | None:
    """A one-time sign-in link for a person holding a role; None when the web app is not
    served or the person holds no role. The link carries a random token (kept hashed) and the
    bot key's signature of it, so a made-up link is refused before the database is asked."""
    base = settings.bot.web_url
    if not base or not await roles_of(session, resident_id):
        return None
    token = await dash.create_login(session, resident_id, now,
                                    timedelta(minutes=settings.bot.web_login_minutes))
    return f"{base.rstrip('/')}{LOGIN_PATH}?t={token}.{signer.tag(PURPOSE, token)}"


async def begin_session(session: AsyncSession, settings: Settings, signer: Signer, link: str,
                        now: datetime, language: str | None) -> tuple[str, int] | None:
    """Redeem a sign-in link's `t`: (the new session's cookie value, resident id), or None
    when its signature is wrong, or it is unknown, used, expired, or its person holds no role
    any more."""
    token, _, tag = link.rpartition(".")
    if not token or not signer.check(PURPOSE, token, tag):
        return None
    resident_id = await dash.redeem_login(session, token, now)
    if resident_id is None:
        return None
    roles = await roles_of(session, resident_id)
    if not roles:
        return None
    cookie = await dash.create_session(session, resident_id, roles, now,
                                       timedelta(hours=settings.bot.web_session_hours),
                                       language=language)
    return cookie, resident_id


async def current_session(session: AsyncSession, cookie: str, now: datetime
                          ) -> dash.DashboardSession | None:
    """The session behind a cookie while it stands: not ended, not expired, and its person
    holding exactly the roles they held when it began (a revoked role ends it here)."""
    found = await dash.live_session(session, cookie, now)
    if found is None:
        return None
    if await roles_changed(session, found):
        await dash.end_session(session, found.id, now)
        return None
    return found


async def roles_changed(session: AsyncSession, found: dash.DashboardSession) -> bool:
    """The person no longer holds exactly the roles they held when the session began."""
    return dash.role_marks(await roles_of(session, found.resident_id)) != list(found.roles)
