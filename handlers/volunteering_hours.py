"""/myhours: hours by activity and month, a yearly card (PNG), and the committee leaderboard."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from bot.context import Context
from bot.payloads import Action
from bot.router import Router
from handlers.volunteering import local
from handlers.volunteering_card import render_card
from services.volunteer_rosters import hours_text
from storage import territory
from storage import volunteer_hours as vhours

router = Router()


@dataclass(frozen=True)
class YearlyCard(Action, code="vcard"):
    year: int


@dataclass(frozen=True)
class LeaderboardOpt(Action, code="vlb"):
    join: bool  # on the committee's leaderboard, or off it


@dataclass(frozen=True)
class ShowLeaderboard(Action, code="vlbv"):
    pass


def _year_bounds(ctx: Context, year: int) -> tuple[datetime, datetime]:
    tz = local(ctx, ctx.now).tzinfo
    return datetime(year, 1, 1, tzinfo=tz), datetime(year + 1, 1, 1, tzinfo=tz)


async def _hours(ctx: Context, year: int | None = None):
    """(by activity title, by month, total, shifts) over attended shifts, local time."""
    by_activity: dict[str, float] = defaultdict(float)
    by_month: dict[str, float] = defaultdict(float)
    total, shifts = 0.0, 0
    for activity, shift, hours in await vhours.attended(ctx.session, ctx.resident.id,
                                                        ctx.now):
        start = local(ctx, shift.starts_at)
        if year is not None and start.year != year:
            continue
        by_activity[activity.title] += hours
        by_month[f"{start:%Y-%m}"] += hours
        total += hours
        shifts += 1
    return by_activity, by_month, total, shifts


@router.command("myhours", help_key="volunteering.help_myhours", order=34)
async def my_hours(ctx: Context) -> None:
    by_activity, by_month, total, shifts = await _hours(ctx)
    year = local(ctx, ctx.now).year
    opted = await vhours.on_leaderboard(ctx.session, ctx.resident.id)
    buttons = [[ctx.button(ctx.t("volunteering.card_button", year=year), YearlyCard(year))],
               [ctx.button(ctx.t("volunteering.leaderboard_leave" if opted
                                 else "volunteering.leaderboard_join"),
                           LeaderboardOpt(join=not opted)),
                ctx.button(ctx.t("volunteering.leaderboard_show"), ShowLeaderboard())]]
    if not shifts:
        ctx.say("volunteering.no_hours", buttons)
        return
    ctx.say("volunteering.hours", buttons, total=hours_text(total), shifts=shifts,
            by_activity="\n".join(f"• {t}: {hours_text(h)}" for t, h in sorted(
                by_activity.items(), key=lambda x: -x[1])),
            by_month="\n".join(f"• {m}: {hours_text(h)}" for m, h in sorted(by_month.items())))


@router.action(YearlyCard)
async def yearly_card(ctx: Context, press: YearlyCard) -> None:
    year = press.year
    if not 2000 <= year <= 2100:
        ctx.say("common.button_invalid")
        return
    by_activity, _, total, shifts = await _hours(ctx, year)
    estate = await territory.estate(ctx.session, ctx.resident.estate_id)
    labels = {k: [ctx.t_for(lang, f"volunteering.card_{k}", year=year)
                  for lang in ("zh-Hans", "en")] for k in ("title", "hours", "shifts", "top")}
    png = await asyncio.to_thread(
        render_card, year=year, name=ctx.resident.display_name or f"#{ctx.resident.id}",
        estate=(estate.name_zh, estate.name_en) if estate else None, total=total,
        shifts=shifts, top=sorted(by_activity.items(), key=lambda x: -x[1])[:5], labels=labels,
        font_path=ctx.services.settings.bot.font_file)
    rel = await asyncio.to_thread(ctx.services.media.save, png, ".png")
    ctx.reply(ctx.t("volunteering.card_caption", year=year, total=hours_text(total)),
              photo=str(ctx.services.media.path(rel)))


@router.action(LeaderboardOpt)
async def leaderboard_opt(ctx: Context, press: LeaderboardOpt) -> None:
    opt_in = press.join
    await vhours.set_leaderboard(ctx.session, ctx.resident.id, opt_in)
    ctx.say("volunteering.leaderboard_joined" if opt_in else "volunteering.leaderboard_left")


@router.action(ShowLeaderboard)
async def leaderboard(ctx: Context, _: ShowLeaderboard) -> None:
    estate = await territory.estate(ctx.session, ctx.resident.estate_id)
    if estate is None:
        ctx.say("volunteering.leaderboard_need_home")
        return
    year = local(ctx, ctx.now).year
    start, end = _year_bounds(ctx, year)
    rows = await vhours.leaderboard(ctx.session, estate.committee_id, start, end, ctx.now)
    if not rows:
        ctx.say("volunteering.leaderboard_empty")
        return
    committee = await territory.committee(ctx.session, estate.committee_id)
    ctx.say("volunteering.leaderboard", year=year,
            committee=territory.localized(committee, ctx.lang),
            rows="\n".join(f"{i + 1}. {name} — {hours_text(hours)}" for i, (_, name, hours)
                           in enumerate(rows)))
