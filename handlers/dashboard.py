"""/dashboard: a one-time sign-in link to the staff dashboard (web/dashboard), for people
holding a role."""

from __future__ import annotations

from bot.context import Context
from bot.router import Router
from services import dashboard

router = Router()


@router.command("dashboard", help_key="help.dashboard",
                roles=("admin", "staff", "committee", "team"), order=59)
async def sign_in(ctx: Context) -> None:
    if dashboard.dashboard_url(ctx.services.settings) is None:
        ctx.say("dashboard.not_served")
        return
    link = await dashboard.sign_in_link(ctx.session, ctx.services.settings, ctx.resident.id,
                                        ctx.now)
    if link is None:
        ctx.say("common.not_allowed")
        return
    ctx.say("dashboard.link", link=link,
            minutes=int(ctx.services.settings.bot.web_login_minutes),
            hours=f"{ctx.services.settings.bot.web_session_hours:g}")
