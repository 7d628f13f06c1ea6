"""Every feature's conversations, gathered into one router."""

from __future__ import annotations

from bot.context import Context
from bot.router import Router
from bot.signing import EXPIRED
from handlers import (
    admin,
    alerts,
    assist,
    dashboard,
    guides,
    notice_answers,
    notice_jobs,
    notice_manage,
    notices,
    onboarding,
    poll_ballots,
    polls,
    profile,
    proposals,
    report_staff,
    reports,
    subscribe,
    surveys,
    verification,
    volunteering,
    volunteering_hours,
    volunteering_organise,
    volunteering_teams,
)

MODULES = [onboarding, profile, verification, admin,
           reports, report_staff,
           notices, notice_manage, notice_answers, notice_jobs, subscribe, guides, alerts,
           volunteering, volunteering_organise, volunteering_teams, volunteering_hours,
           polls, poll_ballots, assist, surveys, proposals, dashboard]


async def expired_button(ctx: Context) -> None:
    """A genuine button pressed after its age limit (a vote, a staff action)."""
    ctx.reply(ctx.t("common.button_expired"), answer_callback=ctx.inbound.callback_id,
              notice=ctx.t("common.button_expired_short"))


def build_router() -> Router:
    router = Router()
    for module in MODULES:
        router.include(module.router)
    router.button(EXPIRED)(expired_button)
    return router


def build_jobs() -> list:
    return [job for module in MODULES for job in getattr(module, "jobs", [])]


first_contact = onboarding.first_contact
