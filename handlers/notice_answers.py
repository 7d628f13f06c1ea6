"""A resident's answer to an emergency notice: "I am safe" / "I need help"."""

from __future__ import annotations

from bot.messaging.model import Outbound
from handlers.context import Context
from handlers.notice_jobs import EMERGENCY_ACTION
from handlers.router import Router
from storage import notices, outbox
from storage.notices import Notice
from storage.territory import Building, Estate, localized

router = Router()


@router.button(EMERGENCY_ACTION)
async def answered(ctx: Context) -> None:
    notice_id = int(ctx.args[0]) if ctx.args and ctx.args[0].isdigit() else 0
    answer = {"s": "safe", "h": "help"}.get(ctx.args[1] if len(ctx.args) > 1 else "")
    notice = await notices.get(ctx.session, notice_id)
    if notice is None or answer is None or notice.category != "emergency":
        ctx.say("common.button_invalid")
        return
    if not await notices.was_recipient(ctx.session, notice.id, ctx.resident.id):
        ctx.say("notices.answer_not_recipient")
        return
    previous = await notices.record_response(ctx.session, notice.id, ctx.resident.id, answer)
    if answer == "help" and previous != "help":
        await request_help(ctx, notice)
    ctx.say(f"notices.answer_{answer}")


async def request_help(ctx: Context, notice: Notice) -> None:
    """The one place where "I need help" turns into action.

    The general team of the zone around the resident's home hears at once, at URGENT priority,
    with the resident's name, phone and home (those teams cover that home, so they may see it).
    With no such team (or nobody in it), the staff member who sent the notice is told instead.

    LEAD: the reports feature's urgent report belongs here as well, e.g.
    `await reports.create_urgent(ctx.session, resident=ctx.resident, source=f"notice:{notice.id}")`
    — one report per (notice, resident), since this runs only when the answer becomes "help".
    """
    resident = ctx.resident
    zone_id = ctx.services.geo.zone_of_estate(resident.estate_id) if resident.estate_id else None
    targets = await notices.zone_team_identities(ctx.session, zone_id)
    if not targets and notice.sender_identity_id is not None:
        targets = [notice.sender_identity_id]
    estate = await ctx.session.get(Estate, resident.estate_id) if resident.estate_id else None
    building = await ctx.session.get(Building, resident.building_id) \
        if resident.building_id else None
    for identity_id in targets:
        lang = await _language_of(ctx, identity_id)
        values = dict(id=notice.id, name=resident.display_name or f"#{resident.id}",
                      phone=resident.phone or "-")
        if estate is None:
            text = ctx.t_for(lang, "notices.help_alert_no_home", **values)
        else:
            text = ctx.t_for(lang, "notices.help_alert", estate=localized(estate, lang),
                             building=building.number if building else "-",
                             unit=resident.unit or "-", **values)
        await ctx.push(identity_id, Outbound(text=text), priority=outbox.Priority.URGENT,
                       group=f"notice:{notice.id}:help",
                       dedupe_key=f"nh{notice.id}:{resident.id}:{identity_id}")


async def _language_of(ctx: Context, identity_id: int) -> str:
    from sqlalchemy import select

    from storage.people import Identity, Resident

    lang = await ctx.session.scalar(
        select(Resident.language).join(Identity, Identity.resident_id == Resident.id)
        .where(Identity.id == identity_id))
    return lang or ctx.services.settings.bot.default_language
