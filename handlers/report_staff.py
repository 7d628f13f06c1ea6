"""Teams and staff work reports: the card's buttons, /queue, /stats, and the SLA escalation.

Only members of the report's team (and station staff and admins covering its estate) may act;
each action is a guarded transition, audited, and told to the reporter and followers: the rules
are services.report_work's, which the staff dashboard calls too.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from bot.context import Context
from bot.messaging.model import Kind
from bot.payloads import Action
from bot.router import Router
from bot.scheduler import Job
from handlers.report_media import MediaRefused, take_photo
from services import report_cards as filing
from services import report_figures as figures
from services import report_work as work
from services.report_cards import StaffAction
from storage import audit, outbox, territory
from storage import reports as rep

router = Router()

FIX_NOTE, DUP_OF = "report.fixnote", "report.dupof"
TEAM_ROLES = ("team", "staff", "admin")
MAX_NOTE = work.MAX_NOTE
REASONS = {"n": rep.CloseReason.NOT_RESPONSIBLE, "u": rep.CloseReason.UNABLE,
           "d": rep.CloseReason.DUPLICATE}
STEPS = {"a": "ack", "p": "progress"}  # StaffAction's step -> services.report_work's


@dataclass(frozen=True)
class FixWithoutNote(Action, code="rfx", fresh="staff"):
    report_id: int


@dataclass(frozen=True)
class Reassign(Action, code="rto", fresh="staff"):
    report_id: int
    team_id: int


@dataclass(frozen=True)
class Close(Action, code="rcl", fresh="staff"):
    report_id: int
    reason: Literal["n", "u"]  # not responsible, unable (a duplicate names its original)


@dataclass(frozen=True)
class ShowCard(Action, code="rcard"):
    report_id: int


async def _report_for_action(ctx: Context, report_id: int | None) -> rep.Report | None:
    """The report, when this person may act on it; otherwise a clear refusal and None."""
    found = await work.report_for(ctx.session, await ctx.scope(), report_id)
    if found.outcome == "unknown":
        ctx.say("common.button_invalid")
        return None
    if found.outcome == "not_yours":
        ctx.say("reports.not_your_team", ref=found.report.reference)
        return None
    return found.report


def _moved_on(ctx: Context, report: rep.Report) -> None:
    ctx.say("reports.moved_on", ref=report.reference,
            status=filing.status_label(ctx.services, ctx.lang, report))


def _answer(ctx: Context, worked: work.Worked) -> None:
    """What the person who acted reads: done (the reporter was told), or why not."""
    if worked.pushed:
        ctx.pushed = True
    report = worked.report
    if worked.outcome == "done" and report is not None:
        if worked.team is not None:
            ctx.say("reports.reassigned", ref=report.reference,
                    team=territory.localized(worked.team, ctx.lang))
        else:
            # The report's next actions under the answer, while it is open: where choices
            # are typed numbers (WeChat), the card's own are on an older message by then.
            ctx.say("reports.done_staff",
                    filing.staff_buttons(ctx.services, ctx.identity.id, report, ctx.lang),
                    ref=report.reference,
                    status=filing.status_label(ctx.services, ctx.lang, report))
    elif worked.outcome == "moved_on" and report is not None:
        _moved_on(ctx, report)
    elif worked.outcome == "not_yours" and report is not None:
        ctx.say("reports.not_your_team", ref=report.reference)
    else:
        ctx.say("common.button_invalid")


# -- the card's buttons --------------------------------------------------------------------

@router.action(StaffAction)
async def staff_action(ctx: Context, press: StaffAction) -> None:
    report = await _report_for_action(ctx, press.report_id)
    if report is None:
        return
    action = press.step
    if not work.is_open(report):
        _moved_on(ctx, report)
        return
    if action in STEPS:
        _answer(ctx, await work.set_status(ctx.session, ctx.services, await ctx.scope(),
                                           ctx.resident.id, report.id, STEPS[action], ctx.now))
    elif action == "f":
        ctx.goto(FIX_NOTE, rid=report.id)
        ctx.say("reports.ask_fix_note", [[ctx.button(ctx.t("reports.btn_no_note"),
                                                     FixWithoutNote(report.id))]],
                ref=report.reference)
    elif action == "r":
        teams = await work.reassign_choices(ctx.session, ctx.services, await ctx.scope(), report)
        ctx.say("reports.ask_reassign", [[ctx.button(territory.localized(tm, ctx.lang),
                                                     Reassign(report.id, tm.id))]
                                         for tm in teams],
                ref=report.reference)
    elif action == "d":
        ctx.goto(DUP_OF, rid=report.id)
        ctx.say("reports.ask_duplicate_of", ref=report.reference)
    elif action == "c":
        ctx.say("reports.ask_close_reason", [
            [ctx.button(ctx.t("reports.reason_not_responsible"), Close(report.id, "n"))],
            [ctx.button(ctx.t("reports.reason_unable"), Close(report.id, "u"))]],
            ref=report.reference)


@router.state(FIX_NOTE)
async def fix_note(ctx: Context) -> None:
    rid = ctx.data.get("rid")
    if ctx.inbound.kind in (Kind.PHOTO, Kind.DOCUMENT):
        try:
            path = await take_photo(ctx)
        except MediaRefused as no:
            ctx.say(f"reports.{no.key}", **no.values)
            return
        ctx.remember(photo=path)
        ctx.say("reports.fix_photo_saved", [[ctx.button(ctx.t("reports.btn_no_note"),
                                                        FixWithoutNote(rid))]])
        return
    if ctx.inbound.kind != Kind.TEXT:
        ctx.say("reports.ask_fix_note_again")
        return
    if len(ctx.inbound.text) > MAX_NOTE:
        ctx.say("reports.description_too_long", limit=MAX_NOTE, length=len(ctx.inbound.text))
        return
    await _mark_fixed(ctx, rid, ctx.inbound.text)


@router.action(FixWithoutNote)
async def fix_without_note(ctx: Context, press: FixWithoutNote) -> None:
    await _mark_fixed(ctx, press.report_id, None)


async def _mark_fixed(ctx: Context, report_id: int, note: str | None) -> None:
    photo = ctx.data.get("photo") if ctx.state == FIX_NOTE and ctx.data.get("rid") == report_id \
        else None
    if ctx.state == FIX_NOTE:
        ctx.finish()
    if await _report_for_action(ctx, report_id) is None:
        return
    _answer(ctx, await work.mark_fixed(ctx.session, ctx.services, await ctx.scope(),
                                       ctx.resident.id, report_id, ctx.now, note=note,
                                       photo=photo))


@router.action(Reassign)
async def reassign(ctx: Context, press: Reassign) -> None:
    if await _report_for_action(ctx, press.report_id) is None:
        return
    _answer(ctx, await work.reassign(ctx.session, ctx.services, await ctx.scope(),
                                     ctx.resident.id, press.report_id, press.team_id, ctx.now))


@router.action(Close)
async def close(ctx: Context, press: Close) -> None:
    if await _report_for_action(ctx, press.report_id) is None:
        return
    _answer(ctx, await work.close(ctx.session, ctx.services, await ctx.scope(),
                                  ctx.resident.id, press.report_id, REASONS[press.reason],
                                  ctx.now))


@router.state(DUP_OF)
async def duplicate_of(ctx: Context) -> None:
    rid = ctx.data.get("rid")
    if ctx.inbound.kind != Kind.TEXT:
        ctx.say("reports.ask_duplicate_of_again")
        return
    scope = await ctx.scope()
    found = await work.find_original(ctx.session, ctx.services, scope, rid, ctx.inbound.text)
    if found.outcome == "unknown":
        ctx.say("reports.duplicate_unknown", text=ctx.inbound.text[:30])
        return
    original = found.report
    assert original is not None
    if found.outcome == "closed":
        ctx.say("reports.duplicate_closed", ref=original.reference)
        return
    ctx.finish()
    if await _report_for_action(ctx, rid) is None:
        return
    _answer(ctx, await work.mark_duplicate(
        ctx.session, ctx.services, scope, ctx.resident.id, rid, original, ctx.now,
        note=ctx.t("reports.duplicate_note", ref=original.reference)))


@router.action(ShowCard)
async def show_card(ctx: Context, press: ShowCard) -> None:
    report = await _report_for_action(ctx, press.report_id)
    if report is None:
        return
    for out in await filing.card_outbounds(ctx.session, ctx.services, report, ctx.identity.id,
                                           ctx.lang, show_reporter=True):
        ctx.replies.append(out)


# -- /queue --------------------------------------------------------------------------------

@router.command("queue", help_key="reports.help_queue", roles=TEAM_ROLES, order=40)
async def show_queue(ctx: Context) -> None:
    scope = await ctx.scope()
    staff_estates = scope.estate_ids if "staff" in scope.kinds else set()
    rows, total = await rep.queue(ctx.session, ctx.now, team_ids=scope.team_ids,
                                  estate_ids=staff_estates, everything=scope.everything)
    if not rows:
        ctx.say("reports.queue_empty")
        return
    lines = [ctx.t("reports.queue_title", shown=len(rows), total=total)]
    buttons = []
    for report in rows:
        late = report.fix_due_at < ctx.now
        lines.append(ctx.t("reports.queue_line_late" if late else "reports.queue_line",
                           ref=report.reference,
                           category=filing.category_name(ctx.services, ctx.lang, report.category),
                           status=filing.status_label(ctx.services, ctx.lang, report),
                           due=ctx.services.local_time(report.fix_due_at),
                           age=_age(ctx, report)))
        if len(buttons) < 10:
            buttons.append([ctx.button(report.reference, ShowCard(report.id))])
    ctx.reply("\n".join(lines), buttons)


def _age(ctx: Context, report: rep.Report) -> str:
    minutes = int((ctx.now - report.created_at).total_seconds() // 60)
    if minutes < 1:
        return ctx.t("reports.age_now")
    if minutes < 60:
        return ctx.t("reports.age_minutes", n=minutes)
    hours = minutes // 60
    return ctx.t("reports.age_days", n=hours // 24) if hours >= 24 else \
        ctx.t("reports.age_hours", n=hours)


# -- /stats --------------------------------------------------------------------------------

@router.command("stats", help_key="reports.help_stats", roles=("staff", "admin"), order=41)
async def show_stats(ctx: Context) -> None:
    arg = ctx.inbound.args.strip()
    days = ctx.services.settings.reports.stats_days
    if arg:
        if not arg.isdigit() or not 1 <= int(arg) <= 3660:
            ctx.say("reports.stats_usage")
            return
        days = int(arg)
    until = ctx.now
    table = await figures.compute(ctx.session, ctx.services.geo, await ctx.scope(), days, until)
    lines = [ctx.t("reports.stats_title", days=days, total=table.total.received)]
    lines.append(ctx.t("reports.stats_by_zone"))
    team_seen = False
    for kind, cells, _ in figures.rows(ctx.t, ctx.lang, table):
        if kind == "team" and not team_seen:
            lines.append(ctx.t("reports.stats_by_team"))
            team_seen = True
        lines.append(ctx.t("reports.stats_line", name=cells[0], received=cells[1],
                           ack=cells[2], fix=cells[3], sla=cells[4], reopen=cells[5],
                           rating=cells[6]))
    if not team_seen:
        lines.append(ctx.t("reports.stats_by_team"))
    ctx.reply("\n".join(lines))
    name = f"report-stats-{until:%Y%m%d}-{days}d.csv"
    rel = await asyncio.to_thread(ctx.services.media.save,
                                  figures.csv_bytes(ctx.t, ctx.lang, table), ".csv")
    ctx.reply(ctx.t("reports.stats_csv"), document=str(ctx.services.media.path(rel)),
              document_name=name)
    await audit.record(ctx.session, ctx.resident.id, "report.stats", None, days=days)


# -- escalation ----------------------------------------------------------------------------

async def escalate_overdue(sessions, services, deliverer) -> None:
    async with sessions() as session, session.begin():
        claimed = await rep.claim_overdue(session, services.clock())
        for report in claimed:
            for resident_id in await rep.station_staff_for(session, report.estate_id):
                await filing.push_card(session, services, report, resident_id,
                                       header_key="reports.card_header_overdue",
                                       priority=outbox.Priority.URGENT)
            await audit.record(session, None, "report.escalate", report.reference,
                               by="scheduler")
    if claimed and deliverer is not None:
        deliverer.wake()


jobs = [Job("report-escalate", 300, escalate_overdue)]
