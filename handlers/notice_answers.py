"""A resident's answer to an emergency notice: "I am safe" / "I need help"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from bot.context import Context
from bot.payloads import Action
from bot.pushes import Key
from bot.router import Router
from handlers.notice_jobs import EmergencyAnswer
from services.report_cards import file_urgent_report, send_card_to_team
from storage import notices, outbox
from storage import reports as rep
from storage.notices import Notice

router = Router()
Need = Literal["injured", "trapped", "medical", "other"]
NEEDS: tuple[Need, ...] = get_args(Need)  # kinds of help a resident can pick


@dataclass(frozen=True)
class ChooseNeed(Action, code="nhn"):
    report_id: int  # the urgent report "I need help" filed
    need: Need


@router.action(EmergencyAnswer)
async def answered(ctx: Context, press: EmergencyAnswer) -> None:
    answer = {"s": "safe", "h": "help"}[press.answer]
    notice = await notices.get(ctx.session, press.notice_id)
    if notice is None or notice.category != "emergency":
        ctx.say("common.button_invalid")
        return
    if not await notices.was_recipient(ctx.session, notice.id, ctx.resident.id):
        ctx.say("notices.answer_not_recipient")
        return
    previous = await notices.record_response(ctx.session, notice.id, ctx.resident.id, answer)
    if answer == "help" and previous != "help":
        report = await request_help(ctx, notice)
        if report is not None:
            ctx.say("notices.answer_help_report", _need_buttons(ctx, report.id),
                    ref=report.reference)
            return
    ctx.say(f"notices.answer_{answer}")


async def request_help(ctx: Context, notice: Notice) -> rep.Report | None:
    """The one place where "I need help" turns into action; runs once per (notice, resident).

    A resident with a home gets an urgent report there (category safety): it is routed to the
    team for that zone, whose members get its card at URGENT priority with the resident's name,
    phone and home, and it is followed in /queue, its SLA and the resident's /myreports like any
    report; that report is returned. Without a home on record there is nothing to route by,
    so the staff member who sent the notice is told who asked instead (None is returned).
    """
    resident = ctx.resident
    if resident.estate_id is not None:
        unit = resident.unit or ctx.t("notices.no_unit")
        # The team reads the reason in their own language; `description` keeps the
        # resident's wording for their own /myreports.
        report = await file_urgent_report(
            ctx.session, ctx.services, resident, category="safety",
            description=ctx.t("notices.help_report", id=notice.id, unit=unit),
            reason={"code": "emergency_help", "id": notice.id, "unit": resident.unit})
        ctx.pushed = True
        return report
    if notice.sender_identity_id is not None:
        await ctx.tell(notice.sender_identity_id, "notices.help_alert_no_home",
                       priority=outbox.Priority.URGENT, group=f"notice:{notice.id}:help",
                       dedupe_key=f"nh{notice.id}:{resident.id}", id=notice.id,
                       name=resident.display_name or f"#{resident.id}",
                       phone=resident.phone or Key("notices.no_phone"))
    return None


def _need_buttons(ctx: Context, report_id: int) -> list[list]:
    """What kind of help: a code the team reads in its own language, whatever the resident's."""
    return [[ctx.button(ctx.t(f"reports.need_{code}"), ChooseNeed(report_id, code))
             for code in NEEDS[i:i + 2]] for i in range(0, len(NEEDS), 2)]


@router.action(ChooseNeed)
async def need_chosen(ctx: Context, press: ChooseNeed) -> None:
    report = await rep.get(ctx.session, press.report_id)
    code = press.need
    if report is None or report.reporter_id != ctx.resident.id \
            or not report.reason or report.reason.get("code") != "emergency_help":
        ctx.say("common.button_invalid")
        return
    if report.reason.get("need") == code:
        ctx.say("notices.need_unchanged", ref=report.reference)
        return
    await rep.record_need(ctx.session, report, code)
    await send_card_to_team(ctx.session, ctx.services, report, reason="updated")
    ctx.pushed = True
    ctx.say("notices.need_recorded", ref=report.reference, need=ctx.t(f"reports.need_{code}"))

