"""/notices: a staff member's notices with their figures; edit or cancel until sent; the
answers to an emergency, building by building."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bot.context import Context
from bot.payloads import Action
from bot.router import Router
from handlers.notices import MAX_TEXT, STAFF
from services import notice_audience as aud
from services import notice_compose as compose
from services.typed_time import MAX_DAYS_AHEAD, BadTime, parse_when, spoken
from storage import audit, notices, outbox, territory
from storage.base import reread
from storage.notices import Notice, NoticeError, NoticeStatus
from storage.territory import localized

router = Router()

SILENT_LIMIT = 20


@dataclass(frozen=True)
class ViewNotice(Action, code="nview"):
    notice_id: int


@dataclass(frozen=True)
class EditNotice(Action, code="nedit"):
    notice_id: int
    what: Literal["t", "w"] = "t"  # its text, or when it goes out


@dataclass(frozen=True)
class StopNotice(Action, code="nstop"):
    notice_id: int


@dataclass(frozen=True)
class NoticeAnswers(Action, code="nanswers"):
    notice_id: int


@router.command("notices", help_key="notices.help_list", roles=STAFF, order=41)
async def list_notices(ctx: Context) -> None:
    scope = await ctx.scope()
    rows = await notices.recent_by(ctx.session, None if scope.everything else ctx.resident.id)
    if not rows:
        ctx.say("notices.list_empty")
        return
    lines = [ctx.t("notices.list_title")]
    for notice in rows:
        lines.append(await _line(ctx, notice))
    buttons = [ctx.button(f"#{n.id}", ViewNotice(n.id)) for n in rows]
    ctx.reply("\n".join(lines), [buttons[i:i + 5] for i in range(0, len(buttons), 5)])


async def _line(ctx: Context, notice: Notice) -> str:
    figures = await outbox.figures(ctx.session, notice.group)
    return ctx.t("notices.list_line", **await _values(ctx, notice, figures))


async def _values(ctx: Context, notice: Notice, figures: dict[str, int]) -> dict:
    return dict(
        id=notice.id, category=ctx.t(f"notices.cat_{notice.category}"),
        status=ctx.t(f"notices.status_{notice.status}"),
        audience=await aud.describe(ctx.session, ctx.lang, ctx.services.texts,
                                    notice.audience_kind,
                                    notice.audience_ids[0] if notice.audience_ids else None),
        when=ctx.services.local_time(notice.scheduled_at),
        total=notice.recipients, sent=figures["sent"],
        queued=figures["pending"] + figures["sending"], failed=figures["failed"],
        unreachable=figures["unreachable"],
    )


async def _mine(ctx: Context, notice_id: int) -> Notice | None:
    """The notice named by the button, if this person may manage it."""
    notice = await notices.get(ctx.session, notice_id)
    if notice is None:
        ctx.say("notices.not_found")
        return None
    if not compose.may_manage(await ctx.scope(), ctx.resident.id, notice):
        ctx.say("notices.not_yours")
        return None
    return notice


@router.action(ViewNotice)
async def view(ctx: Context, press: ViewNotice) -> None:
    notice = await _mine(ctx, press.notice_id)
    if notice is None:
        return
    figures = await outbox.figures(ctx.session, notice.group)
    buttons = []
    if notice.status == NoticeStatus.SCHEDULED:
        buttons.append([ctx.button(ctx.t("notices.btn_edit_text"), EditNotice(notice.id, "t")),
                        ctx.button(ctx.t("notices.btn_edit_time"), EditNotice(notice.id, "w"))])
    if notice.status in (NoticeStatus.SCHEDULED, NoticeStatus.SENDING) or (
            notice.status == NoticeStatus.SENT and figures["pending"]):
        buttons.append([ctx.button(ctx.t("notices.btn_cancel_notice"), StopNotice(notice.id))])
    if notice.category == "emergency" and notice.status != NoticeStatus.SCHEDULED:
        buttons.append([ctx.button(ctx.t("notices.btn_answers"), NoticeAnswers(notice.id))])
    ctx.reply(ctx.t("notices.detail", text=notices.text_for(notice, ctx.lang),
                    **await _values(ctx, notice, figures)), buttons, photo=notice.photo)


@router.action(EditNotice)
async def edit(ctx: Context, press: EditNotice) -> None:
    notice = await _mine(ctx, press.notice_id)
    if notice is None:
        return
    if notice.status != NoticeStatus.SCHEDULED:
        ctx.say("notices.not_editable", id=notice.id)
        return
    what = press.what
    tz = ctx.services.settings.bot.timezone
    if what == "w":
        ctx.goto("notice.edit_time", notice=notice.id)
        ctx.say("notices.edit_time_prompt", id=notice.id, tz=tz)
    else:
        ctx.goto("notice.edit_text", notice=notice.id)
        ctx.say("notices.edit_text_prompt", id=notice.id)


@router.state("notice.edit_text")
async def edit_text(ctx: Context) -> None:
    notice_id = ctx.data.get("notice")
    text = (ctx.inbound.text or "").strip()
    if not text:
        ctx.say("notices.error_empty_text")
        return
    if len(text) > MAX_TEXT:
        ctx.say("notices.error_too_long", limit=MAX_TEXT)
        return
    notice = await notices.get(ctx.session, notice_id)
    try:
        # The new text replaces every language version: a stale translation must not go out.
        changed = notice is not None and await notices.update_scheduled(
            ctx.session, notice_id, texts={ctx.lang: text})
    except NoticeError as exc:
        ctx.say(f"notices.error_{exc.code}")
        return
    await _edited(ctx, notice_id, changed, "text")


@router.state("notice.edit_time")
async def edit_time(ctx: Context) -> None:
    notice_id = ctx.data.get("notice")
    try:
        at = parse_when(ctx.inbound.text or "", ctx.now, ctx.services.settings.bot.timezone)
    except BadTime as exc:
        ctx.say(f"notices.time_{exc.code}", days=MAX_DAYS_AHEAD)
        return
    changed = await notices.update_scheduled(ctx.session, notice_id, scheduled_at=at)
    await _edited(ctx, notice_id, changed, "time", at)


async def _edited(ctx: Context, notice_id: int, changed: bool, what: str, at=None) -> None:
    ctx.finish()
    if not changed:
        ctx.say("notices.not_editable", id=notice_id)
        return
    await audit.record(ctx.session, ctx.resident.id, "notice.edit", f"notice:{notice_id}",
                       what=what)
    if at is None:
        ctx.say("notices.edited", id=notice_id)
    else:
        ctx.say("notices.edited_time", id=notice_id,
                at=spoken(ctx.t, at, ctx.now, ctx.services.settings.bot.timezone))


@router.action(StopNotice)
async def stop(ctx: Context, press: StopNotice) -> None:
    notice = await _mine(ctx, press.notice_id)
    if notice is None:
        return
    if notice.status == NoticeStatus.CANCELLED:
        ctx.say("notices.already_cancelled", id=notice.id)
        return
    if not await notices.cancel_notice(ctx.session, notice.id):
        notice = await reread(ctx.session, notice)  # someone else may have cancelled it meanwhile
        ctx.say("notices.already_cancelled" if notice.status == NoticeStatus.CANCELLED
                else "notices.cannot_cancel", id=notice.id)
        return
    await audit.record(ctx.session, ctx.resident.id, "notice.cancel", f"notice:{notice.id}")
    ctx.say("notices.cancelled", id=notice.id)


@router.action(NoticeAnswers)
async def answers(ctx: Context, press: NoticeAnswers) -> None:
    notice = await _mine(ctx, press.notice_id)
    if notice is None:
        return
    if notice.category != "emergency":
        ctx.say("notices.not_emergency")
        return
    rows = await notices.answers_by_building(ctx.session, notice.id)
    if not rows:
        ctx.say("notices.answers_none")
        return
    scope = await ctx.scope()
    lines = [ctx.t("notices.answers_title", id=notice.id)]
    for row in rows:
        counts = dict(safe=row.safe, help=row.help, silent=row.silent, total=row.recipients)
        building = await territory.building_by_id(ctx.session, row.building_id)
        if building is None:
            lines.append(ctx.t("notices.answers_line_no_building", **counts))
            continue
        estate = await territory.estate(ctx.session, building.estate_id)
        lines.append(ctx.t("notices.answers_line", estate=localized(estate, ctx.lang),
                           building=building.number, **counts))
    # Names and phones only of residents whose home this staff member covers.
    needing = [r for r in await notices.residents_by_answer(ctx.session, notice.id, "help", 50)
               if scope.covers_estate(r.estate_id)]
    if needing:
        lines.append(ctx.t("notices.answers_help_title"))
        for r in needing:
            lines.append(ctx.t("notices.answers_help_line", name=_name(ctx, r),
                               phone=r.phone or ctx.t("notices.no_phone"),
                               home=await _home(ctx, r)))
    silent = [r for r in await notices.residents_by_answer(ctx.session, notice.id, None,
                                                           SILENT_LIMIT)
              if scope.covers_estate(r.estate_id)]
    if silent:
        lines.append(ctx.t("notices.answers_silent_title", limit=SILENT_LIMIT))
        for r in silent:
            lines.append(ctx.t("notices.answers_silent_line", name=_name(ctx, r),
                               home=await _home(ctx, r)))
    ctx.reply("\n".join(lines))


async def _home(ctx: Context, resident) -> str:
    """A resident's home as far as it is known, never a row of dashes."""
    building = await territory.building_by_id(ctx.session, resident.building_id)
    estate_id = building.estate_id if building else resident.estate_id
    estate = await territory.estate(ctx.session, estate_id)
    if estate is None:
        return ctx.t("notices.home_none")
    name = localized(estate, ctx.lang)
    if building is None:
        return ctx.t("notices.home_estate", estate=name)
    if not resident.unit:
        return ctx.t("notices.home_building", estate=name, building=building.number)
    return ctx.t("notices.home_unit", estate=name, building=building.number, unit=resident.unit)


def _name(ctx: Context, resident) -> str:
    return resident.display_name or f"#{resident.id}"
