"""Pieces shared by the /newpoll and /newsurvey conversations: the area buttons within the
author's scope, a building typed, a closing time said back. The rules themselves (which areas
the author may address, a closing time typed, publishing) are services.poll_drafts', which the
dashboard's forms call too."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from bot.context import Context
from bot.conversation import STAY, Conversation, Go, StepAnswer
from services import poll_drafts, poll_rules
from services.notice_time import spoken
from storage import territory
from storage.audience import Audience
from storage.territory import Building


async def runs(ctx: Context, committee_id: int | None) -> bool:
    """Who runs a poll or survey once published (sees it whole, closes it early): admins, and
    the members and station staff of the committee it belongs to."""
    return poll_rules.runs(await ctx.scope(), committee_id)


def closing_said(ctx: Context, at: datetime) -> str:
    """A closing time said back: "明天 18:30（…）" when a bare time rolled over."""
    return spoken(ctx.t, at, ctx.now, ctx.services.settings.bot.timezone)


async def area_buttons(ctx: Context, conversation: Conversation, step: str) -> list[list]:
    """One button per committee and estate the author's roles cover."""
    scope = await ctx.scope()
    rows = []
    for c in await territory.committees(ctx.session):
        if scope.everything or c.id in scope.committee_ids:
            rows.append([conversation.button(ctx, territory.localized(c, ctx.lang), step, "c",
                                             c.id)])
    for e in await territory.estates(ctx.session):
        if scope.covers_estate(e.id):
            rows.append([conversation.button(ctx, territory.localized(e, ctx.lang), step, "e",
                                             e.id)])
    return rows


class HasArea(Protocol):
    area_kind: str
    area_id: int


def declare_area_steps(conversation: Conversation, *, ask_area: str, ask_building: str,
                       then: str) -> None:
    """The "area" and "building" steps polls and surveys share: a committee or estate
    pressed (within the author's scope), then for an estate one building typed or the whole
    estate; on to step `then`."""
    @conversation.asks("area")
    async def _ask_area(ctx: Context, d: HasArea) -> None:
        ctx.say(ask_area, await area_buttons(ctx, conversation, "area"))

    @conversation.takes_press("area")
    async def _area_chosen(ctx: Context, d: HasArea, press: StepAnswer) -> Go:
        area = area_pressed(press)
        if area is None:
            ctx.button_invalid()
            return STAY
        kind, area_id = area
        if not await may_address(ctx, kind, area_id):
            ctx.say("common.not_allowed")
            return STAY
        d.area_kind, d.area_id = kind, area_id
        return "building" if kind == "estate" else then

    @conversation.asks("building")
    async def _ask_building(ctx: Context, d: HasArea) -> None:
        ctx.say(ask_building, [[conversation.button(ctx, ctx.t("polls.whole_estate"),
                                                    "building", 0)]])

    @conversation.takes("building")
    async def _building_typed(ctx: Context, d: HasArea, text: str) -> Go:
        found = await building_in(ctx, d.area_id, text)
        if found is None:
            return STAY
        d.area_kind, d.area_id = "building", found.id
        return then

    @conversation.takes_press("building")
    async def _whole_estate(ctx: Context, d: HasArea, press: StepAnswer) -> Go:
        return then  # the area stays the estate chosen


def area_pressed(press: StepAnswer) -> tuple[str, int] | None:
    """The area an area button stands for: ("committee" | "estate", id)."""
    kind = {"c": "committee", "e": "estate"}.get(press.value)
    if kind is None or not press.more.isdigit():
        return None
    return kind, int(press.more)


async def building_in(ctx: Context, estate_id: int, number: str) -> Building | None:
    """The estate's building of that number, or None (said) when it has none."""
    for b in await territory.buildings_of(ctx.session, estate_id):
        if b.number.casefold() == number.strip().casefold():
            return b
    ctx.refuse("polls.building_unknown", number=number[:20])
    return None


async def may_address(ctx: Context, kind: str, area_id: int) -> bool:
    return await poll_drafts.may_address(await ctx.scope(), ctx.session, kind, area_id)


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
