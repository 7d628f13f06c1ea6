"""/dashboard: a one-time sign-in link to the staff dashboard (web/dashboard), for people
holding a role."""

from __future__ import annotations

from datetime import timedelta

from bot.context import Context
from bot.router import Router
from bot.scheduler import Job
from services import dashboard
from storage import dashboard as dash

router = Router()
KEEP = timedelta(days=7)  # expired sign-in links and sessions are forgotten after this


@router.command("dashboard", help_key="help.dashboard",
                roles=("admin", "staff", "committee", "team"), order=59)
async def sign_in(ctx: Context) -> None:
    if dashboard.dashboard_url(ctx.services.settings) is None:
        ctx.say("dashboard.not_served")
        return
    link = await dashboard.sign_in_link(ctx.session, ctx.services.settings,
                                        ctx.services.signer, ctx.resident.id, ctx.now)
    if link is None:
        ctx.say("common.not_allowed")
        return
    ctx.say("dashboard.link", link=link,
            minutes=int(ctx.services.settings.bot.web_login_minutes),
            hours=f"{ctx.services.settings.bot.web_session_hours:g}")


async def prune(sessions, services, deliverer) -> None:
    async with sessions() as session, session.begin():
        await dash.prune(session, services.clock() - KEEP)


jobs = [Job("dashboard-prune", 3600, prune)]
