"""Pieces shared by the /newpoll and /newsurvey conversations: which areas the author may address,
a closing time typed by a person, and the committee an area belongs to."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from bot.context import Context
from handlers.notice_time import BadTime, parse_local, spoken
from services import poll_rules
from storage import territory
from storage.audience import Audience

MAX_DAYS = 90
MIN_MINUTES = 5  # a poll or survey closing sooner could not reach anyone
_RELATIVE = re.compile(r"^(\d{1,4})\s*([hd])$", re.IGNORECASE)


async def runs(ctx: Context, committee_id: int | None) -> bool:
    """Who runs a poll or survey once published (sees it whole, closes it early): admins, and
    the members and station staff of the committee it belongs to."""
    return poll_rules.runs(await ctx.scope(), committee_id)


def closing_said(ctx: Context, at: datetime) -> str:
    """A closing time said back: "明天 18:30（…）" when a bare time rolled over."""
    return spoken(ctx.t, at, ctx.now, ctx.services.settings.bot.timezone)


async def area_buttons(ctx: Context, action: str, step: str) -> list[list]:
    """One button per committee and estate the author's roles cover."""
    scope = await ctx.scope()
    rows = []
    for c in await territory.committees(ctx.session):
        if scope.everything or c.id in scope.committee_ids:
            rows.append([ctx.button(territory.localized(c, ctx.lang), action, step, "c", c.id)])
    for e in await territory.estates(ctx.session):
        if scope.covers_estate(e.id):
            rows.append([ctx.button(territory.localized(e, ctx.lang), action, step, "e", e.id)])
    return rows


async def may_address(ctx: Context, kind: str, area_id: int) -> bool:
    scope = await ctx.scope()
    if scope.everything:
        return True
    if kind == "committee":
        return area_id in scope.committee_ids
    if kind == "estate":
        return scope.covers_estate(area_id)
    b = await territory.building_by_id(ctx.session, area_id)
    return b is not None and scope.covers_estate(b.estate_id)


async def committee_of(ctx: Context, kind: str, area_id: int) -> int | None:
    return await territory.committee_id_of_area(ctx.session, kind, area_id)


async def area_name(ctx: Context, audience: Audience) -> str:
    if audience.kind == "committee":
        return territory.localized(await territory.committee(ctx.session, audience.area_id),
                                   ctx.lang)
    if audience.kind == "estate":
        return territory.localized(await territory.estate(ctx.session, audience.area_id),
                                   ctx.lang)
    b = await territory.building_by_id(ctx.session, audience.area_id)
    estate = await territory.estate(ctx.session, b.estate_id)
    return ctx.t("polls.building_of", estate=territory.localized(estate, ctx.lang),
                 number=b.number)


def parse_closing(text: str, now: datetime, tz_name: str) -> datetime | str:
    """A closing time (`48h`, `3d`, or any moment the notice time reader takes: `2026-12-01
    20:00`, `明天 20:00`, `18:30` (tomorrow once past)), or the key of what is wrong."""
    text = text.strip()
    if m := _RELATIVE.match(text):
        amount, unit = int(m.group(1)), m.group(2).lower()
        at = now + (timedelta(hours=amount) if unit == "h" else timedelta(days=amount))
    else:
        try:
            at = parse_local(text, now, tz_name).astimezone(now.tzinfo)
        except BadTime:
            return "closes_invalid"
    if at <= now + timedelta(minutes=MIN_MINUTES):
        return "closes_past"
    if at > now + timedelta(days=MAX_DAYS):
        return "closes_too_far"
    return at
